"""`python -m infra clean-stale-clusters` on real podman, with stand-in kind nodes.

kind's node image cannot be pulled here, so a "cluster" is what kind itself
recognises: containers labelled io.x-k8s.kind.cluster=<name>. They are made
from a local rootfs holding one static binary (no image, no pull) and never
started. Each test makes one harness cluster (e2eh-<run id>, two nodes) and one
foreign cluster (team-a-...), with random names so parallel runs never collide.

Runs twice: with kind on PATH (`kind delete cluster` removes ours) when it is
installed, and with kind hidden from PATH (the podman fallback).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.names import KIND_CLUSTER_LABEL, PREFIX
from tests.faultkit import Root, RootFactory, lines_with

pytestmark = [pytest.mark.podman, pytest.mark.slow]

PROBE_SOURCE = "package main\n\nfunc main() {}\n"


@pytest.fixture(scope="session")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RootFactory]:
    if shutil.which("podman") is None:
        pytest.skip("podman is not on PATH")
    factory = RootFactory(tmp_path_factory.mktemp("stale"))
    yield factory
    factory.sweep()


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding /probe, a static do-nothing binary: enough for `podman create --rootfs`."""
    if shutil.which("go") is None:
        pytest.skip("go is not on PATH (needed to build the stand-in nodes' binary)")
    base = tmp_path_factory.mktemp("probe")
    src, fs = base / "src", base / "rootfs"
    src.mkdir()
    fs.mkdir()
    (src / "main.go").write_text(PROBE_SOURCE)
    (src / "go.mod").write_text("module probe\n\ngo 1.22\n")
    subprocess.run(
        ["go", "build", "-o", str(fs / "probe"), "."],
        cwd=src,
        env={**os.environ, "CGO_ENABLED": "0"},
        check=True,
        capture_output=True,
        timeout=180,
    )
    return fs


def path_without_kind() -> str | None:
    """PATH minus every directory holding kind; None if podman would go with it."""
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "kind").exists()]
    path = os.pathsep.join(dirs)
    return path if shutil.which("podman", path=path) else None


@dataclass(frozen=True)
class Variant:
    name: str
    env: dict[str, str]
    removed_via: str


@pytest.fixture(params=["kind", "no-kind"])
def variant(request: pytest.FixtureRequest) -> Variant:
    if request.param == "kind":
        if shutil.which("kind") is None:
            pytest.skip("kind is not installed: the no-kind variant covers the podman fallback")
        return Variant("kind", {}, "via kind delete cluster")
    path = path_without_kind()
    if path is None:
        pytest.skip("kind shares a directory with podman: cannot hide kind from PATH")
    return Variant("no-kind", {"PATH": path}, "via removing its node containers and volumes")


@dataclass
class StandIns:
    root: Root
    ours: str
    foreign: str
    our_nodes: list[str]
    foreign_nodes: list[str]

    def nodes(self, cluster: str) -> list[str]:
        out = self.root.podman(
            "ps", "--all", "--filter", f"label={KIND_CLUSTER_LABEL}={cluster}", "--format", "{{.Names}}"
        )
        return sorted(out.split())


@pytest.fixture
def stand_ins(roots: RootFactory, rootfs: Path) -> Iterator[StandIns]:
    root = roots.make("stale-clusters")
    ours = f"{PREFIX}-20200101-000000-{secrets.token_hex(3)}"  # e2eh-<run id>: the harness's naming
    foreign = f"team-a-{secrets.token_hex(3)}"
    nodes = {ours: ["control-plane", "worker"], foreign: ["control-plane"]}
    made: list[str] = []
    try:
        for cluster, roles in nodes.items():
            for role in roles:
                name = f"{cluster}-{role}"
                root.podman(
                    "create",
                    "--name",
                    name,
                    "--label",
                    f"{KIND_CLUSTER_LABEL}={cluster}",
                    "--label",
                    f"io.x-k8s.kind.role={role}",
                    "--rootfs",
                    str(rootfs),
                    "/probe",
                )
                made.append(name)
        yield StandIns(
            root,
            ours,
            foreign,
            [f"{ours}-{r}" for r in nodes[ours]],
            [f"{foreign}-{r}" for r in nodes[foreign]],
        )
    finally:
        # one name per call: podman 4.3's `rm --force a b` removes nothing (exit 0) when b is gone
        for name in made:
            root.podman("rm", "--force", "--time", "0", name, check=False)


def test_clean_stale_clusters_removes_only_old_enough_harness_clusters(
    stand_ins: StandIns, variant: Variant
) -> None:
    s, root = stand_ins, stand_ins.root
    assert s.nodes(s.ours) == sorted(s.our_nodes) and s.nodes(s.foreign) == s.foreign_nodes

    def clean(*args: str) -> str:
        out = root.harness("clean-stale-clusters", *args, timeout=180, env=variant.env)
        assert out.code == 0, str(out)
        return out.output

    # --dry-run: lists, removes nothing
    dry = clean("--older-than", "0s", "--dry-run")
    assert lines_with(dry, f"would remove: kind cluster {s.ours} (2 node(s), age "), dry
    foreign_left = f"left: kind cluster {s.foreign} (1 node(s), age "
    assert lines_with(dry, foreign_left, f"not created by the harness (no {PREFIX}- prefix)"), dry
    assert not lines_with(dry, "would remove", s.foreign), dry
    assert s.nodes(s.ours) == sorted(s.our_nodes) and s.nodes(s.foreign) == s.foreign_nodes, dry

    # --older-than 2h: a cluster made seconds ago is too young
    young = clean("--older-than", "2h")
    assert lines_with(young, f"left: kind cluster {s.ours} (2 node(s), age ", "younger than 2h"), young
    assert not lines_with(young, "removed", s.ours), young
    assert s.nodes(s.ours) == sorted(s.our_nodes) and s.nodes(s.foreign) == s.foreign_nodes, young

    # --older-than 0s: ours goes, the foreign one stays
    real = clean("--older-than", "0s")
    removed = lines_with(real, f"removed: kind cluster {s.ours} (2 node(s), age ")
    assert removed and variant.removed_via in removed[0], real
    assert lines_with(real, foreign_left, "not created by the harness"), real
    assert s.nodes(s.ours) == [], real
    assert s.nodes(s.foreign) == s.foreign_nodes, real
    assert not list((root.path / ".e2e" / "scratch").glob("*.kubeconfig")), "a scratch kubeconfig was left"


def test_clean_stale_clusters_rejects_a_bad_age(roots: RootFactory) -> None:
    root = roots.make("stale-bad-age")
    out = root.harness("clean-stale-clusters", "--older-than", "two hours", "--dry-run", timeout=60)
    assert out.code == 2, str(out)
    assert re.search(r"--older-than 'two hours': use a number with s, m, h or d", out.output), str(out)


def test_volumes_of_nodes_that_are_gone_are_removed_and_others_left(tmp_path: Path) -> None:
    """kind's podman provider labels each node's /var volume `<node>=true`; a failed create leaves them."""
    from infra.cleanup import cleanup
    from infra.podman_cli import Podman
    from infra.proc import RecordingRunner

    volumes = [
        {"Name": "v1", "Labels": {"e2eh-20250101-000000-dead-control-plane": "true"}},
        {"Name": "v2", "Labels": {"e2eh-20250101-000000-dead-worker2": "true"}},
        {"Name": "v3", "Labels": {"team-dev-control-plane": "true"}},  # not ours
        {"Name": "v4", "Labels": {"e2eh-20250101-000000-live-worker": "true"}},  # its cluster exists
    ]
    runner = RecordingRunner()
    runner.on(["podman", "volume", "ls", "--format", "json"], stdout=json.dumps(volumes))
    live_node = {
        "Names": ["e2eh-20250101-000000-live-worker"],
        "Created": 1,
        "Labels": {"io.x-k8s.kind.cluster": "e2eh-20250101-000000-live"},
    }
    kind_filter = ["podman", "ps", "--format", "json", "--all", "--filter", "label=io.x-k8s.kind.cluster"]
    runner.on(kind_filter, stdout=json.dumps([live_node]))
    assert cleanup.node_volumes(Podman(runner)) == {
        "e2eh-20250101-000000-dead": ["v1", "v2"],
        "e2eh-20250101-000000-live": ["v4"],
    }
    report = cleanup.clean_podman(Podman(runner), tmp_path, dry_run=False, images=False)
    removes = [a for a in runner.argvs() if a[:3] == ("podman", "volume", "rm")]
    assert removes == [("podman", "volume", "rm", "--force", "v1", "v2")]
    assert any("of the nodes of e2eh-20250101-000000-dead (gone)" in line for line in report.removed)
