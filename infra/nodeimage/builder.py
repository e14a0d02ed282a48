"""Build the kind node image: debootstrap, Go builds, preloaded images, one commit.

Steps run as a small DAG (infra.phases): debootstrap and the Go builds start
together; the Go builds run one after another (2 cores, ~2 GB RSS each); the
image is committed under its final name only at the very end, so an
interrupted build leaves nothing under that name, and the build container and
intermediate image are removed whatever happens.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from infra import waits
from infra.console import PhaseReporter, say
from infra.names import LABEL, PREFIX
from infra.nodeimage import oci, recipe
from infra.nodeimage import versions as v
from infra.phases import Phase, PhaseFailed, Timeline, run_phases
from infra.podman_cli import Podman
from infra.proc import Runner, tail

log = logging.getLogger("infra.nodeimage")

GO_BUILD_TIMEOUT = 3600
DEBOOTSTRAP_TIMEOUT = 1200
HEARTBEAT_SECONDS = 20
BUILD_CONTAINER_PREFIX = f"{PREFIX}-node-image-build"
IMPORT_DIR = "/e2eh-images"
ENTRYPOINT = '["/usr/local/bin/entrypoint", "/sbin/init"]'


class NodeImageError(Exception):
    """A step of the node image build failed; the message names it and the next step."""


@contextmanager
def heartbeat(what: str, logfile: Path | None = None) -> Iterator[None]:
    """Print what a long step is doing every few seconds, so it is never silent."""
    done = threading.Event()
    start = time.monotonic()

    def beat() -> None:
        while not done.wait(HEARTBEAT_SECONDS):
            last = ""
            if logfile is not None and logfile.exists():
                lines = logfile.read_text(errors="replace").strip().splitlines()
                last = f"; last: {lines[-1][:120]}" if lines else ""
            say(f"    ... {what}: {time.monotonic() - start:.0f}s{last}")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


@dataclass
class Build:
    """One build of the node image in a fresh work directory under the cache."""

    runner: Runner
    podman: Podman
    key: str = field(default_factory=recipe.cache_key)
    work: Path = field(init=False)

    def __post_init__(self) -> None:
        self.work = recipe.cache_dir() / "work"
        self.bin = self.work / "bin"
        self.logs = self.work / "logs"
        self.image = recipe.image_ref(self.key)
        self.build_image = f"{recipe.BUILD_REPOSITORY}:{self.key}"
        self.container = f"{BUILD_CONTAINER_PREFIX}-{self.key}"

    # -- steps -------------------------------------------------------------------
    def debootstrap(self) -> None:
        """The Debian root filesystem, cached as a tar keyed by suite, mirror and packages."""
        cached = recipe.rootfs_archive()
        if cached.exists():
            say(f"    debootstrap: cached {cached}")
            return
        if os.geteuid() != 0:
            raise NodeImageError(
                "debootstrap needs root; next: run `nox -s node_image` as root, or copy a built "
                f"archive into {recipe.cache_dir()}"
            )
        target = self.work / "debootstrap"
        shutil.rmtree(target, ignore_errors=True)
        logfile = self.logs / "debootstrap.log"
        with heartbeat(f"debootstrap {v.DEBIAN_SUITE} (~90 s)", logfile):
            self.runner.run(
                recipe.debootstrap_args(target),
                timeout=DEBOOTSTRAP_TIMEOUT,
                stream_to=logfile,
                hint=f"see {logfile}; is {v.DEBIAN_MIRROR} reachable?",
            )
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (target / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        self._tar(target, cached)
        shutil.rmtree(target)

    def go_build(self, module: recipe.GoModule) -> None:
        moddir = self.work / "go" / module.name
        moddir.mkdir(parents=True, exist_ok=True)
        (moddir / "go.mod").write_text(module.go_mod())
        self.bin.mkdir(parents=True, exist_ok=True)
        logfile = self.logs / f"go-{module.name}.log"
        with heartbeat(f"go build {module.require} (cold: minutes; cached: seconds)", logfile):
            self.runner.run(
                module.build_args(self.bin),
                timeout=GO_BUILD_TIMEOUT,
                cwd=moddir,
                env=recipe.GO_ENV,
                stream_to=logfile,
                hint=f"see {logfile}; is the Go module proxy reachable (`go env GOPROXY`)?",
            )

    def go_build_pause(self) -> None:
        moddir = self.work / "go" / "pause"
        shutil.copytree(recipe.GOSRC / "pause", moddir, dirs_exist_ok=True)
        (moddir / "go.mod").write_text("module e2e-harness.local/node-image/pause\n\ngo 1.22\n")
        self.bin.mkdir(parents=True, exist_ok=True)
        self.runner.run(
            ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(self.bin / "pause"), "."],
            timeout=600,
            cwd=moddir,
            env=recipe.GO_ENV,
        )

    def preload_archive(self) -> None:
        """Every image kubeadm and containerd ask for, in one OCI archive."""
        layers = self.work / "layers"
        archive = oci.Archive()
        base = oci.filtered_layer(layers / "debian.tar.gz", recipe.rootfs_archive(), recipe.kube_proxy_skips)
        for name, binary in recipe.preloaded_images().items():
            layer = oci.binary_layer(layers / f"{binary}.tar.gz", self.bin / binary)
            entry: tuple[str, ...] = ("/usr/local/bin/coredns",) if binary == "coredns" else ()
            if binary == "pause":
                entry = ("/usr/local/bin/pause",)
            stack = (base, layer) if binary == "kube-proxy" else (layer,)
            archive.images.append(oci.Image(name, stack, entrypoint=entry))
        kubectl = oci.binary_layer(layers / "kubectl.tar.gz", self.bin / "kubectl")
        script = oci.binary_layer(layers / "podnet.tar.gz", recipe.PODNET / "e2eh-podnet")
        archive.images.append(
            oci.Image(
                recipe.PODNET_IMAGE, (base, kubectl, script), entrypoint=("/usr/local/bin/e2eh-podnet",)
            )
        )
        provisioner_bin = self.bin / "local-path-provisioner"
        provisioner = oci.binary_layer(layers / "local-path.tar.gz", provisioner_bin)
        archive.images.append(
            oci.Image(
                recipe.STORAGE_IMAGE, (provisioner,), entrypoint=(f"/usr/local/bin/{provisioner_bin.name}",)
            )
        )
        archive.images.append(oci.Image(recipe.STORAGE_HELPER_IMAGE, (base,), entrypoint=()))
        archive.write(self.work / "preload" / "images.tar")
        shutil.rmtree(layers)

    def rootfs(self) -> None:
        """Debian + the harness's node files + kubeadm/kubelet/kubectl, imported into podman."""
        root = self.work / "rootfs"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        with tarfile.open(recipe.rootfs_archive()) as tar:
            tar.extractall(root, numeric_owner=True, filter="fully_trusted")
        customize(root)
        for name in recipe.NODE_BINARIES:
            shutil.copy2(self.bin / name, root / "usr" / "bin" / name)
        tarball = self.work / "node-rootfs.tar"
        self._tar(root, tarball)
        shutil.rmtree(root)
        self.podman("import", "--change", f"LABEL {LABEL}=true", str(tarball), self.build_image, timeout=600)
        tarball.unlink()

    def preload(self) -> None:
        """Import the images into the node's containerd, then commit the final image."""
        self.podman("rm", "--force", "--ignore", self.container, timeout=60)
        self.podman(
            "run", "--detach", "--privileged", "--name", self.container,
            "--label", f"{LABEL}=true", "--tmpfs", "/run", "--tmpfs", "/tmp",
            "--volume", f"{self.work / 'preload'}:{IMPORT_DIR}:ro",
            "--entrypoint", "/usr/bin/containerd", self.build_image,
            timeout=120,
        )  # fmt: skip
        waits.poll(
            f"containerd in build container {self.container}",
            self._containerd_up,
            timeout=60,
            interval=0.5,
            hint=f"podman logs {self.container}",
        )
        self.podman(
            "exec", self.container, "ctr", "--namespace", "k8s.io", "images", "import",
            "--label", "io.cri-containerd.pinned=pinned", "--all-platforms", "--no-unpack",
            f"{IMPORT_DIR}/images.tar",
            timeout=600,
        )  # fmt: skip
        listed = self.podman(
            "exec", self.container, "ctr", "--namespace", "k8s.io", "images", "list", "--quiet"
        ).stdout.split()
        missing = sorted({*recipe.preloaded_images(), *recipe.harness_images()} - set(listed))
        if missing:
            raise NodeImageError(f"containerd in {self.container} lacks {missing} after the import")
        self.podman("stop", "--time", "30", self.container, timeout=90)
        self.podman(
            "commit", "--change", f"ENTRYPOINT {ENTRYPOINT}", "--change", "CMD []",
            "--change", "ENV container=docker", "--change", "STOPSIGNAL SIGRTMIN+3",
            "--change", f"LABEL {LABEL}=true", "--change", f"LABEL {recipe.KEY_LABEL}={self.key}",
            self.container, str(self.image),
            timeout=900,
        )  # fmt: skip

    def _containerd_up(self) -> waits.Observation[None]:
        res = self.podman("exec", self.container, "ctr", "version", check=False, timeout=30)
        return waits.Observation(res.ok, tail(res.stdout + res.stderr, 2))

    # -- plumbing ----------------------------------------------------------------
    def _tar(self, source: Path, out: Path) -> None:
        tmp = out.with_name(out.name + ".partial")
        out.parent.mkdir(parents=True, exist_ok=True)
        self.runner.run(
            ["tar", "--create", "--numeric-owner", "--file", str(tmp), "--directory", str(source), "."],
            timeout=600,
        )
        os.replace(tmp, out)

    def remove_leftovers(self) -> None:
        """The build container and the intermediate image, whatever happened."""
        self.podman("rm", "--force", "--ignore", self.container, timeout=120, check=False)
        self.podman("rmi", "--force", self.build_image, timeout=120, check=False)

    def phases(self) -> list[Phase]:
        mods = recipe.go_modules()
        steps = [Phase("debootstrap", self.debootstrap), Phase("go:pause", self.go_build_pause)]
        previous: tuple[str, ...] = ()
        for mod in mods:  # one at a time: each go build already uses every core
            steps.append(Phase(f"go:{mod.name}", partial(self.go_build, mod), previous))
            previous = (f"go:{mod.name}",)
        go_all = (*(f"go:{m.name}" for m in mods), "go:pause")
        steps += [
            Phase("preload-archive", self.preload_archive, ("debootstrap", *go_all)),
            Phase("rootfs", self.rootfs, ("debootstrap", *go_all)),
            Phase("preload+commit", self.preload, ("rootfs", "preload-archive")),
        ]
        return steps

    def run(self, timeline: Timeline) -> None:
        self.remove_leftovers()  # of a build that was killed before its own cleanup ran
        shutil.rmtree(self.work, ignore_errors=True)
        self.logs.mkdir(parents=True)
        try:
            with PhaseReporter(live=False) as reporter:
                run_phases(self.phases(), timeline=timeline, reporter=reporter, max_workers=3)
        except PhaseFailed as err:
            raise NodeImageError(
                f"node image build failed in step {err.phase}: {err.cause}\n"
                f"(logs of the build steps: {self.logs}; the next run starts over)"
            ) from err
        finally:
            self.remove_leftovers()
        shutil.rmtree(self.work, ignore_errors=True)


def _enable(root: Path, unit: str, target: str = "multi-user.target") -> None:
    wants = root / "etc/systemd/system" / f"{target}.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / unit
    link.unlink(missing_ok=True)
    source = root / "etc/systemd/system" / unit
    link.symlink_to(f"/etc/systemd/system/{unit}" if source.exists() else f"/lib/systemd/system/{unit}")


def customize(root: Path) -> None:
    """Make the Debian tree a kind node: systemd trimmed for a container, the harness's files."""
    lib = root / "lib/systemd/system"
    for pattern in (
        "multi-user.target.wants/*",
        "local-fs.target.wants/*",
        "basic.target.wants/*",
        "sockets.target.wants/*udev*",
        "sockets.target.wants/*initctl*",
        "sysinit.target.wants/systemd-tmpfiles-setup.service",
    ):
        for path in lib.glob(pattern):
            path.unlink()
    for path in (root / "etc/systemd/system").glob("*.wants/*"):
        path.unlink()
    (root / "etc/systemd/system/systemd-binfmt.service").symlink_to("/dev/null")
    with (root / "etc/systemd/journald.conf").open("a") as fh:
        fh.write("ReadKMsg=no\n")
    init = root / "sbin/init"
    init.unlink(missing_ok=True)
    init.symlink_to("/usr/lib/systemd/systemd")
    for src in recipe.FILES.rglob("*"):
        dest = root / src.relative_to(recipe.FILES)
        if src.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        else:
            shutil.copy2(src, dest)
    for unit in ("containerd.service", "kubelet.service"):
        _enable(root, unit)
    (root / "kind/version").write_text(v.KUBERNETES)
    (root / "etc/kubernetes/manifests").mkdir(parents=True, exist_ok=True)
    cni = root / "opt/cni/bin"
    cni.parent.mkdir(parents=True, exist_ok=True)
    cni.symlink_to("/usr/lib/cni")
