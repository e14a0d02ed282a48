"""infra.state: the run-state file the E2E fixtures and `inv down` read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra import state
from infra.paths import RunPaths, latest_state_pointer

RUN_ID = "20260101-000000-abcd"
DATA = {
    "run_id": RUN_ID,
    "platform": "kind",
    "root": "/r",
    "endpoints": {"gateway": "http://127.0.0.1:41080"},
}


def test_write_then_load_by_path(tmp_path: Path) -> None:
    paths = RunPaths(tmp_path, RUN_ID)
    written = state.write(paths, DATA)
    assert written == tmp_path / ".e2e" / "runs" / RUN_ID / "state.json"
    assert json.loads(written.read_text()) == DATA
    assert not written.with_suffix(".tmp").exists()
    loaded = state.load(written)
    assert loaded.data == DATA
    assert loaded.path == written.resolve()
    assert (loaded.run_id, loaded.platform) == (RUN_ID, "kind")
    assert loaded.endpoints == {"gateway": "http://127.0.0.1:41080"}


def test_load_prefers_path_then_env_then_latest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = state.write(
        RunPaths(tmp_path, "20260101-000000-aaaa"), {**DATA, "run_id": "20260101-000000-aaaa"}
    )
    second = state.write(
        RunPaths(tmp_path, "20260101-000000-bbbb"), {**DATA, "run_id": "20260101-000000-bbbb"}
    )
    monkeypatch.delenv(state.STATE_ENV, raising=False)
    assert latest_state_pointer(tmp_path).resolve() == second.resolve()
    assert state.load(root=tmp_path).run_id == "20260101-000000-bbbb"  # newest written
    monkeypatch.setenv(state.STATE_ENV, str(first))
    assert state.load(root=tmp_path).run_id == "20260101-000000-aaaa"  # env wins over latest
    assert state.load(second, root=tmp_path).run_id == "20260101-000000-bbbb"  # explicit path wins


def test_no_state_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(state.STATE_ENV, raising=False)
    with pytest.raises(state.NoState) as info:
        state.load(root=tmp_path)
    msg = str(info.value)
    assert f"no run-state file at {latest_state_pointer(tmp_path)}" in msg
    assert "`inv up`" in msg and "E2E_STATE_FILE" in msg
