"""infra.phases: a DAG of phases on a thread pool, or one at a time."""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from infra import waits
from infra.phases import Phase, PhaseFailed, Timeline, Timing, critical_chain, critical_path, run_phases
from infra.run.run import Interrupted, interruptible

HANDSHAKE = 5.0  # seconds a phase waits for its partner before giving up


class Reporter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, str]] = []

    def started(self, name: str, at: float) -> None:
        with self.lock:
            self.events.append(("start", name))

    def finished(self, timing: Timing) -> None:
        with self.lock:
            self.events.append((timing.status, timing.name))


class Tracker:
    """Counts phases running at once and remembers what had finished when each started."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.max_running = 0
        self.finished: list[str] = []
        self.seen_at_start: dict[str, set[str]] = {}

    def phase(self, name: str, body: Callable[[], None] = lambda: None) -> Callable[[], None]:
        def run() -> None:
            with self.lock:
                self.running += 1
                self.max_running = max(self.max_running, self.running)
                self.seen_at_start[name] = set(self.finished)
            try:
                body()
            finally:
                with self.lock:
                    self.running -= 1
                    self.finished.append(name)

        return run


def go(phases: list[Phase], *, parallel: bool = True) -> tuple[Timeline, Reporter]:
    timeline, reporter = Timeline(), Reporter()
    run_phases(phases, timeline=timeline, reporter=reporter, parallel=parallel)
    return timeline, reporter


def test_independent_phases_overlap_in_parallel_mode() -> None:
    a_in, b_in = threading.Event(), threading.Event()
    met: dict[str, bool] = {}

    def a() -> None:
        a_in.set()
        met["a"] = b_in.wait(HANDSHAKE)  # only possible if b runs at the same time

    def b() -> None:
        b_in.set()
        met["b"] = a_in.wait(HANDSHAKE)

    timeline, _ = go([Phase("a", a), Phase("b", b)], parallel=True)
    assert met == {"a": True, "b": True}
    assert {t.name: t.status for t in timeline.timings} == {"a": "ok", "b": "ok"}


def test_sequential_mode_never_overlaps() -> None:
    tracker = Tracker()
    partner_seen: dict[str, bool] = {}
    events = {n: threading.Event() for n in "abc"}

    def body(name: str) -> Callable[[], None]:
        def run() -> None:
            events[name].set()
            later = "abc"["abc".index(name) + 1 :]
            # a short handshake attempt: in sequential mode no later phase may have started
            partner_seen[name] = any(events[n].wait(0.05) for n in later)

        return run

    phases = [Phase(n, tracker.phase(n, body(n))) for n in "abc"]
    phases.append(Phase("d", tracker.phase("d"), ("a", "b")))
    timeline, reporter = go(phases, parallel=False)
    assert tracker.max_running == 1
    assert partner_seen == {"a": False, "b": False, "c": False}
    assert tracker.finished == ["a", "b", "c", "d"]  # topological, in declaration order
    starts = [n for kind, n in reporter.events if kind == "start"]
    assert starts == ["a", "b", "c", "d"]
    # each phase finished before the next one started
    assert reporter.events == [(k, n) for n in "abcd" for k in ("start", "ok")]
    timings = sorted(timeline.timings, key=lambda t: t.start)
    for prev, nxt in itertools.pairwise(timings):
        assert prev.end <= nxt.start


@pytest.mark.parametrize("parallel", [True, False])
def test_dependents_wait_for_their_inputs(parallel: bool) -> None:
    tracker = Tracker()
    b_started = threading.Event()

    def slow_a() -> None:  # a finishes only after b has started (in parallel mode)
        if parallel:
            assert b_started.wait(HANDSHAKE)

    phases = [
        Phase("a", tracker.phase("a", slow_a)),
        Phase("b", tracker.phase("b", b_started.set)),
        Phase("c", tracker.phase("c"), ("a", "b")),
        Phase("d", tracker.phase("d"), ("c",)),
        Phase("e", tracker.phase("e"), ("a",)),
    ]
    go(phases, parallel=parallel)
    assert tracker.seen_at_start["c"] >= {"a", "b"}
    assert tracker.seen_at_start["d"] >= {"a", "b", "c"}
    assert "a" in tracker.seen_at_start["e"]
    assert sorted(tracker.finished) == ["a", "b", "c", "d", "e"]


def test_a_phase_starts_as_soon_as_its_own_inputs_are_done() -> None:
    """e needs only a: it runs while the unrelated b still blocks."""
    release_b, e_ran = threading.Event(), threading.Event()

    def b() -> None:
        assert release_b.wait(HANDSHAKE)

    def e() -> None:
        e_ran.set()
        release_b.set()

    phases = [
        Phase("a", lambda: None),
        Phase("b", b),
        Phase("e", e, ("a",)),
        Phase("c", lambda: None, ("b",)),
    ]
    timeline, _ = go(phases)
    assert e_ran.is_set()
    assert {t.status for t in timeline.timings} == {"ok"}


@pytest.mark.parametrize("parallel", [True, False])
def test_first_failure_names_the_phase_and_skips_never_started(parallel: bool) -> None:
    ran: list[str] = []

    def boom() -> None:
        ran.append("bad")
        raise RuntimeError("boom")

    phases = [
        Phase("bad", boom),
        Phase("after", lambda: ran.append("after"), ("bad",)),
        Phase("later", lambda: ran.append("later"), ("after",)),
    ]
    if not parallel:  # an independent phase declared after the failing one never starts either
        phases.append(Phase("independent", lambda: ran.append("independent")))
    timeline, reporter = Timeline(), Reporter()
    with pytest.raises(PhaseFailed) as info:
        run_phases(phases, timeline=timeline, reporter=reporter, parallel=parallel)
    err = info.value
    assert err.phase == "bad"
    assert isinstance(err.cause, RuntimeError)
    assert str(err) == "phase 'bad' failed: boom"
    assert ran == ["bad"]
    status = {t.name: t.status for t in timeline.timings}
    assert status["bad"] == "failed"
    assert status["after"] == status["later"] == "skipped"
    if not parallel:
        assert status["independent"] == "skipped"
    assert ("failed", "bad") in reporter.events


def test_a_running_phase_finishes_after_another_fails() -> None:
    failed_gate = threading.Event()

    def bad() -> None:
        failed_gate.set()
        raise ValueError("nope")

    def slow() -> None:
        assert failed_gate.wait(HANDSHAKE)

    timeline = Timeline()
    with pytest.raises(PhaseFailed, match="phase 'bad' failed: nope"):
        run_phases(
            [Phase("slow", slow), Phase("bad", bad), Phase("next", lambda: None, ("slow",))],
            timeline=timeline,
            reporter=Reporter(),
        )
    status = {t.name: t.status for t in timeline.timings}
    assert status == {"slow": "ok", "bad": "failed", "next": "skipped"}


@pytest.mark.parametrize(
    ("phases", "message"),
    [
        (
            [Phase("a", lambda: None, ("b",)), Phase("b", lambda: None, ("a",))],
            "cycle among phases ['a', 'b']",
        ),
        ([Phase("a", lambda: None, ("a",))], "cycle among phases ['a']"),
        ([Phase("a", lambda: None, ("ghost",))], "phase 'a' needs unknown phases ['ghost']"),
        ([Phase("a", lambda: None), Phase("a", lambda: None)], "duplicate phase names"),
    ],
)
def test_bad_graphs_are_rejected_before_anything_runs(phases: list[Phase], message: str) -> None:
    timeline = Timeline()
    with pytest.raises(ValueError) as info:
        run_phases(phases, timeline=timeline, reporter=Reporter())
    assert message in str(info.value)
    assert timeline.timings == []


def test_cancel_stops_new_starts() -> None:
    cancel = threading.Event()
    ran: list[str] = []
    phases = [
        Phase("a", lambda: (ran.append("a"), cancel.set())),
        Phase("b", lambda: ran.append("b"), ("a",)),
    ]
    timeline = Timeline()
    with pytest.raises(KeyboardInterrupt):
        run_phases(phases, timeline=timeline, reporter=Reporter(), cancel=cancel)
    assert ran == ["a"]
    assert {t.name: t.status for t in timeline.timings} == {"a": "ok", "b": "skipped"}


def test_a_signal_a_phase_thread_receives_interrupts_the_run_while_the_phase_waits() -> None:
    """Linux hands a process's SIGINT to any thread; its handler runs on the main thread, which
    must not sleep until the phases end (a readiness wait ran out its timeout that way in CI)."""
    cancelled_in_time: list[bool] = []

    def main_thread_sleeps() -> waits.Observation[None]:
        stat = Path(f"/proc/self/task/{threading.main_thread().native_id}/stat").read_text()
        state = stat.rsplit(")", 1)[1].split()[0]
        return waits.Observation(state == "S", f"main thread state {state}")

    def waiting() -> None:
        waits.poll("the main thread to sleep", main_thread_sleeps, timeout=HANDSHAKE, interval=0.01)
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)
        cancelled_in_time.append(waits.CANCEL.wait(HANDSHAKE))  # set by the handler

    # "idle" first: "waiting" then runs on its thread, and the main thread starts no thread meanwhile
    phases = [Phase("idle", lambda: None), Phase("waiting", waiting, ("idle",))]
    try:
        with pytest.raises(Interrupted, match="SIGINT"), interruptible():
            run_phases(phases, timeline=Timeline(), reporter=Reporter(), cancel=waits.CANCEL, max_workers=1)
    finally:
        waits.CANCEL.clear()  # the event is the process's: the next test's commands must run
    assert cancelled_in_time == [True]


def test_timing_as_dict() -> None:
    t = Timing("build:x", 1.0, 3.5004, "ok", ("go:services",))
    assert t.seconds == 2.5
    assert t.as_dict() == {
        "name": "build:x", "start": 1.0, "end": 3.5, "seconds": 2.5, "status": "ok", "needs": ["go:services"]
    }  # fmt: skip


def test_the_critical_path_is_the_longest_chain_of_needs() -> None:
    timings = [
        Timing("preflight", 0.0, 0.5, "ok"),
        Timing("go", 0.5, 2.5, "ok", ("preflight",)),  # 2.0
        Timing("cluster", 2.5, 5.5, "ok", ("preflight",)),  # 3.0
        Timing("build", 5.5, 6.0, "ok", ("go",)),  # 0.5
        Timing("deploy", 6.0, 7.0, "ok", ("cluster", "build")),  # 1.0
    ]
    # preflight 0.5 + cluster 3.0 + deploy 1.0: the go -> build chain (2.5) runs beside the cluster
    assert critical_path(timings) == 4.5
    assert critical_path([]) == 0.0
    assert critical_chain(timings) == ["preflight", "cluster", "deploy"]  # the bench reports which phases
    assert critical_chain([]) == []


def test_the_timeline_counts_the_machines_cpu_time_since_its_start() -> None:
    timeline = Timeline()
    mine = time.process_time()
    while time.process_time() - mine < 0.3:  # this process keeps one core busy
        pass
    used, wall = timeline.cpu_now(), timeline.now()
    assert used is not None
    tick = 1 / os.sysconf("SC_CLK_TCK")
    assert 0.3 - 2 * tick <= used <= wall * (os.cpu_count() or 1) + 2 * tick  # busy time only, never idle
