"""pytest e2e/: parallel first, the serial (disruptive) group after, then a summary."""

from __future__ import annotations

import json
import os
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infra.config import Config
from infra.gocover.pertest import PER_TEST_ENV
from infra.proc import Runner
from infra.pytest_plugin import SERIAL_ENV
from infra.pytest_plugin.pytest_results import DEFER_ENV, DEFERRED_ENV, RESULTS_ENV
from infra.state import STATE_ENV

NO_TESTS = 5  # pytest's "no tests collected"
PYTEST_COULD_NOT_RUN = (2, 3, 4)  # interrupted, internal error, usage error


@dataclass
class TestOutcome:
    exit_code: int
    passed: list[str] = field(default_factory=list)
    flaky: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


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


def run_suite(
    config: Config,
    runner: Runner,
    *,
    state_file: Path,
    artifacts: Path,
    extra: Sequence[str],
    per_test: Path | None = None,
) -> TestOutcome:
    """Parallel tests, then the serial group in one worker; exit code is the worse.

    per_test: every test's own coverage goes there (infra.gocover.pertest); both groups then run serially.
    """
    results = artifacts / "results.jsonl"
    results.unlink(missing_ok=True)
    # the suite may live in a team's repo: let its pytest import this harness
    harness_root = str(Path(__file__).resolve().parents[2])
    pythonpath = os.pathsep.join(p for p in (harness_root, os.environ.get("PYTHONPATH", "")) if p)
    serial = config.tests.serial_marker
    env = {
        STATE_ENV: str(state_file),
        RESULTS_ENV: str(results),
        "PYTHONPATH": pythonpath,
        SERIAL_ENV: serial,
    }
    plugins: tuple[str, ...] = ()
    if per_test is not None:
        env[PER_TEST_ENV] = str(per_test)
        plugins = ("infra.gocover.pertest",)
    user_workers = has_workers(extra)
    parallel_workers = "" if user_workers else config.tests.workers
    if per_test is not None:
        parallel_workers = "0"  # flushes around a test see only that test's traffic
    # the parallel run leaves the serial tests out itself and counts them: none, no serial run
    deferred = artifacts / "serial-count"
    deferred.unlink(missing_ok=True)
    runs = [
        ("junit-parallel.xml", "", parallel_workers, list(extra)),
        ("junit-serial.xml", serial, "0", _without_workers(extra)),
    ]
    split = {DEFER_ENV: serial, DEFERRED_ENV: str(deferred)}
    if "-m" in extra:  # the user's marker replaces the harness's split
        runs, split = [("junit-parallel.xml", "", parallel_workers, list(extra))], {}
    codes = []
    for junit_name, marker, workers, args in runs:
        if marker and deferred.exists() and deferred.read_text().strip() == "0":
            codes.append(NO_TESTS)  # saves a pytest start-up (about a second) after the last test
            continue
        argv = pytest_argv(
            config,
            junit=artifacts / junit_name,
            marker=marker,
            workers=workers,
            reruns=config.tests.reruns,
            extra=args,
            plugins=plugins,
        )
        run_env = {**env, **(split if not marker else {})}
        res = runner.run(
            argv, timeout=config.timeouts.tests, env=run_env, cwd=config.root, check=False, capture=False
        )
        codes.append(res.returncode)
    merge_junit([artifacts / run[0] for run in runs], artifacts / "junit.xml")
    outcome = classify(results)
    real = [c for c in codes if c != NO_TESTS]
    outcome.exit_code = max(real) if real else NO_TESTS
    return outcome


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


def classify(results: Path) -> TestOutcome:
    """flaky: failed, then passed on rerun; failed: failed every time."""
    seen: dict[str, list[dict[str, str]]] = {}
    if results.exists():
        for line in results.read_text().splitlines():
            rec = json.loads(line)
            seen.setdefault(rec["nodeid"], []).append(rec)
    out = TestOutcome(0)
    for nodeid, recs in seen.items():
        outcomes = [r["outcome"] for r in recs]
        final = outcomes[-1]
        if final == "passed":
            (out.flaky if "rerun" in outcomes else out.passed).append(nodeid)
        elif final == "skipped":
            out.skipped.append(nodeid)
        elif final in ("failed", "error"):
            msg = next((r["message"] for r in reversed(recs) if r.get("message")), "")
            out.failed.append((nodeid, msg))
    return out


def merge_junit(parts: Sequence[Path], target: Path) -> None:
    root = ET.Element("testsuites")
    for part in parts:
        if not part.exists():
            continue
        tree = ET.parse(part).getroot()
        suites = [tree] if tree.tag == "testsuite" else list(tree)
        root.extend(suites)
    target.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(target, encoding="utf-8", xml_declaration=True)
