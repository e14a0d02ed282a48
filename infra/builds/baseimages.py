"""Base images with no registry: `debian:bookworm` and `debian:bookworm-slim`, made with debootstrap.

A service's own Containerfile may start `FROM debian:bookworm(-slim)` on a machine
that reaches Debian's packages but no registry. When that name is in podman's
store, nothing is done (an image the user has is never replaced); when it is
missing and cannot be pulled, the harness makes it: debootstrap's minbase (what
Docker's official Debian images are made from), apt pointed at the same mirror,
cached as a tar under the user's cache dir keyed by its inputs, and imported
under the name the Containerfile uses. `RUN apt-get install` works in it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from infra.images import ImageRef
from infra.names import LABEL
from infra.paths import user_cache
from infra.podman_cli import Podman
from infra.proc import Runner

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
RECIPE = 1  # bump when what goes into the tar changes
DEBOOTSTRAP_TIMEOUT = 900.0
BASE_LABEL = "io.e2e-harness.base-image"
SLIM_DROPS = ("usr/share/doc/", "usr/share/man/", "usr/share/info/", "usr/share/locale/")
"""What the official `-slim` variant leaves out."""


class BaseImageError(Exception):
    pass


@dataclass(frozen=True)
class Base:
    ref: ImageRef
    slim: bool

    def key(self) -> str:
        data = json.dumps({"suite": SUITE, "mirror": MIRROR, "slim": self.slim, "recipe": RECIPE})
        return hashlib.sha256(data.encode()).hexdigest()[:16]

    def archive(self) -> Path:
        return user_cache("base-images") / f"debian-{SUITE}{'-slim' if self.slim else ''}-{self.key()}.tar"


BASES = {
    ImageRef.foreign(f"debian:{SUITE}"): False,
    ImageRef.foreign(f"debian:{SUITE}-slim"): True,
}


def provided(ref: ImageRef) -> Base | None:
    """The base the harness can make under this name, if any."""
    return Base(ref, BASES[ref]) if ref in BASES else None


def where(base: Base, podman: Podman) -> str:
    """Where the image comes from, as `inv doctor` says it."""
    if podman.image_exists(base.ref):
        return "in podman's store"
    if base.archive().is_file():
        return f"from debootstrap, cached at {base.archive()}"
    tool = shutil.which("debootstrap")
    if tool is None:
        return "cannot be made: no debootstrap (apt-get install -y debootstrap)"
    return f"from debootstrap on first use (~2 min, needs root; cached at {base.archive()})"


def ensure(base: Base, podman: Podman, runner: Runner) -> str:
    """Make the image (from the cached tar, else debootstrap), import it under its name; how."""
    archive = base.archive()
    how = f"made from the debootstrap cached at {archive}"
    if not archive.is_file():
        _debootstrap(base, runner)
        how = f"made with debootstrap {SUITE} (cached at {archive})"
    labels = {LABEL: "true", BASE_LABEL: base.key()}
    changes = ['CMD ["bash"]', "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    podman.import_image(base.ref, archive, entrypoint=None, changes=changes, labels=labels, timeout=300)
    return how


def _debootstrap(base: Base, runner: Runner) -> None:
    if shutil.which("debootstrap") is None:
        raise BaseImageError(
            f"{base.ref} is made with debootstrap, which is not installed; "
            "next: apt-get install -y debootstrap"
        )
    if os.geteuid() != 0:
        raise BaseImageError(f"{base.ref} is made with debootstrap, which needs root; next: run as root")
    archive = base.archive()
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="debootstrap-", dir=archive.parent) as tmp:
        target = Path(tmp) / "rootfs"
        runner.run(
            ["debootstrap", "--variant=minbase", SUITE, str(target), MIRROR],
            timeout=DEBOOTSTRAP_TIMEOUT,
            hint=f"is {MIRROR} reachable?",
        )
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (target / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        partial = Path(tmp) / "rootfs.tar"
        with tarfile.open(partial, "w") as tar:
            for path in sorted(target.iterdir()):
                tar.add(path, arcname=path.name, filter=_slim_filter if base.slim else None)
        os.replace(partial, archive)  # whole or absent


def _slim_filter(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    name = info.name + ("/" if info.isdir() else "")
    return None if name.startswith(SLIM_DROPS) and name not in SLIM_DROPS else info
