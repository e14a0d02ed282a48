"""pytest plugin: records every test's outcomes (reruns included) as JSON lines.

Loaded by the harness with `-p infra.pytest_plugin.pytest_results`; with xdist the
controller sees every worker's reports, so one file holds the whole run.
"""

from __future__ import annotations

import json
import os
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


def _message(report: pytest.TestReport) -> str:
    """The assertion's own words (what was expected, what came back), not a file:line."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = str(getattr(crash, "message", "") or "")
    if not text:
        lines = str(report.longrepr or "").strip().splitlines()
        text = lines[-1] if lines else ""
    return " ".join(text.split())[:400]


_in_worker = False


def pytest_configure(config: pytest.Config) -> None:
    # the xdist controller records the workers' reports; a worker is known by its workerinput, not
    # by PYTEST_XDIST_WORKER, which a harness started from inside a team's own xdist worker inherits
    global _in_worker
    _in_worker = hasattr(config, "workerinput")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = os.environ.get(RESULTS_ENV)
    if not path or _in_worker:
        return
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
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")
