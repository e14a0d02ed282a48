"""pytest plugin of `--per-test` coverage: every service's counters flushed before and after each test.

Loaded by the harness with `-p infra.gocover.pertest` (the suite then runs serially).
What the services count between two flushes around a test (its fixtures,
reruns and any restart it does included) is that test's own: the new counters
files are linked into `<E2E_PER_TEST_DIR>/<slug>/<service>/` beside the
service's meta-data file, and the test is listed in `tests.jsonl`. The files
stay in the run's covdata too, so the run's total is the usual one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.gocover.coverflush import counter_files
from infra.suite_env import PER_TEST_ENV

INDEX = "tests.jsonl"

_platform: list[Any] = []


def _handle() -> Any:
    """The platform of the running stack, from the run-state file (made once per pytest process)."""
    if not _platform:
        from infra import state
        from infra.platforms.stack import platform_from_state

        _platform.append(platform_from_state(state.load()))
    return _platform[0]


def slug(index: int, nodeid: str) -> str:
    return f"{index:04d}-" + re.sub(r"[^A-Za-z0-9._-]+", "_", nodeid)[:90].strip("_")


def _snapshot(covdata: Path) -> dict[str, set[str]]:
    return (
        {d.name: counter_files(d) for d in sorted(covdata.iterdir()) if d.is_dir()}
        if covdata.is_dir()
        else {}
    )


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    out = os.environ.get(PER_TEST_ENV)
    if not out:
        yield
        return
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    index_file = out_dir / INDEX
    record: dict[str, Any] = {"nodeid": item.nodeid}
    before: dict[str, set[str]] = {}
    covdata = Path()
    try:
        plat = _handle()
        covdata = plat.ctx.paths.covdata
        plat.flush_coverage(None)  # what came before this test is not its own
        before = _snapshot(covdata)
    except Exception as err:  # noqa: BLE001 - the report names the test and the cause
        record["error"] = f"flush before the test: {err}"
    yield
    if "error" not in record:
        try:
            plat.flush_coverage(None)
            after = _snapshot(covdata)
            count = len(index_file.read_text().splitlines()) if index_file.exists() else 0
            record["slug"] = slug(count, item.nodeid)
            for service, names in after.items():
                target = out_dir / record["slug"] / service
                target.mkdir(parents=True, exist_ok=True)
                for meta in (covdata / service).glob("covmeta.*"):
                    _link(meta, target / meta.name)
                for name in sorted(names - before.get(service, set())):
                    _link(covdata / service / name, target / name)
        except Exception as err:  # noqa: BLE001
            record["error"] = f"flush after the test: {err}"
    with index_file.open("a") as fh:
        fh.write(json.dumps(record) + "\n")
