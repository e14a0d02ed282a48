"""`inv images`, `build-image`, `save-image`, `load-image`: the pipeline by hand."""

from __future__ import annotations

import json
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from infra import build
from infra.build import BuildOutcome, ImagePlan
from infra.config import Config
from infra.console import say
from infra.names import PREFIX, check_dns_label
from infra.podman_cli import Podman
from infra.proc import Runner

ARCHIVE_NAME = f"{PREFIX}-images.tar"


def plan(cfg: Config, runner: Runner, coverage: bool) -> ImagePlan:
    return build.plan_images(cfg, coverage=coverage, toolchain=build.go_version(runner))


def build_all(
    cfg: Config,
    runner: Runner,
    podman: Podman,
    *,
    coverage: bool,
    services: list[str] | None = None,
    force: bool = False,
    root: Path,
) -> tuple[ImagePlan, list[BuildOutcome]]:
    """Build the named services (all by default) in parallel; unchanged ones are skipped."""
    the_plan = plan(cfg, runner, coverage)
    names = services or cfg.names()

    def one(name: str) -> BuildOutcome:
        return build.build_image(
            cfg,
            cfg.service(name),
            the_plan.ref(name),
            coverage=coverage,
            runner=runner,
            podman=podman,
            build_root=(root / ".e2e" / "build").resolve(),
            force=force,
        )

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        outcomes = list(pool.map(one, names))
    for o in outcomes:
        say(f"{o.service}: {o.ref} " + ("built" if o.built else "up to date, not rebuilt"))
    if not any(o.built for o in outcomes):
        say(f"rebuilt nothing: all {len(outcomes)} image(s) are up to date")
    return the_plan, outcomes


def archive_repotags(archive: Path) -> list[str]:
    """The RepoTags recorded in a docker-archive (what containerd will call them)."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        manifest = json.load(member)
    return [tag for entry in manifest for tag in entry.get("RepoTags") or []]


def save(podman: Podman, the_plan: ImagePlan, names: list[str], archive: Path, timeout: float) -> Path:
    refs = [the_plan.ref(n) for n in names]
    build.save_images(podman, refs, archive, timeout)
    say(f"saved {len(refs)} image(s) to {archive}: RepoTags {archive_repotags(archive)}")
    return archive


def kind_load_argv(archive: Path, cluster: str) -> list[str]:
    return ["kind", "load", "image-archive", str(archive), "--name", check_dns_label("cluster", cluster)]


def load(
    runner: Runner,
    archive: Path,
    cluster: str,
    provider: str,
    timeout: float,
    env: dict[str, str] | None = None,
) -> None:
    runner.run(
        kind_load_argv(archive, cluster),
        timeout=timeout,
        env={**(env or {}), "KIND_EXPERIMENTAL_PROVIDER": provider},
        hint=f"is kind cluster {cluster!r} running? `kind get clusters`",
    )
    say(f"loaded {archive} into kind cluster {cluster}")
