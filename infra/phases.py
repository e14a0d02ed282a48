"""Setup as a small DAG of timed phases, run on a thread pool (or one by one)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from infra import waits


@dataclass(frozen=True)
class Phase:
    name: str
    run: Callable[[], object]
    needs: tuple[str, ...] = ()


@dataclass
class Timing:
    name: str
    start: float
    end: float
    status: str  # ok | failed | skipped
    needs: tuple[str, ...] = ()  # a setup phase's: what it waited for (the bench's critical path)

    @property
    def seconds(self) -> float:
        return round(self.end - self.start, 3)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "seconds": self.seconds,
            "status": self.status,
            "needs": list(self.needs),
        }


class PhaseFailed(Exception):
    def __init__(self, phase: str, cause: BaseException) -> None:
        self.phase, self.cause = phase, cause
        super().__init__(f"phase {phase!r} failed: {cause}")


class Reporter(Protocol):
    def started(self, name: str, at: float) -> None: ...
    def finished(self, timing: Timing) -> None: ...


def machine_cpu_seconds() -> float | None:
    """CPU time every process on this machine has used since boot (None where /proc/stat is not)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


@dataclass
class Timeline:
    """Timings of one run, relative to its start (shared by setup and later steps)."""

    origin: float = field(default_factory=time.monotonic)
    cpu_origin: float | None = field(default_factory=machine_cpu_seconds)
    timings: list[Timing] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> float:
        return time.monotonic() - self.origin

    def cpu_now(self) -> float | None:
        """CPU time the whole machine used since the start: the run, its podman, containers, pytest."""
        now = machine_cpu_seconds()
        return None if now is None or self.cpu_origin is None else now - self.cpu_origin

    def add(self, timing: Timing) -> None:
        with self.lock:
            self.timings.append(timing)

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """A step outside the setup DAG (plan, tests, coverage, teardown), timed the same way."""
        start, status = self.now(), "failed"
        try:
            yield
            status = "ok"
        finally:
            self.add(Timing(name, start, self.now(), status))


def _check_graph(phases: Sequence[Phase]) -> None:
    names = [p.name for p in phases]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate phase names: {names}")
    for p in phases:
        missing = [n for n in p.needs if n not in names]
        if missing:
            raise ValueError(f"phase {p.name!r} needs unknown phases {missing}")
    done: set[str] = set()
    pending = list(phases)
    while pending:
        ready = [p for p in pending if set(p.needs) <= done]
        if not ready:
            raise ValueError(f"cycle among phases {[p.name for p in pending]}")
        done |= {p.name for p in ready}
        pending = [p for p in pending if p not in ready]


def run_phases(
    phases: Sequence[Phase],
    *,
    timeline: Timeline,
    reporter: Reporter,
    parallel: bool = True,
    max_workers: int = 6,
    cancel: threading.Event | None = None,
) -> None:
    """Start each phase once its needs are done; the first failure stops new starts.

    Sequential mode runs the same phases in a topological order, one at a time.
    """
    _check_graph(phases)
    waits.ABANDON.clear()
    done: set[str] = set()
    pending = list(phases)
    failure: PhaseFailed | None = None

    def execute(phase: Phase) -> None:
        start = timeline.now()
        reporter.started(phase.name, start)
        status = "failed"
        try:
            phase.run()
            status = "ok"
        finally:
            timing = Timing(phase.name, start, timeline.now(), status, phase.needs)
            timeline.add(timing)
            reporter.finished(timing)

    with ThreadPoolExecutor(max_workers=max_workers if parallel else 1) as pool:
        running: dict[Future[None], Phase] = {}
        while pending or running:
            stop = failure is not None or (cancel is not None and cancel.is_set())
            if not stop:
                ready = [p for p in pending if set(p.needs) <= done]
                if not parallel and running:
                    ready = []
                for phase in ready[: 1 if not parallel else None]:
                    pending.remove(phase)
                    running[pool.submit(execute, phase)] = phase
            if not running:
                break
            finished, _ = wait(list(running), timeout=waits.SIGNAL_CHECK_SECONDS, return_when=FIRST_COMPLETED)
            for fut in finished:
                phase = running.pop(fut)
                err = fut.exception()
                if err is None:
                    done.add(phase.name)
                elif failure is None:
                    failure = PhaseFailed(phase.name, err)
                    waits.ABANDON.set()
        for phase in pending:
            now = timeline.now()
            timeline.add(Timing(phase.name, now, now, "skipped", phase.needs))
    waits.ABANDON.clear()
    if failure is not None:
        raise failure
    if cancel is not None and cancel.is_set():
        raise KeyboardInterrupt


def critical_path(timings: Sequence[Timing]) -> float:
    """The longest chain of needs, each phase taking the time it took: no schedule of these phases,
    on any number of cores, finishes sooner (measured one by one, it bounds what running them in
    parallel can gain)."""
    took = {t.name: t.end - t.start for t in timings}
    needs = {t.name: [n for n in t.needs if n in took] for t in timings}
    done: dict[str, float] = {}

    def finish(name: str) -> float:
        if name not in done:
            done[name] = took[name] + max((finish(n) for n in needs[name]), default=0.0)
        return done[name]

    return round(max((finish(n) for n in took), default=0.0), 3)


def critical_chain(timings: Sequence[Timing]) -> list[str]:
    """The phases of that longest chain, first to last (what to make faster to finish sooner)."""
    by_name = {t.name: t for t in timings}
    took = {t.name: t.end - t.start for t in timings}
    done: dict[str, tuple[float, list[str]]] = {}

    def finish(name: str) -> tuple[float, list[str]]:
        if name not in done:
            before = [finish(n) for n in by_name[name].needs if n in took]
            seconds, chain = max(before, default=(0.0, []), key=lambda b: b[0])
            done[name] = (seconds + took[name], [*chain, name])
        return done[name]

    return max((finish(n) for n in took), default=(0.0, []), key=lambda f: f[0])[1]
