"""`inv images`, `build-image`, `save-image`, `load-image`: the pipeline by hand."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from infra.builds import build
from infra.builds.build import BuildOutcome, ImagePlan
from infra.config import Config
from infra.console import say
from infra.kind_cli import load_archive_args, run_kind
from infra.paths import build_dir
from infra.podman_cli import Podman
from infra.proc import Runner


def plan(cfg: Config, runner: Runner, coverage: bool) -> ImagePlan:
    return build.plan_images(cfg, coverage=coverage, toolchain=build.go_version(runner), runner=runner)


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

    outcomes = build.build_services(
        cfg, the_plan, names, runner=runner, podman=podman, build_root=build_dir(root).resolve(), force=force
    )
    for o in outcomes:
        say(f"{o.service}: {o.ref} " + ("built" if o.built else "up to date, not rebuilt"))
    podman.remove_displaced()  # the images the rebuilt tags named until now
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


def load(runner: Runner, podman: Podman, archive: Path, cluster: str, provider: str, timeout: float) -> None:
    run_kind(
        runner,
        podman,
        provider,
        *load_archive_args(archive, cluster),
        timeout=timeout,
        hint=f"is kind cluster {cluster!r} running? `kind get clusters`",
    )
    say(f"loaded {archive} into kind cluster {cluster}")
