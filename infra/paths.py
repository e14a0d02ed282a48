"""Where a run keeps its state and writes its outputs (all gitignored)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from infra.names import PREFIX, resource_name

STATE_DIR = ".e2e"


def user_cache(name: str) -> Path:
    """XDG_CACHE_HOME (default ~/.cache)/e2e-harness/<name>: what outlives runs, keyed by its inputs."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "e2e-harness" / name


def state_dir(root: Path) -> Path:
    """The harness's working state under a root: runs, builds, archives, containers.conf."""
    return root / STATE_DIR


def build_dir(root: Path) -> Path:
    return state_dir(root) / "build"


def archives_dir(root: Path) -> Path:
    return state_dir(root) / "archives"


def images_archive(root: Path) -> Path:
    """Where `inv images` saves unless told otherwise."""
    return archives_dir(root) / f"{PREFIX}-images.tar"


def scratch_dir(root: Path) -> Path:
    return state_dir(root) / "scratch"


def artifacts_dir(root: Path) -> Path:
    return root / "artifacts"


def coverage_dir(root: Path) -> Path:
    return root / "coverage"


IGNORE_ALL = "# written by the e2e harness: what it writes here is never committed\n*\n"


def mark_outputs(root: Path, *dirs: Path) -> None:
    """Create output directories, each with a .gitignore of its own (a team's repo has none for them)."""
    for d in dirs or output_dirs(root):
        d.mkdir(parents=True, exist_ok=True)
        ignore = d / ".gitignore"
        if not ignore.exists():
            ignore.write_text(IGNORE_ALL)


def output_dirs(root: Path) -> tuple[Path, ...]:
    """What the harness writes under a config's root: never a build input."""
    return (state_dir(root), artifacts_dir(root), coverage_dir(root))


@dataclass(frozen=True)
class RunPaths:
    root: Path
    run_id: str

    @property
    def state(self) -> Path:
        return state_dir(self.root)

    @property
    def run_dir(self) -> Path:
        return self.state / "runs" / self.run_id

    @property
    def state_file(self) -> Path:
        return self.run_dir / "state.json"

    @property
    def kubeconfig(self) -> Path:
        return self.run_dir / "kubeconfig"

    @property
    def archive(self) -> Path:
        return archives_dir(self.root) / f"{resource_name(self.run_id)}.tar"

    @property
    def artifacts(self) -> Path:
        return artifacts_dir(self.root) / self.run_id

    @property
    def diagnostics(self) -> Path:
        return self.artifacts / "diagnostics"

    @property
    def coverage_run(self) -> Path:
        return coverage_dir(self.root) / "e2e" / self.run_id

    @property
    def covdata(self) -> Path:
        return self.coverage_run / "covdata"

    @property
    def hostpaths(self) -> Path:
        return self.run_dir / "hostpath"


def latest_state_pointer(root: Path) -> Path:
    return state_dir(root) / "latest-state"


def point_latest(link: Path, target: Path) -> None:
    """Atomically repoint a symlink (concurrent runs may race on it)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


def make_open_dir(path: Path) -> Path:
    """A directory any container user can write (hostPath mounts, GOCOVERDIR)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)  # kubelet/podman create root-owned dirs; services may run as non-root
    return path
