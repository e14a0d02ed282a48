"""infra.run.testrun: pytest argv, flaky/failed classification, junit merging."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from infra import waits
from infra.config import Config
from infra.proc import RecordingRunner, SubprocessRunner
from infra.pytest_plugin.pytest_results import DEFER_ENV, DEFERRED_ENV, RESULTS_ENV
from infra.run import testrun
from infra.run.testrun import Suite, classify, merge_junit, pytest_argv
from infra.state import STATE_ENV
from infra.suite_env import HARNESS_PID_ENV, START_DEADLINE_ENV, START_GATE_ENV
from tests.faultkit import processes_with_env

REPO = Path(__file__).resolve().parents[1]


def results(tmp_path: Path, *records: tuple[str, str, str]) -> Path:
    path = tmp_path / "results.jsonl"
    lines = [
        json.dumps(
            {
                "nodeid": n,
                "when": w,
                "outcome": o,
                "duration": 0.1,
                "message": "AssertionError: boom" if o in ("failed", "rerun") else "",
            }
        )
        for n, w, o in records
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


# -- classify -------------------------------------------------------------------------------


def test_rerun_then_pass_is_flaky(tmp_path: Path) -> None:
    out = classify(results(tmp_path, ("t.py::a", "call", "rerun"), ("t.py::a", "call", "passed")))
    assert out.flaky == [("t.py::a", "AssertionError: boom")]
    assert out.passed == [] and out.failed == []


def test_fail_then_fail_is_failed(tmp_path: Path) -> None:
    out = classify(results(tmp_path, ("t.py::b", "call", "rerun"), ("t.py::b", "call", "failed")))
    assert out.failed == [("t.py::b", "AssertionError: boom")]
    assert out.flaky == []
    out2 = classify(results(tmp_path, ("t.py::b", "call", "failed"), ("t.py::b", "call", "failed")))
    assert [n for n, _ in out2.failed] == ["t.py::b"] and out2.flaky == []


def test_classify_mixed_run(tmp_path: Path) -> None:
    out = classify(
        results(
            tmp_path,
            ("t.py::ok", "call", "passed"),
            ("t.py::flaky", "call", "rerun"),
            ("t.py::flaky", "call", "passed"),
            ("t.py::bad", "call", "rerun"),
            ("t.py::bad", "call", "failed"),
            ("t.py::skip", "setup", "skipped"),
            ("t.py::teardown_err", "call", "passed"),
            ("t.py::teardown_err", "teardown", "failed"),
        )
    )
    assert out.passed == ["t.py::ok"]
    assert [n for n, _ in out.flaky] == ["t.py::flaky"]
    assert [n for n, _ in out.failed] == ["t.py::bad", "t.py::teardown_err"]
    assert out.skipped == ["t.py::skip"]


def test_classify_without_results_file(tmp_path: Path) -> None:
    out = classify(tmp_path / "missing.jsonl")
    assert (out.passed, out.flaky, out.failed, out.skipped) == ([], [], [], [])


# -- merge_junit ----------------------------------------------------------------------------

SUITES = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="2" failures="1">
<testcase classname="t" name="a"/><testcase classname="t" name="b"><failure message="boom"/></testcase>
</testsuite></testsuites>
"""
SUITE = """<?xml version="1.0" encoding="utf-8"?>
<testsuite name="serial" tests="1"><testcase classname="t" name="c"/></testsuite>
"""


def test_merge_junit_merges_two_files(tmp_path: Path) -> None:
    (tmp_path / "p.xml").write_text(SUITES)
    (tmp_path / "s.xml").write_text(SUITE)
    target = tmp_path / "out" / "junit.xml"
    merge_junit([tmp_path / "p.xml", tmp_path / "s.xml", tmp_path / "missing.xml"], target)
    root = ET.parse(target).getroot()
    assert root.tag == "testsuites"
    assert [s.get("name") for s in root] == ["pytest", "serial"]
    assert [c.get("name") for c in root.iter("testcase")] == ["a", "b", "c"]
    assert len(list(root.iter("failure"))) == 1


def test_merge_junit_with_no_parts_writes_an_empty_report(tmp_path: Path) -> None:
    merge_junit([tmp_path / "none.xml"], tmp_path / "junit.xml")
    assert ET.parse(tmp_path / "junit.xml").getroot().tag == "testsuites"


# -- argv -----------------------------------------------------------------------------------


def test_pytest_argv(repo_cfg: Config, tmp_path: Path) -> None:
    junit = tmp_path / "j.xml"
    argv = pytest_argv(
        repo_cfg, junit=junit, marker="not disruptive", workers="auto", reruns=1, extra=["-k", "x"]
    )
    assert argv == [
        sys.executable,
        "-m",
        "pytest",
        str(REPO / "e2e"),
        "-p",
        "infra.pytest_plugin.pytest_results",
        "-p",
        "infra.pytest_plugin",
        f"--junitxml={junit}",
        "-o",
        "junit_family=xunit2",
        "-p",
        "no:cacheprovider",
        "--continue-on-collection-errors",
        "-m",
        "not disruptive",
        "-n",
        "auto",
        "--reruns",
        "1",
        "-k",
        "x",
    ]
    serial = pytest_argv(repo_cfg, junit=junit, marker="disruptive", workers="0", reruns=0, extra=[])
    assert serial[-2:] == ["-p", "no:xdist"]
    assert "--reruns" not in serial


def test_the_suite_runs_parallel_then_serial(repo_cfg: Config, tmp_path: Path) -> None:
    runner = RecordingRunner()
    state_file = tmp_path / "state.json"
    out = Suite(repo_cfg, runner, state_file=state_file, artifacts=tmp_path, extra=["-x"]).run()
    assert len(runner.calls) == 2
    par, ser = (c.argv for c in runner.calls)
    assert list(par) == pytest_argv(
        repo_cfg,
        junit=tmp_path / "junit-parallel.xml",
        marker="",  # the results plugin leaves the serial tests out and counts them
        workers="auto",
        reruns=1,
        extra=["-x"],
    )
    assert runner.calls[0].env[DEFER_ENV] == "disruptive"
    assert DEFER_ENV not in runner.calls[1].env
    assert list(ser) == pytest_argv(
        repo_cfg,
        junit=tmp_path / "junit-serial.xml",
        marker="disruptive",
        workers="0",
        reruns=1,
        extra=["-x"],
    )
    assert "-n" not in ser and "no:xdist" in ser
    for call in runner.calls:
        assert call.argv[:3] == (sys.executable, "-m", "pytest")
        assert call.argv[-1] == "-x"
        assert call.env[STATE_ENV] == str(state_file)
        assert call.env[RESULTS_ENV] == str(tmp_path / "results.jsonl")
        # the suite may live outside this repo and still import the harness
        assert call.env["PYTHONPATH"].split(os.pathsep)[0] == str(REPO)
        assert call.cwd == str(REPO)
        assert call.timeout == repo_cfg.timeouts.tests
    assert out.exit_code == 0
    assert (tmp_path / "junit.xml").exists()


def test_the_suite_exit_code_is_the_worse_ignoring_no_tests(repo_cfg: Config, tmp_path: Path) -> None:
    runner = RecordingRunner()
    runner.on(
        [
            sys.executable,
            "-m",
            "pytest",
            str(REPO / "e2e"),
            "-p",
            "infra.pytest_plugin.pytest_results",
            "-p",
            "infra.pytest_plugin",
            "-m",
            "disruptive",
        ],
        returncode=testrun.NO_TESTS,
    )
    runner.on([sys.executable], returncode=1)
    assert (
        Suite(repo_cfg, runner, state_file=tmp_path / "s", artifacts=tmp_path, extra=[]).run().exit_code == 1
    )
    none = RecordingRunner()
    none.on([sys.executable], returncode=testrun.NO_TESTS)
    assert Suite(repo_cfg, none, state_file=tmp_path / "s", artifacts=tmp_path, extra=[]).run().exit_code == 5


def test_a_user_marker_replaces_the_harness_markers(repo_cfg: Config, tmp_path: Path) -> None:
    runner = RecordingRunner()
    Suite(repo_cfg, runner, state_file=tmp_path / "s", artifacts=tmp_path, extra=["-m", "smoke"]).run()
    assert len(runner.calls) == 1
    argv = runner.calls[0].argv
    assert argv[:3] == (sys.executable, "-m", "pytest")
    assert argv[-2:] == ("-m", "smoke")
    assert "not disruptive" not in argv and "" not in argv


def test_user_workers_are_not_combined_with_no_xdist(repo_cfg: Config, tmp_path: Path) -> None:
    runner = RecordingRunner()
    Suite(repo_cfg, runner, state_file=tmp_path / "s", artifacts=tmp_path, extra=["-n", "2"]).run()
    parallel, serial = (c.argv for c in runner.calls)
    assert "no:xdist" not in parallel
    assert parallel.count("-n") == 1 and parallel[-2:] == ("-n", "2")
    # the serial group stays in one process whatever -n the user asked for
    assert "no:xdist" in serial and "-n" not in serial


@pytest.mark.parametrize(("deferred", "runs"), [("0", 1), ("2", 2)])
def test_no_serial_run_when_the_parallel_run_deferred_nothing(
    repo_cfg: Config, tmp_path: Path, deferred: str, runs: int
) -> None:
    def parallel_run_counts(argv: tuple[str, ...]) -> None:
        if "disruptive" not in argv:  # the parallel run
            (tmp_path / "serial-count").write_text(deferred)  # what the plugin writes

    runner = RecordingRunner(responders=[parallel_run_counts])  # type: ignore[list-item]
    Suite(repo_cfg, runner, state_file=tmp_path / "s", artifacts=tmp_path, extra=[]).run()
    assert len(runner.calls) == runs


def test_the_plugin_defers_the_serial_tests_that_survive_k(tmp_path: Path) -> None:
    """For real: pytest with the results plugin, a serial-marked test, and -k."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text(
        "def pytest_configure(config):\n    config.addinivalue_line('markers', 'disruptive: serial')\n"
    )
    (suite / "test_x.py").write_text(
        "import pytest\n\ndef test_plain():\n    pass\n\n"
        "@pytest.mark.disruptive\ndef test_restart():\n    pass\n"
    )
    count = tmp_path / "count"
    env = {**os.environ, DEFER_ENV: "disruptive", DEFERRED_ENV: str(count), "PYTHONPATH": str(REPO)}

    def pytest_run(*args: str) -> str:
        plugins = ["-p", "infra.pytest_plugin.pytest_results", "-p", "no:cacheprovider"]
        argv = [sys.executable, "-m", "pytest", str(suite), *plugins, "-q", *args]
        return subprocess.run(argv, env=env, capture_output=True, text=True, check=False).stdout

    out = pytest_run()
    assert count.read_text() == "1" and "1 passed, 1 deselected" in out, out
    out = pytest_run("-k", "plain")
    assert count.read_text() == "0", out  # -k left no serial test: the serial run is skipped


@pytest.mark.parametrize("workers", ["0", "2"])
def test_results_are_recorded_once_even_under_an_outer_xdist_worker(tmp_path: Path, workers: str) -> None:
    """For real: a harness started from a team's xdist worker passes PYTEST_XDIST_WORKER down."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_x.py").write_text("def test_one():\n    pass\n\ndef test_two():\n    assert 0\n")
    results = tmp_path / "results.jsonl"
    env = {**os.environ, RESULTS_ENV: str(results), "PYTHONPATH": str(REPO), "PYTEST_XDIST_WORKER": "gw3",
           "PYTEST_XDIST_WORKER_COUNT": "4"}  # fmt: skip
    xdist = ["-p", "no:xdist"] if workers == "0" else ["-n", workers]
    argv = [sys.executable, "-m", "pytest", str(suite), "-p", "infra.pytest_plugin.pytest_results",
            "-p", "no:cacheprovider", "-q", *xdist]  # fmt: skip

    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)

    assert "1 failed, 1 passed" in out.stdout, out.stdout + out.stderr
    recorded = [json.loads(line) for line in results.read_text().splitlines()]
    recorded = [r for r in recorded if r["when"] not in ("start", "finish")]
    assert sorted((r["nodeid"].split("::")[1], r["outcome"]) for r in recorded) == [
        ("test_one", "passed"), ("test_two", "failed"),
    ], recorded  # fmt: skip


def test_a_flaky_test_says_why_it_was_rerun(tmp_path: Path) -> None:
    """For real, with pytest-rerunfailures: the first attempt's failure is kept with the rerun."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_f.py").write_text(
        "import pathlib\n\ndef test_once(tmp_path_factory):\n"
        f"    mark = pathlib.Path({str(tmp_path / 'tried')!r})\n"
        "    first = not mark.exists()\n    mark.touch()\n"
        "    assert not first, 'pending=0 on the first try'\n"
    )
    results = tmp_path / "results.jsonl"
    env = {**os.environ, RESULTS_ENV: str(results), "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "pytest", str(suite), "-p", "infra.pytest_plugin.pytest_results",
            "-p", "no:cacheprovider", "-p", "no:xdist", "-q", "--reruns", "1"]  # fmt: skip

    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)

    assert "1 passed, 1 rerun" in out.stdout, out.stdout + out.stderr
    flaky = classify(results).flaky
    assert [n.split("::")[1] for n, _ in flaky] == ["test_once"], flaky
    assert "pending=0 on the first try" in flaky[0][1], flaky


@pytest.mark.parametrize("workers", ["0", "2"])
def test_the_suites_pytest_ends_once_its_harness_is_killed(tmp_path: Path, workers: str) -> None:
    """For real: a harness SIGKILLed while its suite's pytest still collects tears nothing down."""
    suite = tmp_path / "suite"
    suite.mkdir()
    collecting = tmp_path / "collecting"
    (suite / "test_slow.py").write_text(  # collection takes a minute: the kill comes during it
        f"import pathlib, time\npathlib.Path({str(collecting)!r}).touch()\ntime.sleep(60)\n\n"
        "def test_one():\n    pass\n"
    )
    marker = f"{RESULTS_ENV}={tmp_path / 'results.jsonl'}"  # this test's processes carry it
    xdist = ["-p", "no:xdist"] if workers == "0" else ["-n", workers]
    pytest_argv = [sys.executable, "-m", "pytest", str(suite), "-p", "infra.pytest_plugin", "-q",
                   "-p", "no:cacheprovider", *xdist]  # fmt: skip
    harness = (  # stands in for the harness: starts the suite's pytest as testrun.Suite does, its output
        # into a pipe the harness reads (killed, it leaves a broken pipe)
        "import os, subprocess, sys, time\n"
        f"env = {{**os.environ, {HARNESS_PID_ENV!r}: str(os.getpid())}}\n"
        f"subprocess.Popen({pytest_argv!r}, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)\n"
        "time.sleep(300)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), RESULTS_ENV: marker.split("=", 1)[1]}
    parent = subprocess.Popen([sys.executable, "-c", harness], env=env)
    try:
        waits.poll("the suite's pytest to collect", lambda: waits.Observation(collecting.exists(), "not yet"),
                   timeout=120)  # fmt: skip
    finally:
        parent.kill()  # SIGKILL: no teardown
        parent.wait()

    def ended() -> waits.Observation[list[int]]:
        left = processes_with_env(lambda entry: entry == marker.encode())
        return waits.Observation(not left, f"still running: pids {left}", left)

    waits.poll("the suite's pytest (and its workers) to end with its harness", ended, timeout=20)


def _tiny_suite(tmp_path: Path) -> Path:
    """One passing test, which leaves its niceness in `niceness`; its conftest leaves `collected`
    beside it once collection is done."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_tiny.py").write_text(
        "import os, pathlib\n\ndef test_one():\n"
        "    (pathlib.Path(__file__).parent / 'niceness').write_text(str(os.nice(0)))\n"
    )
    (suite / "conftest.py").write_text(
        "import pathlib\n\ndef pytest_collection_finish(session):\n"
        "    (pathlib.Path(__file__).parent / 'collected').touch()\n"
    )
    return suite


def test_an_early_pytest_collects_then_runs_only_on_go(
    make_cfg: Callable[..., Config], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """For real: pytest starts before the stack is up, its output is held, and `go` runs the tests."""
    tests = _tiny_suite(tmp_path)
    cfg = make_cfg(tests={"path": str(tests), "workers": "0", "reruns": 0})
    suite = testrun.Suite(cfg, SubprocessRunner(), state_file=tmp_path / "s", artifacts=tmp_path, extra=[])
    suite.start_early(wait_seconds=120)
    waits.poll(
        "the early pytest to finish collecting",
        lambda: waits.Observation((tests / "collected").exists(), "no `collected` file yet"),
        timeout=60,
        interval=0.05,
    )
    # collected, and still no test has run: it waits for the word; its header is held, not shown
    assert suite._early is not None and not suite._early.done()
    assert not (tmp_path / "results.jsonl").exists()
    assert capsys.readouterr().out == ""
    time.sleep(1.5)  # not a wait for anything: the setup time the summary must leave out
    outcome = suite.run()
    assert outcome.exit_code == 0, outcome
    assert [n.rsplit("/", 1)[-1] for n in outcome.passed] == ["test_tiny.py::test_one"], outcome
    out = capsys.readouterr().out  # released: pytest's output reached the console
    summary = re.search(r"1 passed in ([0-9.]+)s", out)
    assert summary and float(summary.group(1)) < 1.5, out  # the tests' time, not the wait's
    assert not suite.gate_file.exists()
    # it ran on idle CPU only (the deploys beside it go first); a run started later does not
    assert int((tests / "niceness").read_text()) == min(19, os.nice(0) + testrun.EARLY_NICENESS)
    later = testrun.Suite(cfg, SubprocessRunner(), state_file=tmp_path / "s", artifacts=tmp_path, extra=[])
    assert later.run().exit_code == 0
    assert int((tests / "niceness").read_text()) == os.nice(0)


def test_an_abandoned_early_pytest_ends_without_a_test_and_shows_nothing(
    make_cfg: Callable[..., Config], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = make_cfg(tests={"path": str(_tiny_suite(tmp_path)), "workers": "0", "reruns": 0})
    suite = testrun.Suite(cfg, SubprocessRunner(), state_file=tmp_path / "s", artifacts=tmp_path, extra=[])
    suite.start_early(wait_seconds=120)
    suite.abandon("phase 'deploy:api' failed")
    assert suite._early is None  # joined: the pytest process has ended
    assert not (tmp_path / "results.jsonl").exists()  # no test ran
    assert capsys.readouterr().out == ""  # its output went to the log only
    assert not suite.gate_file.exists()


def test_the_plugin_gives_up_waiting_at_its_deadline_and_says_for_what(tmp_path: Path) -> None:
    from infra.pytest_plugin import wait_for_start

    word = wait_for_start(tmp_path / "gate", timeout=0.2)
    assert "gave up after 0.2s waiting for the harness to finish setup" in word
    assert "not written yet" in word
    (tmp_path / "gate").write_text("go\n")
    assert wait_for_start(tmp_path / "gate", timeout=0.2) == "go"


def test_an_early_pytest_that_is_told_no_exits_without_running_a_test(tmp_path: Path) -> None:
    """For real: the plugin in a pytest process, the gate written before it looks."""
    suite = _tiny_suite(tmp_path)
    gate = tmp_path / "gate"
    gate.write_text("setup did not finish (PhaseFailed)\n")
    env = {**os.environ, START_GATE_ENV: str(gate), START_DEADLINE_ENV: "30", "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "pytest", str(suite), "-p", "infra.pytest_plugin", "-p", "no:cacheprovider"]
    res = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert res.returncode == pytest.ExitCode.INTERRUPTED, res.stdout + res.stderr
    assert "no test ran: setup did not finish (PhaseFailed)" in res.stdout + res.stderr
    assert "1 passed" not in res.stdout


# -- workers = "auto": a selection that ran quickly runs in one process ------------------------------
def _recorded(tmp_path: Path, repo_cfg: Config, extra: list[str], seconds: float) -> Path:
    """What a finished run of that selection leaves: its results, their durations summed."""
    times = tmp_path / "state" / "test-seconds.json"
    res = tmp_path / "earlier.jsonl"
    res.write_text(
        json.dumps({"nodeid": "t::a", "when": "call", "outcome": "passed", "duration": seconds / 2}) + "\n"
        + json.dumps({"nodeid": "t::b", "when": "call", "outcome": "passed", "duration": seconds / 2}) + "\n"
        + json.dumps({"nodeid": "t::b", "when": "finish", "outcome": "finished"}) + "\n"
    )  # fmt: skip
    testrun.TestTimes(times, repo_cfg.path(repo_cfg.tests.path), extra).record(res)
    return times


@pytest.mark.parametrize(("seconds", "one_process"), [(0.4, True), (60.0, False)])
def test_auto_workers_follow_how_long_the_same_selection_took_last_time(
    repo_cfg: Config, tmp_path: Path, seconds: float, one_process: bool
) -> None:
    times = _recorded(tmp_path, repo_cfg, ["-k", "smoke"], seconds)
    runner = RecordingRunner()
    suite = Suite(repo_cfg, runner, state_file=tmp_path / "s", artifacts=tmp_path, extra=["-k", "smoke"],
                  times_file=times)  # fmt: skip
    suite.run()
    parallel = runner.calls[0].argv
    assert ("no:xdist" in parallel) is one_process and ("-n" in parallel) is not one_process, parallel
    assert bool(suite.one_process_because) is one_process
    if one_process:
        assert "took 0.4 s together last time: one process (pass -n auto" in suite.one_process_because


def test_auto_workers_keep_xdist_for_a_selection_never_run_and_for_a_fixed_count(
    repo_cfg: Config, tmp_path: Path
) -> None:
    times = _recorded(tmp_path, repo_cfg, ["-k", "smoke"], 0.4)
    for extra in (["-k", "other"], ["-k", "smoke", "-n", "2"]):
        runner = RecordingRunner()
        Suite(repo_cfg, runner, state_file=tmp_path / "s", artifacts=tmp_path, extra=extra,
              times_file=times).run()  # fmt: skip
        assert "no:xdist" not in runner.calls[0].argv, extra


def test_a_run_records_its_selections_time_for_the_next(repo_cfg: Config, tmp_path: Path) -> None:
    times = tmp_path / "state" / "test-seconds.json"

    def writes_results(argv: tuple[str, ...]) -> None:
        if "disruptive" not in argv:
            (tmp_path / "results.jsonl").write_text(
                json.dumps({"nodeid": "t::a", "when": "call", "outcome": "passed", "duration": 1.25}) + "\n"
            )

    Suite(repo_cfg, RecordingRunner(responders=[writes_results]), state_file=tmp_path / "s",  # type: ignore[list-item]
          artifacts=tmp_path, extra=["-k", "x"], times_file=times).run()  # fmt: skip
    assert testrun.TestTimes(times, repo_cfg.path(repo_cfg.tests.path), ["-k", "x"]).last() == 1.25
    assert testrun.TestTimes(times, repo_cfg.path(repo_cfg.tests.path), ["-k", "y"]).last() is None
