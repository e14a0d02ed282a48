"""pytest e2e/: parallel first, the serial (disruptive) group after, then a summary."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from infra import waits
from infra.config import Config
from infra.proc import CommandTimeout, OutputGate, Result, Runner, niced
from infra.state import STATE_ENV
from infra.suite_env import (
    DEFER_ENV,
    DEFERRED_ENV,
    HARNESS_PID_ENV,
    PER_TEST_ENV,
    RESULTS_ENV,
    SERIAL_ENV,
    START_DEADLINE_ENV,
    START_GATE_ENV,
)

TESTS_FAILED, NO_TESTS = 1, 5  # pytest's exit codes
# the early pytest imports and collects beside the deploys on idle CPU only, so it does not slow
# them. Its tests then run niced too; the services keep their own priority (the harness started them)
EARLY_NICENESS = 19
PYTEST_COULD_NOT_RUN = (2, 3, 4)  # interrupted, internal error, usage error


@dataclass
class TestOutcome:
    exit_code: int
    passed: list[str] = field(default_factory=list)
    flaky: list[tuple[str, str]] = field(default_factory=list)  # nodeid, why it was rerun
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    hung: list[str] = field(default_factory=list)  # still running when timeouts.tests ran out
    timed_out: float | None = None  # that timeout, when it ran out

    @property
    def ran(self) -> int:
        return len(self.passed) + len(self.flaky) + len(self.failed) + len(self.hung)


def pytest_argv(
    config: Config,
    *,
    junit: Path,
    marker: str,
    workers: str,
    reruns: int,
    extra: Sequence[str],
    plugins: Sequence[str] = (),
) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "pytest",
        str(config.path(config.tests.path)),
        "-p",
        "infra.pytest_plugin.pytest_results",
        "-p",
        "infra.pytest_plugin",  # the fixtures: the suite needs no conftest (same name as its entry point)
        *[arg for plugin in plugins for arg in ("-p", plugin)],
        f"--junitxml={junit}",
        "-o",
        "junit_family=xunit2",
        "-p",
        "no:cacheprovider",
        # a file that cannot be collected is a failure beside the tests that ran, in one process as
        # with xdist's workers (pytest alone would stop the whole run: "Interrupted: 1 error")
        "--continue-on-collection-errors",
    ]
    if marker:
        argv += ["-m", marker]
    if workers == "0":
        argv += ["-p", "no:xdist"]
    elif workers:  # "" leaves -n to the user's own arguments
        argv += ["-n", workers]
    if reruns:
        argv += ["--reruns", str(reruns)]
    return argv + list(extra)


class Suite:
    """The suite's pytest runs: parallel first, then the serial group in one worker.

    The first can start before the stack is up (`start_early`): pytest imports
    and collects while setup deploys, then waits for `go` (or ends at `abandon`);
    its console output is held until then, so the setup's display stays whole.
    per_test: every test's own coverage goes there (infra.gocover.pertest); both groups then run serially.
    """

    def __init__(
        self,
        config: Config,
        runner: Runner,
        *,
        state_file: Path,
        artifacts: Path,
        extra: Sequence[str],
        per_test: Path | None = None,
        times_file: Path | None = None,
    ) -> None:
        self.config, self.runner, self.artifacts = config, runner, artifacts
        self.results = artifacts / "results.jsonl"
        self.results.unlink(missing_ok=True)
        # the suite may live in a team's repo: let its pytest import this harness
        harness_root = str(Path(__file__).resolve().parents[2])
        pythonpath = os.pathsep.join(p for p in (harness_root, os.environ.get("PYTHONPATH", "")) if p)
        serial = config.tests.serial_marker
        self.env = {STATE_ENV: str(state_file), RESULTS_ENV: str(self.results), "PYTHONPATH": pythonpath,
                    SERIAL_ENV: serial, HARNESS_PID_ENV: str(os.getpid()), **console_env()}  # fmt: skip
        self.plugins: tuple[str, ...] = ()
        if per_test is not None:
            self.env[PER_TEST_ENV] = str(per_test)
            self.plugins = ("infra.gocover.pertest",)
        parallel_workers = "" if has_workers(extra) else config.tests.workers
        self.times = TestTimes(times_file, config.path(config.tests.path), extra) if times_file else None
        self.one_process_because = ""
        last = self.times.last() if self.times else None
        if parallel_workers == "auto" and last is not None and last < AUTO_ONE_PROCESS_SECONDS:
            parallel_workers = "0"
            self.one_process_because = (
                f"these tests took {last:.1f} s together last time: one process "
                f"(pass -n auto for pytest-xdist's workers)"
            )
        if per_test is not None:
            parallel_workers = "0"  # flushes around a test see only that test's traffic
        # the parallel run leaves the serial tests out itself and counts them: none, no serial run
        self.deferred = artifacts / "serial-count"
        self.deferred.unlink(missing_ok=True)
        self.runs = [
            ("junit-parallel.xml", "", parallel_workers, list(extra)),
            ("junit-serial.xml", serial, "0", _without_workers(extra)),
        ]
        self.split = {DEFER_ENV: serial, DEFERRED_ENV: str(self.deferred)}
        if "-m" in extra:  # the user's marker replaces the harness's split
            self.runs, self.split = [self.runs[0]], {}
        self.gate_file = artifacts / ".start-gate"
        self._gate = OutputGate()
        self._early: Future[Result] | None = None

    def _argv_env(self, index: int) -> tuple[list[str], dict[str, str]]:
        junit_name, marker, workers, args = self.runs[index]
        argv = pytest_argv(
            self.config,
            junit=self.artifacts / junit_name,
            marker=marker,
            workers=workers,
            reruns=self.config.tests.reruns,
            extra=args,
            plugins=self.plugins,
        )
        return argv, {**self.env, **(self.split if not marker else {})}

    def start_early(self, wait_seconds: float) -> None:
        """Start the first run now; it waits up to wait_seconds for `go` before its first test."""
        self.gate_file.unlink(missing_ok=True)
        argv, env = self._argv_env(0)
        argv = niced(argv, EARLY_NICENESS)
        env |= {START_GATE_ENV: str(self.gate_file), START_DEADLINE_ENV: str(round(wait_seconds))}
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pytest-early")
        tests = self.config.timeouts.tests
        self._early = pool.submit(self.runner.run, argv, timeout=tests, env=env, cwd=self.config.root,
                                  check=False, capture=False, gate=self._gate)  # fmt: skip
        pool.shutdown(wait=False)

    def _word(self, word: str) -> None:
        tmp = self.gate_file.with_suffix(".tmp")
        tmp.write_text(word + "\n")
        tmp.replace(self.gate_file)  # whole or absent: the waiting pytest never reads half of it

    def abandon(self, why: str) -> None:
        """Setup did not finish: the early pytest ends without a test, its output goes to the log only."""
        if self._early is not None:
            with contextlib.suppress(Exception):  # the setup's failure is the one reported
                self._decide(f"setup did not finish ({why})")

    def _decide(self, word: str) -> int:
        """Give the early pytest its word ("go" shows its output), wait for its end; its exit code."""
        assert self._early is not None
        early, self._early = self._early, None
        self._word(word)
        if word == "go":
            self._gate.release()
        else:  # a pytest still importing at nice 19 on a busy machine could take its time: not waited for
            self._gate.abort()
        try:
            return waits.result(early).returncode
        finally:
            self.gate_file.unlink(missing_ok=True)

    def run(self) -> TestOutcome:
        """Both runs (the first may be under way already); the exit code is the worse.

        A run that outlives timeouts.tests is ended with what it started; the tests it was
        running are `hung`, and the serial group does not start after it.
        """
        codes = []
        timed_out = False
        for index, (_, marker, _, _) in enumerate(self.runs):
            if timed_out or (marker and self.deferred.exists() and self.deferred.read_text().strip() == "0"):
                codes.append(NO_TESTS)  # saves a pytest start-up (about a second) after the last test
                continue
            try:
                codes.append(self._run_one(index))
            except CommandTimeout:
                timed_out = True
                codes.append(TESTS_FAILED)
        outcome = classify(self.results)
        if timed_out:
            outcome.timed_out = self.config.timeouts.tests
        elif self.times is not None:
            self.times.record(self.results)
        merge_junit([self.artifacts / run[0] for run in self.runs], self.artifacts / "junit.xml",
                    hung=outcome.hung, timeout=self.config.timeouts.tests)  # fmt: skip
        real = [c for c in codes if c != NO_TESTS]
        outcome.exit_code = max(real) if real else NO_TESTS
        return outcome

    def _run_one(self, index: int) -> int:
        if index == 0 and self._early is not None:
            return self._decide("go")
        argv, env = self._argv_env(index)
        res = self.runner.run(
            argv,
            timeout=self.config.timeouts.tests,
            env=env,
            cwd=self.config.root,
            check=False,
            capture=False,
        )
        return res.returncode


# xdist's workers each start a Python and import pytest and the suite (about a CPU-second), while
# setup runs: tests that took less than this together finish sooner in the one process
AUTO_ONE_PROCESS_SECONDS = 5.0


class TestTimes:
    """How long a selection's tests took last time (summed), kept per tests path and arguments."""

    __test__ = False  # not a pytest class

    def __init__(self, file: Path, tests: Path, extra: Sequence[str]) -> None:
        self.file = file
        self.key = hashlib.sha256(json.dumps([str(tests), list(extra)]).encode()).hexdigest()[:16]

    def _all(self) -> dict[str, float]:
        try:
            data = json.loads(self.file.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def last(self) -> float | None:
        return self._all().get(self.key)

    def record(self, results: Path) -> None:
        try:
            lines = results.read_text().splitlines()
        except OSError:
            return
        seconds = sum(float(json.loads(line).get("duration") or 0) for line in lines if line.strip())
        if not lines:
            return
        times = self._all() | {self.key: round(seconds, 3)}
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(times, indent=1, sort_keys=True) + "\n")
        tmp.replace(self.file)


def console_env() -> dict[str, str]:
    """pytest writes into a pipe when its output is held: keep the colours and width of our terminal."""
    if not sys.stdout.isatty():
        return {}
    return {"PY_COLORS": "1", "COLUMNS": str(shutil.get_terminal_size().columns)}


def has_workers(args: Sequence[str]) -> bool:
    return any(a == "-n" or a.startswith(("-n", "--numprocesses")) for a in args)


def _without_workers(args: Sequence[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
        elif a in ("-n", "--numprocesses"):
            skip = True
        elif not a.startswith(("-n", "--numprocesses=")):
            out.append(a)
    return out


LIFECYCLE = ("started", "finished")


def classify(results: Path) -> TestOutcome:
    """flaky: failed, then passed on rerun; failed: failed every time; hung: started, never finished."""
    seen: dict[str, list[dict[str, str]]] = {}
    if results.exists():
        for line in results.read_text().splitlines():
            rec = json.loads(line)
            seen.setdefault(rec["nodeid"], []).append(rec)
    out = TestOutcome(0)
    for nodeid, all_recs in seen.items():
        ends = [r["outcome"] for r in all_recs if r["outcome"] in LIFECYCLE]
        if ends and ends[-1] == "started":
            out.hung.append(nodeid)
            continue
        recs = [r for r in all_recs if r["outcome"] not in LIFECYCLE]
        if not recs:
            continue
        outcomes = [r["outcome"] for r in recs]
        final = outcomes[-1]
        if final == "passed" and "rerun" in outcomes:
            out.flaky.append((nodeid, next((r["message"] for r in recs if r.get("message")), "")))
        elif final == "passed":
            out.passed.append(nodeid)
        elif final == "skipped":
            out.skipped.append(nodeid)
        elif final in ("failed", "error"):
            msg = next((r["message"] for r in reversed(recs) if r.get("message")), "")
            out.failed.append((nodeid, msg))
    return out


def merge_junit(parts: Sequence[Path], target: Path, *, hung: Sequence[str] = (), timeout: float = 0) -> None:
    """One junit.xml; a hung test (its pytest was ended, its own junit never written) is an error."""
    root = ET.Element("testsuites")
    for part in parts:
        if not part.exists():
            continue
        tree = ET.parse(part).getroot()
        suites = [tree] if tree.tag == "testsuite" else list(tree)
        root.extend(suites)
    if hung:
        suite = ET.SubElement(root, "testsuite", name="hung", tests=str(len(hung)), errors=str(len(hung)))
        for nodeid in hung:
            path, _, name = nodeid.rpartition("::")
            case = ET.SubElement(suite, "testcase", classname=path.replace("/", ".").removesuffix(".py"),
                                 name=name or nodeid)  # fmt: skip
            ET.SubElement(case, "error", message=f"still running when timeouts.tests ({timeout:g} s) ran out")
    target.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(target, encoding="utf-8", xml_declaration=True)
