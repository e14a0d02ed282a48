"""`inv init` on a repo shaped like a real team's, then a run with no file edited by hand.

The repo (made here): two mains (a server and a CLI its exec probe calls), a ui/
directory the Dockerfile copies, a multi-stage Dockerfile whose base images no
machine here can pull, a kustomize base with two overlays (and a kustomize
transformer file and a cert-manager object beside them), and a Helm chart.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from infra.config import load
from infra.podman_cli import podman_env
from tests.faultkit import HARNESS, REPO, RootFactory, deployment_yaml, harness_env, service_yaml
from tests.test_image_layout import CLI, DOCKERFILE, PROBE, SERVER, WEB_PORT

pytestmark = [pytest.mark.podman, pytest.mark.slow]

DEPLOYMENT = deployment_yaml(
    "web", "ghcr.io/team/web:1.0.0", port=WEB_PORT, command=["./server"], exec_probe=PROBE
)
SERVICE = service_yaml("web", WEB_PORT)  # no NodePort: `inv init` writes one
FILES = {
    "go.mod": "module example.com/web\n\ngo 1.22\n",
    "cmd/server/main.go": SERVER,
    "cmd/cli/main.go": CLI,
    "ui/index.html": "<h1>orders</h1>",
    "Dockerfile": DOCKERFILE,
    "deploy/base/deployment.yaml": DEPLOYMENT,
    "deploy/base/service.yaml": SERVICE,
    "deploy/base/kustomization.yaml": 'resources: ["deployment.yaml", "service.yaml"]\n',
    "deploy/overlays/e2e/kustomization.yaml": 'resources: ["../../base"]\nlabels: [{pairs: {env: e2e}}]\n',
    "deploy/overlays/prod/kustomization.yaml": 'resources: ["../../base"]\nnamespace: prod\n',
    "deploy/transformers/labels.yaml": (
        "apiVersion: builtin\nkind: LabelTransformer\nmetadata: {name: labels}\nlabels: {team: orders}\n"
    ),
    "deploy/cert.yaml": (
        "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: web}\nspec: {secretName: web}\n"
    ),
    "charts/web/Chart.yaml": "apiVersion: v2\nname: web\nversion: 0.1.0\n",
    "charts/web/values.yaml": "replicas: 1\n",
    "charts/web/templates/deployment.yaml": DEPLOYMENT.replace(
        "replicas: 1", "replicas: {{ .Values.replicas }}"
    ),
    "charts/web/templates/service.yaml": SERVICE,
}


REDIS_PORT = ("redis", 6379)


def redis_manifest(image: str) -> str:
    return deployment_yaml("redis", image, port=REDIS_PORT) + "---\n" + service_yaml("redis", REDIS_PORT)


def make_repo(repo: Path) -> Path:
    for rel, text in FILES.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    return repo


@contextmanager
def redis_at_hand(repo: Path) -> Iterator[str]:
    """A Redis dependency, written `docker.io/redis:<tag>` as teams do, whose image this machine has
    (no registry here: a stand-in program under that name, as `podman pull` would have left it)."""
    tag = f"8.8.0-e2eh{secrets.token_hex(3)}"
    work = repo.parent / f"redis-image-{tag}"
    shutil.copytree(REPO / "tests" / "kindprobe", work)
    env = {**os.environ, "CGO_ENABLED": "0"}
    subprocess.run(["go", "build", "-o", str(work / "rootfs" / "redis"), "."], cwd=work, check=True, env=env)
    subprocess.run(["tar", "-C", str(work / "rootfs"), "-cf", str(work / "rootfs.tar"), "redis"], check=True)
    image = f"docker.io/library/redis:{tag}"
    podman = ["podman", "--log-level", "error"]
    penv = {**os.environ, **podman_env(REPO / ".e2e")}
    entry = 'ENTRYPOINT ["/redis"]'
    subprocess.run(
        [*podman, "import", "--change", entry, str(work / "rootfs.tar"), image], check=True, env=penv
    )
    for base in ("deploy/base", "charts/web/templates"):
        if (repo / base).is_dir():
            (repo / base / "redis.yaml").write_text(redis_manifest(f"docker.io/redis:{tag}"))
    kustomization = repo / "deploy" / "base" / "kustomization.yaml"
    if kustomization.exists():
        kustomization.write_text('resources: ["deployment.yaml", "service.yaml", "redis.yaml"]\n')
    try:
        yield image
    finally:
        subprocess.run([*podman, "rmi", image], check=False, capture_output=True, timeout=120, env=penv)


def init(repo: Path) -> str:
    proc = subprocess.run([*HARNESS, "init", str(repo)], cwd=REPO, env=harness_env(), capture_output=True,
                          text=True, timeout=600, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def e2e(repo: Path, platform: str = "podman", *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HARNESS, "--config", str(repo / "e2e.toml"), "e2e", "--platform", platform, *extra],
        cwd=REPO, env=harness_env(), capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip


def test_init_reads_the_overlay_the_dockerfile_and_the_services_and_the_run_passes(
    roots: RootFactory,
) -> None:
    root = roots.make("real-repo")
    repo = make_repo(root.path / "web")
    with redis_at_hand(repo):
        said = init(repo)
        out = e2e(repo)

    text = (repo / "e2e.toml").read_text()
    data = tomllib.loads(text)
    assert data["manifests"] == ["deploy/overlays/e2e", "e2e/nodeports.yaml"], text
    assert "# kustomization deploy/overlays/prod (an overlay of deploy/base): not used" in text, text
    assert "# helm chart charts/web: not used (the kustomization is)" in text, text
    (svc,) = data["services"]
    assert (svc["name"], svc["main"], svc["image"]) == ("web", "./cmd/server", "ghcr.io/team/web"), text
    assert svc["layout"] == {
        "binary": "/home/app/server", "binaries": {"/usr/local/bin/cli": "./cmd/cli"},
        "files": {"/home/app/ui": "ui"}, "workdir": "/home/app", "user": "app", "cmd": ["./server"],
        "entrypoint": [],
    }, text  # fmt: skip
    assert svc["node_port"] == 30080, text  # the ClusterIP Service got a NodePort one beside it
    assert "test_service_answers" in (repo / "e2e" / "test_smoke.py").read_text()
    assert load(repo / "e2e.toml").names() == ["web"], said
    assert (
        "# workload redis (deploy/overlays/e2e, image docker.io/redis): no main package here builds it"
        in text
    )
    assert "main ./cmd/cli" not in text, text  # the layout's second binary: it is used
    assert out.returncode == 0, out.stdout + out.stderr
    assert "- result: passed: 1 passed" in out.stdout, out.stdout
    assert (repo / "artifacts" / ".gitignore").is_file() and (repo / ".e2e" / ".gitignore").is_file()


def test_init_offers_the_chart_when_there_is_no_kustomization_and_the_run_passes(roots: RootFactory) -> None:
    root = roots.make("real-repo-chart")
    repo = make_repo(root.path / "web")
    shutil.rmtree(repo / "deploy" / "base")
    shutil.rmtree(repo / "deploy" / "overlays")

    with redis_at_hand(repo):
        init(repo)
        out = e2e(repo)

    text = (repo / "e2e.toml").read_text()
    data = tomllib.loads(text)
    assert data["manifests"] == [{"chart": "charts/web"}, "e2e/nodeports.yaml"], text
    assert out.returncode == 0, out.stdout + out.stderr
    assert "- result: passed: 1 passed" in out.stdout, out.stdout


def test_plain_files_leave_out_kustomize_config_and_crd_objects_saying_so(roots: RootFactory) -> None:
    root = roots.make("real-repo-plain")
    repo = make_repo(root.path / "web")
    for gone in ("deploy/base/kustomization.yaml", "deploy/overlays", "charts"):
        path = repo / gone
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    init(repo)

    text = (repo / "e2e.toml").read_text()
    assert tomllib.loads(text)["manifests"] == [
        "deploy/base/deployment.yaml", "deploy/base/service.yaml", "e2e/nodeports.yaml",
    ], text  # fmt: skip
    assert "LabelTransformer labels: a kustomize config file, not an object: left out" in text, text
    assert "Certificate web (cert-manager.io): needs a CRD the run's cluster does not have: left out" in text
