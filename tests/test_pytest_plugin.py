"""The harness's pytest plugin on its own: fixtures from a run-state file, the config's marker,
the stack found from wherever `pytest` starts. Real pytest subprocesses, no stack needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.paths import RunPaths, latest_state_pointer, point_latest
from infra.pytest_plugin import Http, Services

REPO = Path(__file__).resolve().parents[1]

SUITE = """\
import pytest


def test_fixtures(endpoints, service_url, run_id, run_namespace, e2e_state):
    assert endpoints == {"api": "http://127.0.0.1:40001"}
    assert service_url("api") == "http://127.0.0.1:40001"
    assert (run_id, run_namespace, e2e_state.platform) == ("r1", "e2e-r1", "kind")
    with pytest.raises(KeyError, match="no endpoint for service 'web'; the run has: api"):
        service_url("web")


@pytest.mark.chaos
def test_marked():
    pass
"""


def write_stack(root: Path) -> Path:
    """What `inv up` leaves: a config, a run-state file and the latest-state pointer."""
    root.mkdir(exist_ok=True)
    config = root / "e2e.toml"
    config.write_text('[tests]\nserial_marker = "chaos"\n')
    paths = RunPaths(root, "r1")
    paths.run_dir.mkdir(parents=True)
    state = {"run_id": "r1", "platform": "kind", "config": str(config), "namespace": "e2e-r1",
             "endpoints": {"api": "http://127.0.0.1:40001"}}  # fmt: skip
    paths.state_file.write_text(json.dumps(state))
    point_latest(latest_state_pointer(root), paths.state_file)
    return paths.state_file


def pytest_in(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """pytest with the plugin in cwd; E2E_STATE_FILE only when given."""
    base = {k: v for k, v in os.environ.items() if k != "E2E_STATE_FILE"}
    argv = [sys.executable, "-m", "pytest", "-p", "infra.pytest_plugin", "-p", "no:cacheprovider", *args]
    return subprocess.run(argv, cwd=cwd, env={**base, "PYTHONPATH": str(REPO), **(env or {})},
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def test_pytest_alone_finds_the_kept_stack_from_a_subdirectory(tmp_path: Path) -> None:
    write_stack(tmp_path)
    suite = tmp_path / "e2e"
    suite.mkdir()
    (suite / "test_user.py").write_text(SUITE)
    out = pytest_in(suite, "--strict-markers", "-q")  # the config's serial marker is registered
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout


def test_e2e_state_file_wins_and_no_stack_says_what_to_do(tmp_path: Path) -> None:
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    state = write_stack(tmp_path / "stack")
    (elsewhere / "test_user.py").write_text(SUITE)
    out = pytest_in(elsewhere, "-q", "--strict-markers", env={"E2E_STATE_FILE": str(state)})
    assert out.returncode == 0, out.stdout + out.stderr
    (elsewhere / "test_user.py").write_text("def test_x(endpoints):\n    pass\n")
    out = pytest_in(elsewhere, "-q")
    assert out.returncode == 4, out.stdout + out.stderr
    assert "no stack is up; next: `inv up`" in out.stdout + out.stderr


def test_http_has_a_timeout_and_connection_retries() -> None:
    with Http(timeout=3) as http:
        adapter = http.get_adapter("http://127.0.0.1:1/")
        assert adapter.max_retries.connect == 3 and adapter.max_retries.read == 0  # type: ignore[attr-defined]
        assert adapter.max_retries.status == 0  # type: ignore[attr-defined]  # a 503 is the test's to see
        assert http.timeout == 3


def test_scale_is_stop_or_start_and_refuses_more(tmp_path: Path) -> None:
    calls: list[tuple[str, str]] = []

    class Recorder:
        name = "podman"

        def stop(self, service: str) -> None:
            calls.append(("stop", service))

        def start(self, service: str) -> None:
            calls.append(("start", service))

    services = Services(Recorder())  # type: ignore[arg-type]
    services.scale("api", 0)
    services.scale("api", 1)
    assert calls == [("stop", "api"), ("start", "api")]
    with pytest.raises(ValueError, match=r"scale\('api', 3\): the harness scales a service to 0 or 1"):
        services.scale("api", 3)
