"""The kind CLI for real, as far as it runs without a node image.

`kind create cluster` validates the config before it pulls the node image,
so a rendered config that reaches "Ensuring node image" was accepted by kind
itself. Where no registry is reachable the pull then fails: the run must
surface that as a PlatformError-grade command failure and leave nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from infra import config
from infra.paths import RunPaths
from infra.platform import Context
from infra.platform_kind import KindPlatform
from infra.podman_cli import Podman, podman_env
from infra.proc import CommandError, SubprocessRunner

REPO = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("kind") is None, reason="kind not installed (go install sigs.k8s.io/kind)"
    ),
]


def _kube_home_digest() -> str:
    path = Path.home() / ".kube" / "config"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "absent"


def _platform(tmp_path: Path, run_id: str) -> KindPlatform:
    cfg = config.load(REPO / "e2e.toml")
    runner = SubprocessRunner()
    podman = Podman(runner, podman_env(REPO / ".e2e"))
    ctx = Context(cfg, RunPaths(tmp_path, run_id), runner, podman, coverage=True,
                  host_ports={30080: 41080, 30081: 41081})  # fmt: skip
    return KindPlatform(ctx)


def _node_containers(plat: KindPlatform) -> list[object]:
    out = plat.ctx.podman("ps", "--all", "--format", "json", "--filter",
                          f"label=io.x-k8s.kind.cluster={plat.cluster}").stdout  # fmt: skip
    return list(json.loads(out or "[]") or [])


def test_kind_accepts_the_rendered_config_and_fails_only_at_the_node_image(tmp_path: Path) -> None:
    plat = _platform(tmp_path, "20260101-000000-" + tmp_path.name[-4:].lower().replace("_", "0"))
    before = _kube_home_digest()
    assert plat.cluster not in plat.clusters()  # `kind get clusters` for real
    with pytest.raises(CommandError) as err:
        plat.create()
    out = err.value.output_tail
    argv = err.value.argv
    assert argv[:4] == ("kind", "create", "cluster", "--name") and "--kubeconfig" in argv
    assert str(plat.kubeconfig) in argv and str(Path.home() / ".kube") not in " ".join(argv)
    # kind got past its own config validation: the failure is the image, not the config
    assert "invalid configuration" not in out
    assert "node image" in out or "pull" in out, out
    rendered = (plat.ctx.paths.run_dir / "kind-config.yaml").read_text()
    assert "containerPath: /coverdata" in rendered and "hostPort: 41080" in rendered
    assert "role: worker" in rendered
    assert _node_containers(plat) == []
    assert _kube_home_digest() == before


def test_kind_itself_rejects_a_broken_config(tmp_path: Path) -> None:
    """The same path with a config kind refuses: proves the test above can fail."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n  - role: bogus\n")
    plat = _platform(tmp_path, "20260101-000001-" + tmp_path.name[-4:].lower().replace("_", "0"))
    with pytest.raises(CommandError) as err:
        plat.kind("create", "cluster", "--name", plat.cluster, "--config", str(bad),
                  "--kubeconfig", str(tmp_path / "kc"), timeout=60)  # fmt: skip
    assert "invalid configuration" in err.value.output_tail
    assert _node_containers(plat) == []
