"""Remove what earlier runs left behind, and only what the harness created.

Kind clusters are recognised by the kind node label AND the harness's name
prefix; podman objects by the harness's label. A run that is still going
(its lock is held) or whose stack was kept on purpose is never touched.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.cleanup import runlock
from infra.kind_cli import run_kind
from infra.names import KIND_CLUSTER_LABEL, LOCAL_CLUSTER_LABEL, MANAGED, PREFIX, RUN_LABEL
from infra.paths import archives_dir, build_dir, state_dir
from infra.podman_cli import Podman
from infra.proc import CommandError, Runner

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
BUILD_DIR_GRACE = 600


class CleanupError(Exception):
    pass


def parse_age(text: str) -> float:
    match = _AGE.match(text.strip())
    if not match:
        raise CleanupError(f"--older-than {text!r}: use a number with s, m, h or d (e.g. 2h, 30m, 0s)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def human_age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def run_id_of(name: str) -> str:
    return name.removeprefix(f"{PREFIX}-")


@dataclass
class Report:
    removed: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)

    def extend(self, other: Report) -> None:
        self.removed += other.removed
        self.left += other.left

    def lines(self, dry_run: bool = False) -> list[str]:
        verb = "would remove" if dry_run else "removed"
        out = [f"{verb}: {r}" for r in self.removed] + [f"left: {r}" for r in self.left]
        return out or ["nothing to clean"]


@dataclass(frozen=True)
class Cluster:
    name: str
    nodes: tuple[str, ...]
    created: float

    @property
    def ours(self) -> bool:
        return self.name.startswith(f"{PREFIX}-")


def kind_clusters(podman: Podman) -> list[Cluster]:
    """Clusters as kind sees them: node containers carrying the kind label."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for ctr in podman.containers(f"label={KIND_CLUSTER_LABEL}"):
        name = (ctr.get("Labels") or {}).get(KIND_CLUSTER_LABEL, "")
        by_name.setdefault(name, []).append(ctr)
    return [
        Cluster(
            name, tuple(sorted(c["Names"][0] for c in ctrs)), min(float(c.get("Created", 0)) for c in ctrs)
        )
        for name, ctrs in sorted(by_name.items())
    ]


_NODE_VOLUME = re.compile(rf"^({PREFIX}-.+)-(control-plane|worker\d*)$")


def node_volumes(podman: Podman) -> dict[str, list[str]]:
    """Harness cluster -> the /var volumes kind's podman provider made for its nodes.

    kind labels each with `<node name>=true`; a create that fails half-way
    removes the node containers but leaves these behind.
    """
    found: dict[str, list[str]] = {}
    for vol in podman.json("volume", "ls", "--format", "json") or []:
        for key, value in (vol.get("Labels") or {}).items():
            match = _NODE_VOLUME.match(key)
            if match and value == "true":
                found.setdefault(match.group(1), []).append(str(vol["Name"]))
    return found


def remove_node_volumes(podman: Podman, cluster: str) -> list[str]:
    volumes = node_volumes(podman).get(cluster, [])
    if volumes:
        podman("volume", "rm", "--force", *volumes, check=False)
    return volumes


def clean_stale_clusters(
    runner: Runner,
    podman: Podman,
    *,
    older_than: float,
    dry_run: bool,
    all_: bool,
    provider: str,
    scratch: Path,
    now: float | None = None,
) -> Report:
    report = Report()
    now = time.time() if now is None else now
    for cluster in kind_clusters(podman):
        age = now - cluster.created
        desc = f"kind cluster {cluster.name} ({len(cluster.nodes)} node(s), age {human_age(age)})"
        if not cluster.ours:
            report.left.append(f"{desc}: not created by the harness (no {PREFIX}- prefix)")
            continue
        run_id = run_id_of(cluster.name)
        if runlock.is_alive(run_id):
            report.left.append(f"{desc}: its run is still going")
            continue
        if runlock.is_kept(run_id) and not all_:
            report.left.append(
                f"{desc}: kept on purpose (--keep / inv up); `{runlock.remove_command(run_id)}`"
            )
            continue
        if not all_ and age < older_than:
            report.left.append(f"{desc}: younger than {human_age(older_than)}")
            continue
        if dry_run:
            report.removed.append(desc)
            continue
        how = _delete_cluster(runner, podman, cluster, provider, scratch)
        runlock.unmark_kept(run_id)
        report.removed.append(f"{desc} via {how}")
    return report


def _delete_cluster(runner: Runner, podman: Podman, cluster: Cluster, provider: str, scratch: Path) -> str:
    """kind delete cluster first; when kind's own state is broken, remove the nodes directly."""
    if shutil.which("kind"):
        scratch.mkdir(parents=True, exist_ok=True)
        kubeconfig = scratch / f"{cluster.name}.kubeconfig"  # never ~/.kube/config
        try:
            run_kind(runner, podman, provider, "delete", "cluster", "--name", cluster.name,
                     "--kubeconfig", str(kubeconfig), timeout=300)  # fmt: skip
        except CommandError:
            pass
        finally:
            kubeconfig.unlink(missing_ok=True)
        if not podman.containers(f"label={KIND_CLUSTER_LABEL}={cluster.name}"):
            remove_node_volumes(podman, cluster.name)
            return "kind delete cluster"
    for node in cluster.nodes:
        podman("rm", "--force", "--volumes", node, timeout=300, check=False)
    remove_node_volumes(podman, cluster.name)
    why = "kind could not" if shutil.which("kind") else "kind is not installed"
    return f"removing its node containers and volumes ({why})"


def _settled(run_id: str) -> str:
    """Why a run's objects must stay, or '' when they are leftovers."""
    if runlock.is_alive(run_id):
        return "its run is still going"
    if runlock.is_kept(run_id):
        return f"kept on purpose; `{runlock.remove_command(run_id)}`"
    return ""


def clean_podman(podman: Podman, root: Path, *, dry_run: bool, images: bool = True) -> Report:
    """Containers, pods, networks, images, archives and run dirs of finished runs."""
    report = Report()
    # kind's node containers inherit the managed label from the harness's node image, run label
    # or not: they are clusters, judged by clean_stale_clusters (run locks, prefix), never here
    # a pod's infra container goes with its pod (podman refuses to remove it alone)
    # so does `inv local-cluster`'s registry (its image's label): the user's, `down` removes it
    containers = [
        c
        for c in podman.containers(MANAGED)
        if not {KIND_CLUSTER_LABEL, LOCAL_CLUSTER_LABEL} & set(c.get("Labels") or {}) and not c.get("IsInfra")
    ]

    def remover(pod: bool) -> Callable[[list[str]], None]:
        def remove(names: list[str]) -> None:
            for name in names:
                podman.remove(name, pod=pod, timeout=120)

        return remove

    _sweep(report, "containers", containers, lambda c: c["Names"][0], remover(pod=False), dry_run)
    _sweep(report, "pods", podman.pods(MANAGED), lambda p: str(p["Name"]), remover(pod=True), dry_run)
    networks = podman.json("network", "ls", "--format", "json", "--filter", MANAGED) or []
    _sweep(report, "networks", networks, lambda n: str(n.get("name") or n.get("Name")),
           lambda names: podman("network", "rm", "--force", *names, check=False), dry_run)  # fmt: skip
    claims = [  # the claims' volumes of podman runs: labelled with their run
        v for v in podman.json("volume", "ls", "--format", "json", "--filter", MANAGED) or []
        if RUN_LABEL in (v.get("Labels") or v.get("labels") or {})
    ]  # fmt: skip
    _sweep(report, "volumes", claims, lambda v: str(v.get("Name") or v.get("name")),
           lambda names: podman("volume", "rm", "--force", *names, check=False), dry_run)  # fmt: skip
    clusters = {c.name for c in kind_clusters(podman)}
    for cluster, volumes in sorted(node_volumes(podman).items()):
        if cluster in clusters or _settled(run_id_of(cluster)):
            continue  # a cluster that still exists, or a live or kept run's
        if not dry_run:
            podman("volume", "rm", "--force", *volumes, check=False)
        report.removed.append(
            f"volumes {', '.join(v[:12] for v in volumes)} of the nodes of {cluster} (gone)"
        )
    if images:
        _clean_images(podman, report, dry_run)
    _clean_files(root, report, dry_run)
    live = {str((c.get("Labels") or {}).get(RUN_LABEL)) for c in containers}
    live |= {run_id_of(c.name) for c in kind_clusters(podman) if c.ours}
    _clean_lock_dir(live, report, dry_run)
    return report


def _sweep(
    report: Report,
    what: str,
    objects: list[dict[str, Any]],
    name_of: Callable[[dict[str, Any]], str],
    remove: Callable[[list[str]], object],
    dry_run: bool,
) -> None:
    """Remove each finished run's objects; say why a live or kept run's stay."""
    by_run: dict[str, list[str]] = {}
    for obj in objects:
        run_id = (obj.get("Labels") or obj.get("labels") or {}).get(RUN_LABEL, "?")
        by_run.setdefault(run_id, []).append(name_of(obj))
    for run_id, names in sorted(by_run.items()):
        why = _settled(run_id)
        if why:
            report.left.append(f"{what} {', '.join(names)}: {why}")
            continue
        if not dry_run:
            remove(names)
        report.removed.append(f"{what} {', '.join(names)} (run {run_id})")


def _clean_lock_dir(live: set[str], report: Report, dry_run: bool) -> None:
    """Locks nothing holds (killed runs) and kept-markers of stacks that are gone."""
    if dry_run:
        return
    for lock in runlock.LOCK_DIR.glob("*.lock"):
        if not runlock.is_alive(lock.stem):
            lock.unlink(missing_ok=True)
    for marker in sorted(runlock.LOCK_DIR.glob("*.kept")):
        if marker.stem not in live and not runlock.kept_elsewhere(marker.stem):
            marker.unlink(missing_ok=True)
            report.removed.append(f"kept-marker of run {marker.stem} (its stack is gone)")


def _clean_images(podman: Podman, report: Report, dry_run: bool) -> None:
    from infra.nodeimage import recipe

    live = runlock.live_runs()
    if live:  # images carry no run: any of them may be the one a live run is about to start or load
        report.left.append(
            f"images: run(s) {', '.join(live)} still going and may be about to use them; "
            "run cleanup again once they end"
        )
        return
    seen: set[str] = set()
    current_node_image = recipe.cache_key()
    for img in podman.json("images", "--format", "json", "--filter", MANAGED) or []:
        if img["Id"] in seen:
            continue
        seen.add(img["Id"])
        names = img.get("Names") or [img["Id"][:12]]
        if (img.get("Labels") or {}).get(recipe.KEY_LABEL) == current_node_image:
            size = int(img.get("Size") or 0) // 2**20
            report.left.append(
                f"image {names[0]}: the current kind node image, a cache like Go's "
                f"(`podman rmi {names[0]}` frees {size} MB; `nox -s node_image` brings it back)"
            )
            continue
        if img.get("Containers", 0):
            report.left.append(f"image {names[0]}: in use by a container")
            continue
        if not dry_run:
            # by name: removing an ID that carries two tags would need --force
            res = podman("image", "rm", *(img.get("Names") or [img["Id"]]), check=False)
            if res.returncode != 0:
                report.left.append(f"image {names[0]}: {res.stderr.strip()[-200:]}")
                continue
        report.removed.append(f"image {', '.join(names)}")


def _clean_files(root: Path, report: Report, dry_run: bool) -> None:
    for archive in sorted(archives_dir(root).glob(f"{PREFIX}-*.tar")):
        run_id = run_id_of(archive.stem)
        if _settled(run_id):
            continue
        if not dry_run:
            archive.unlink(missing_ok=True)
        report.removed.append(f"archive {archive}")
    for run_dir in sorted((state_dir(root) / "runs").glob("*")):
        why = _settled(run_dir.name)
        if why:
            report.left.append(f"run dir {run_dir}: {why}")
            continue
        if not dry_run:
            shutil.rmtree(run_dir, ignore_errors=True)
        report.removed.append(f"run dir {run_dir}")
    for context in sorted(build_dir(root).glob("*")):
        if time.time() - context.stat().st_mtime < BUILD_DIR_GRACE:
            continue  # a concurrent run may be building in it
        if not dry_run:
            shutil.rmtree(context, ignore_errors=True)
        report.removed.append(f"build context {context}")
