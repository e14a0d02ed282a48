"""pytest plugin: records every test's outcomes (reruns included) as JSON lines.

Loaded by the harness with `-p infra.pytest_plugin.pytest_results`; with xdist the
controller sees every worker's reports, so one file holds the whole run.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from infra.suite_env import DEFER_ENV, DEFERRED_ENV, RESULTS_ENV

__all__ = ["DEFERRED_ENV", "DEFER_ENV", "RESULTS_ENV"]


@pytest.hookimpl(trylast=True)  # after -k and -m: what is deferred is what the serial run will select
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    marker = os.environ.get(DEFER_ENV)
    if not marker:
        return
    deferred = [item for item in items if item.get_closest_marker(marker)]
    if deferred:
        items[:] = [item for item in items if not item.get_closest_marker(marker)]
        config.hook.pytest_deselected(items=deferred)
    count_file = os.environ.get(DEFERRED_ENV)
    if count_file:  # every xdist worker collects the same items: the same count
        with open(count_file, "w") as fh:
            fh.write(str(len(deferred)))


_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)\b")
_FILE_LINE = re.compile(r'File "([^"]+)", line (\d+)')


def _message(report: pytest.TestReport | pytest.CollectReport) -> str:
    """The error's own words (what was expected, what came back), not a file:line.

    A fixture or collection error has no crash line: its `E` lines say it (the exception, and
    for a SyntaxError the file and line).
    """
    crash = getattr(report.longrepr, "reprcrash", None)
    text = str(getattr(crash, "message", "") or "")
    lines = [ln.strip() for ln in str(report.longrepr or "").strip().splitlines()]
    if not text:
        said = [ln[1:].strip() for ln in lines if ln.startswith("E ") and ln[1:].strip()]
        raised = [ln for ln in said if _EXCEPTION.match(ln)]
        text = raised[-1] if raised else (said[0] if said else next((ln for ln in reversed(lines) if ln), ""))
        where = next((m for m in map(_FILE_LINE.search, said) if m), None)
        if raised and where:
            text += f" ({Path(where.group(1)).name}, line {where.group(2)})"
    return " ".join(text.split())[:400]


_in_worker = False


def pytest_configure(config: pytest.Config) -> None:
    # the xdist controller records the workers' reports; a worker is known by its workerinput, not
    # by PYTEST_XDIST_WORKER, which a harness started from inside a team's own xdist worker inherits
    global _in_worker
    _in_worker = hasattr(config, "workerinput")


def _record(record: dict[str, Any]) -> None:
    path = os.environ.get(RESULTS_ENV)
    if path and not _in_worker:
        with open(path, "a") as fh:
            fh.write(json.dumps(record) + "\n")


# a test that starts and never finishes is one the harness ended at timeouts.tests: these two
# records name it (with xdist the controller sees every worker's start and finish)
def pytest_runtest_logstart(nodeid: str) -> None:
    _record({"nodeid": nodeid, "when": "start", "outcome": "started", "at": round(time.time(), 3)})


def pytest_runtest_logfinish(nodeid: str) -> None:
    _record({"nodeid": nodeid, "when": "finish", "outcome": "finished"})


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """A file that cannot be collected (a SyntaxError, an import) is an error of the suite."""
    if report.failed:
        _record(
            {
                "nodeid": report.nodeid or ".",
                "when": "collect",
                "outcome": "error",
                "duration": 0.0,
                "message": _message(report),
            }
        )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    outcome: str = report.outcome  # pytest-rerunfailures adds "rerun"
    if report.when != "call" and outcome == "passed":
        return
    record: dict[str, Any] = {
        "nodeid": report.nodeid,
        "when": report.when,
        "outcome": outcome,
        "duration": round(report.duration, 3),
        "start": round(getattr(report, "start", 0.0), 3),  # epoch seconds: the bench's first/last test
        "stop": round(getattr(report, "stop", 0.0), 3),
        "message": _message(report) if report.failed or outcome == "rerun" else "",  # why it reran
    }
    _record(record)
