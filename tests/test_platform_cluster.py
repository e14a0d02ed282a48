"""--platform cluster without a cluster: the target's resolution, refusals, names, forwards, pulls.

The same platform on a real cluster fed by a real registry: tests/test_cluster_platform.py.
"""

from __future__ import annotations

import io
import socket
import subprocess
import tarfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.config import Config
from infra.gocover import coverflush
from infra.images import ImageRef, in_registry
from infra.names import InvalidName
from infra.platforms import forwards, platform_cluster
from infra.platforms.manifests import Rendered
from infra.platforms.platform_cluster import TargetError, target
from tests.conftest import REPO
from tests.faultkit import HARNESS, harness_env


def kubeconfig(path: Path, *contexts: str) -> Path:
    data = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "x"}}],
        "contexts": [{"name": c, "context": {"cluster": "c", "user": "u"}} for c in contexts],
        "current-context": contexts[0] if contexts else "",
    }
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def cluster_cfg(make_cfg: Callable[..., Config], tmp_path: Path) -> Config:
    kc = kubeconfig(tmp_path / "kubeconfig", "team-ci", "prod")
    cluster = {"kubeconfig": str(kc), "context": "team-ci", "registry": "registry.example.com/team"}
    return make_cfg(platform={"cluster": cluster})


def test_the_file_names_the_target_and_the_environment_wins(cluster_cfg: Config, tmp_path: Path) -> None:
    got = target(cluster_cfg, env={})
    assert (got.context, got.registry, got.insecure) == ("team-ci", "registry.example.com/team", False)
    other = kubeconfig(tmp_path / "other", "ci")
    env = {"E2E_KUBECONFIG": str(other), "E2E_CONTEXT": "ci", "E2E_REGISTRY": "localhost:5001",
           "E2E_INSECURE_REGISTRY": "true"}  # fmt: skip
    got = target(cluster_cfg, env=env)
    assert (got.kubeconfig, got.context, got.registry, got.insecure) == (other, "ci", "localhost:5001", True)


def test_nothing_is_taken_implicitly(make_cfg: Callable[..., Config], tmp_path: Path) -> None:
    """No context named: refused, even though the kubeconfig has a current one."""
    kc = kubeconfig(tmp_path / "kubeconfig", "only-one")
    cfg = make_cfg(platform={"cluster": {"kubeconfig": str(kc), "registry": "localhost:5001"}})
    with pytest.raises(TargetError, match=r"needs a context; .*E2E_CONTEXT.*inv local-cluster up"):
        target(cfg, env={})
    with pytest.raises(TargetError, match=r"needs a kubeconfig; .*E2E_KUBECONFIG"):
        target(make_cfg(), env={})


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"E2E_CONTEXT": "staging"}, r"context 'staging' is not in kubeconfig .*it has: team-ci, prod"),
        ({"E2E_REGISTRY": "localhost"}, r"invalid registry 'localhost'"),
        ({"E2E_REGISTRY": "Reg.example.com"}, r"invalid registry"),
        ({"E2E_INSECURE_REGISTRY": "maybe"}, r"E2E_INSECURE_REGISTRY='maybe': use true or false"),
        ({"E2E_KUBECONFIG": "/nonexistent/kubeconfig"}, r"kubeconfig /nonexistent/kubeconfig not found"),
    ],
)
def test_a_wrong_target_is_refused_naming_it(cluster_cfg: Config, env: dict[str, str], match: str) -> None:
    with pytest.raises(TargetError, match=match):
        target(cluster_cfg, env=env)


def test_cluster_scoped_objects_are_refused_unless_allowed(cluster_cfg: Config) -> None:
    docs = [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "reader"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}},
    ]
    refused = platform_cluster.refusals(target(cluster_cfg, env={}), Rendered(docs))
    assert len(refused) == 1 and refused[0].startswith("ClusterRole/reader is cluster-scoped"), refused
    allow = cluster_cfg.platform.cluster.model_copy(update={"cluster_scoped": "allow"})
    cfg = cluster_cfg.model_copy(
        update={"platform": cluster_cfg.platform.model_copy(update={"cluster": allow})}
    )
    assert platform_cluster.refusals(target(cfg, env={}), Rendered(docs)) == []


def test_registry_names_keep_the_content_tag_and_the_source() -> None:
    own = ImageRef.parse("team/api:0123456789abcdef")
    assert str(in_registry(own, "localhost:5001")) == "localhost:5001/team/api:0123456789abcdef"
    third = ImageRef.foreign("redis:7")
    assert str(in_registry(third, "reg.example.com/ci")) == "reg.example.com/ci/docker.io/library/redis:7"
    with pytest.raises(InvalidName):
        in_registry(own, "no spaces")


def test_node_ports_become_cluster_ips_on_a_shared_cluster() -> None:
    svc = {"kind": "Service", "metadata": {"name": "api"},
           "spec": {"type": "NodePort", "ports": [{"port": 8080, "nodePort": 30080}]}}  # fmt: skip
    got = platform_cluster._cluster_ip(svc)
    assert got["spec"] == {"type": "ClusterIP", "ports": [{"port": 8080}]}
    assert svc["spec"]["type"] == "NodePort", "the rendered document is left as it was"


def test_a_run_on_a_cluster_nobody_named_stops_before_anything_starts(tmp_path: Path) -> None:
    env = harness_env({"E2E_KUBECONFIG": "", "E2E_CONTEXT": "", "E2E_REGISTRY": ""})
    proc = subprocess.run([*HARNESS, "e2e", "--platform", "cluster"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "error: --platform cluster needs a kubeconfig" in out, out
    assert "> preflight" not in out and "exit 2: " in out, out


# -- port-forwards ------------------------------------------------------------------------------


class FakeApi:
    """A Service `web` whose pods the test replaces, as a restart does."""

    def __init__(self) -> None:
        self.pods_now: list[dict[str, Any]] = []

    def service(self, name: str, namespace: str) -> dict[str, Any]:
        assert name == "web"
        return {"spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}}

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        assert selector == "app=web"
        return self.pods_now


def pod(name: str, port: int, ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"containers": [{"ports": [{"name": "http", "containerPort": port}]}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": str(ready)}]},
    }


@pytest.fixture
def backends() -> Iterator[dict[int, str]]:
    """Two local servers standing in for two pods' ports: each answers with its own name."""
    servers: dict[int, str] = {}
    socks = []
    for name in ("old", "new"):
        srv = socket.create_server(("127.0.0.1", 0))
        port = srv.getsockname()[1]
        servers[port] = name

        def serve(s: socket.socket = srv, answer: bytes = name.encode()) -> None:
            while True:
                try:
                    conn, _ = s.accept()
                except OSError:
                    return
                conn.recv(100)
                conn.sendall(answer)
                conn.close()

        threading.Thread(target=serve, daemon=True).start()
        socks.append(srv)
    yield servers
    for s in socks:
        s.close()


def ask(port: int) -> bytes:
    """What came back; b"" when the forward closed the connection (reset: it did not read it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"hello")
        try:
            return conn.recv(100)
        except ConnectionResetError:
            return b""


def test_a_forward_reaches_the_ready_pod_and_follows_a_restart(backends: dict[int, str]) -> None:
    api = FakeApi()
    old_port, new_port = sorted(backends, key=lambda p: backends[p] != "old")
    opened: list[tuple[str, int]] = []

    def open_stream(name: str, port: int) -> socket.socket:
        opened.append((name, port))
        return socket.create_connection(("127.0.0.1", port))

    local = socket.create_server(("127.0.0.1", 0))
    free = local.getsockname()[1]
    local.close()
    fwd = forwards.Forwarder(api, open_stream, "ns", [forwards.Route(free, "web", 80)])  # type: ignore[arg-type]
    fwd.start()
    try:
        api.pods_now = [pod("web-1", old_port, ready=False)]
        assert ask(free) == b"", "no ready pod: the connection is closed"
        assert "no ready pod behind Service web (seen: web-1 (Running))" in fwd.report()[0], fwd.report()
        api.pods_now = [pod("web-1", old_port)]
        assert ask(free) == b"old"
        api.pods_now = [pod("web-2", new_port)]  # the restart: a new pod, the same local port
        assert ask(free) == b"new"
        assert opened == [("web-1", old_port), ("web-2", new_port)]
    finally:
        fwd.stop()


# -- coverage pulled over HTTP ---------------------------------------------------------------------


def test_the_meta_data_hash_is_read_as_go_names_the_file(tmp_path: Path) -> None:
    """A real -cover binary writes covmeta.<hash>: the header's hash is that name's."""
    (tmp_path / "go.mod").write_text("module example.com/m\n\ngo 1.22\n")
    (tmp_path / "main.go").write_text("package main\n\nfunc main() { println(1) }\n")
    subprocess.run(["go", "build", "-cover", "-o", "m", "."], cwd=tmp_path, check=True, timeout=300)
    out = tmp_path / "cov"
    out.mkdir()
    subprocess.run([str(tmp_path / "m")], env={"GOCOVERDIR": str(out)}, check=True, timeout=60)
    (meta,) = out.glob("covmeta.*")
    assert coverflush.meta_hash(meta.read_bytes()) == meta.name.split(".", 1)[1]
    with pytest.raises(ValueError, match="not a Go coverage meta-data file"):
        coverflush.meta_hash(b"\x00" * 64)


def test_only_counters_files_are_taken_from_a_pull(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("covcounters.ab.1.2", b"c"), ("covmeta.ab", b"m"), ("../covcounters.x", b"no"),
                           ("evil", b"no")):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert platform_cluster._untar_counters(buf.getvalue(), tmp_path) == ["covcounters.ab.1.2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["covcounters.ab.1.2", "covmeta.ab"]
