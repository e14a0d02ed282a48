"""A team's own repo and suite, run through the harness on real podman: `inv init`, then its own
tests using the harness's fixtures, with no conftest and no import of the harness."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from infra.podman_cli import podman_env
from tests.gorepo import make_repo

pytestmark = [pytest.mark.podman, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 600

FIXTURE_TESTS = """\
import pytest
import requests


def test_endpoints_and_state(endpoints, service_url, e2e_state, run_id, run_namespace):
    assert set(endpoints) == {"api", "worker", "billing"}
    assert service_url("api") == endpoints["api"] and endpoints["api"].startswith("http://127.0.0.1:")
    assert e2e_state.run_id == run_id and e2e_state.platform == "podman"
    assert run_namespace == ""  # podman: no Kubernetes namespace
    with pytest.raises(KeyError, match="the run has: api, billing, worker"):
        service_url("nope")


def test_http_session(http, service_url):
    resp = http.get(service_url("billing") + "/invoices")
    assert resp.status_code == 200 and resp.text == "billing\\n"
    assert http.adapters["http://"].max_retries.connect == 3


@pytest.mark.disruptive
def test_platform_handle(platform, http, service_url):
    url = service_url("worker")
    assert http.get(url + "/before").status_code == 200
    platform.restart("worker")
    assert http.get(url + "/after").status_code == 200
    logs = platform.logs("worker")
    assert "GET /before" in logs and "GET /after" in logs, logs
    platform.scale("worker", 0)
    with pytest.raises(requests.ConnectionError):
        http.get(url + "/gone")
    platform.scale("worker", 1)
    assert http.get(url + "/back").status_code == 200
"""


def podman(*args: str, root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **podman_env(root / ".e2e")}
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def test_a_teams_suite_gets_the_fixtures_with_no_conftest(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", images=f"localhost/{secrets.token_hex(3)}-")  # built: its own names
    harness = [sys.executable, "-m", "infra"]
    init = subprocess.run([*harness, "init", str(repo)], cwd=REPO, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    assert init.returncode == 0, init.stdout + init.stderr
    (repo / "e2e" / "test_fixtures.py").write_text(FIXTURE_TESTS)
    assert not list(repo.rglob("conftest.py"))
    config = str(repo / "e2e.toml")
    run = subprocess.run(
        [*harness, "e2e", "--config", config, "--platform", "podman", "--", "--strict-markers"],
        cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    text = run.stdout + run.stderr
    refs = re.findall(r"^image \S+: (\S+)$", text, re.MULTILINE)
    try:
        assert run.returncode == 0, text[-4000:]
        assert re.search(r"^go: go1\.\d+", text, re.MULTILINE), text[:2000]
        run_id = re.search(r"^run (\S+): artifacts in", text, re.MULTILINE).group(1)  # type: ignore[union-attr]
        artifacts = repo / "artifacts" / run_id
        results = [json.loads(line) for line in (artifacts / "results.jsonl").read_text().splitlines()]
        passed = {r["nodeid"].split("::", 1)[1] for r in results if r["outcome"] == "passed"}
        assert passed == {
            "test_service_answers[api]", "test_service_answers[billing]", "test_service_answers[worker]",
            "test_endpoints_and_state", "test_http_session", "test_platform_handle",
        }, results  # fmt: skip
        # the config's serial marker: the disruptive test ran in the serial run, after the rest
        assert "test_platform_handle" in (artifacts / "junit-serial.xml").read_text()
        assert "test_platform_handle" not in (artifacts / "junit-parallel.xml").read_text()
        label = f"label=io.e2e-harness.run={run_id}"
        assert podman("ps", "--all", "--quiet", "--filter", label, root=repo).stdout.split() == []
    finally:
        for ref in refs:
            podman("rmi", "--force", ref, root=repo)
