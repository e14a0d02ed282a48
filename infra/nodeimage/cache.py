"""Where the node image comes from: podman's store, the cache archive, or a build.

present (no work) -> cached (`podman load` of the .tar.zst, ~15 s) -> build
(~15 min cold on 2 cores; the Go and debootstrap caches make rebuilds minutes).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import zstandard

from infra.console import say
from infra.images import ImageRef
from infra.nodeimage import recipe
from infra.nodeimage import versions as v
from infra.phases import Timeline
from infra.podman_cli import Podman
from infra.proc import Runner

BUILD_COST = "about 15 min and 12 GB of disk cold on 2 cores; minutes when the Go caches are warm"
LOAD_TIMEOUT = 600
SAVE_TIMEOUT = 900


@dataclass(frozen=True)
class Status:
    state: Literal["present", "cached", "missing"]
    key: str
    image: ImageRef
    archive: Path

    def line(self) -> str:
        if self.state == "present":
            return f"{self.image} is in podman's store"
        if self.state == "cached":
            return f"{self.image} is not in podman's store; cached at {self.archive} (loads in ~15 s)"
        return (
            f"{self.image} is neither in podman's store nor cached; "
            f"build it: `nox -s node_image` ({BUILD_COST})"
        )


def status(podman: Podman, key: str | None = None) -> Status:
    key = key or recipe.cache_key()
    image, archive = recipe.image_ref(key), recipe.archive_path(key)
    if podman.image_exists(image):
        return Status("present", key, image, archive)
    return Status("cached" if archive.exists() else "missing", key, image, archive)


@contextmanager
def build_lock() -> Iterator[None]:
    """One build or load at a time per cache directory (a second run waits)."""
    path = recipe.cache_dir() / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another node image build or load (lock {path})")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def load(podman: Podman, st: Status) -> None:
    podman(
        "load", "--input", str(st.archive), timeout=LOAD_TIMEOUT,
        hint=f"the archive may be damaged: remove {st.archive} and run `nox -s node_image`",
    )  # fmt: skip
    if not podman.image_exists(st.image):
        raise RuntimeError(
            f"{st.archive} loaded, but {st.image} is not in podman's store; next: remove the archive"
        )


def save(podman: Podman, image: ImageRef, archive: Path) -> None:
    """podman save, then zstd: a partial archive never has the final name."""
    plain = archive.with_name(archive.name + ".tar.partial")
    packed = archive.with_name(archive.name + ".partial")
    try:
        podman("save", "--format", "docker-archive", "--output", str(plain), str(image), timeout=SAVE_TIMEOUT)
        with plain.open("rb") as src, packed.open("wb") as dst:
            zstandard.ZstdCompressor(level=3, threads=-1).copy_stream(src, dst)
        os.replace(packed, archive)
    finally:
        plain.unlink(missing_ok=True)
        packed.unlink(missing_ok=True)
    for old in archive.parent.glob("kind-node-*.tar.zst"):
        if old != archive:  # archives of other recipes would only grow the cache
            old.unlink()


def prune(podman: Podman, keep: ImageRef) -> None:
    """Node images of earlier recipes: ~700 MB each. One a cluster still runs from stays."""
    out = podman(
        "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", f"reference={recipe.REPOSITORY}",
        check=False,
    ).stdout  # fmt: skip
    for ref in sorted({line.strip() for line in out.splitlines()} - {str(keep), ""}):
        if podman("rmi", ref, check=False).ok:
            say(f"removed the node image of an earlier recipe: {ref}")


def ensure(runner: Runner, podman: Podman, *, rebuild: bool = False, report: Path | None = None) -> ImageRef:
    """The node image in podman's store, by the cheapest way; times it into `report`."""
    timeline = Timeline()
    with build_lock():
        st = status(podman)
        how: str = st.state
        if rebuild or st.state == "missing":
            from infra.nodeimage.builder import Build

            say(f"building kind node image {st.image} ({BUILD_COST})")
            Build(runner, podman, key=st.key).run(timeline)
            with timeline.timed("save-archive"):
                save(podman, st.image, st.archive)
            how = "built"
        elif st.state == "cached":
            say(f"loading kind node image {st.image} from {st.archive}")
            with timeline.timed("podman-load"):
                load(podman, st)
            how = "loaded"
        if how != "present":
            prune(podman, st.image)
    seconds = timeline.now()
    say(f"node image {st.image}: {how} in {seconds:.1f}s")
    if report is not None:
        write_report(report, how, st, seconds, timeline, podman)
    return st.image


def write_report(
    path: Path, how: str, st: Status, seconds: float, timeline: Timeline, podman: Podman
) -> None:
    """artifacts/node-image.json keeps the newest figures of each way (built, loaded, present)."""
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except ValueError:
            data = {}
    size = podman("image", "inspect", "--format", "{{.Size}}", str(st.image), check=False).stdout.strip()
    data.update(
        {
            "image": str(st.image),
            "key": st.key,
            "pins": v.pins(),
            "archive": str(st.archive),
            "archive_bytes": st.archive.stat().st_size if st.archive.exists() else None,
            "image_bytes": int(size) if size.isdigit() else None,
        }
    )
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    data[how] = {
        "seconds": round(seconds, 1),
        "at": now,
        "steps": [t.as_dict() for t in timeline.timings],
        "cores": os.cpu_count(),
    }
    # every way it went, newest last: a cold build and a warm one differ by 10x
    data["history"] = [*data.get("history", []), {"how": how, "seconds": round(seconds, 1), "at": now}][-20:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
