"""The image pipeline: plan refs (tag computed once), go build, podman build, save."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from infra.config import Config, Service
from infra.images import ImageRef, content_tag, qualify, tree_digest
from infra.names import COVERAGE_LABEL, SERVICE_LABEL
from infra.paths import output_dirs
from infra.podman_cli import Podman
from infra.proc import Runner

log = logging.getLogger("infra.build")

COVER_FLAGS = ("-cover", "-covermode=atomic", "-coverpkg=./...")
BINARY = "app"
SCRATCH_CONTAINERFILE = f"""\
FROM scratch
COPY {BINARY} /{BINARY}
ENTRYPOINT ["/{BINARY}"]
"""


@dataclass(frozen=True)
class ImagePlan:
    """The refs of one run: computed once, then only passed along."""

    refs: Mapping[str, ImageRef]
    coverage: bool

    def ref(self, service: str) -> ImageRef:
        return self.refs[service]

    def all(self) -> list[ImageRef]:
        return [self.refs[name] for name in sorted(self.refs)]


def go_version(runner: Runner, timeout: float = 30) -> str:
    return runner.run(["go", "env", "GOVERSION"], timeout=timeout).stdout.strip()


def plan_images(config: Config, *, coverage: bool, toolchain: str) -> ImagePlan:
    outputs = output_dirs(config.root)
    trees = {src: tree_digest(src, outputs) for src in {config.path(s.source) for s in config.services}}
    refs = {}
    for svc in config.services:
        extra = [config.path(svc.containerfile)] if svc.containerfile else []
        tag = content_tag(
            trees[config.path(svc.source)],
            main=svc.main,
            build_args=svc.build_args,
            coverage=coverage,
            extra=extra,
            toolchain=toolchain,
        )
        refs[svc.name] = ImageRef(qualify(svc.image), tag)
    return ImagePlan(refs, coverage)


def go_build_argv(svc: Service, output: Path, *, coverage: bool) -> list[str]:
    cover = list(COVER_FLAGS) if coverage else []
    return ["go", "build", "-trimpath", *cover, "-o", str(output), svc.main]


GO_ENV = {"CGO_ENABLED": "0", "GOOS": "linux"}


@dataclass(frozen=True)
class BuildOutcome:
    service: str
    ref: ImageRef
    built: bool  # False: the image with this content tag already existed


def build_image(
    config: Config,
    plan: ImagePlan,
    service: str,
    *,
    runner: Runner,
    podman: Podman,
    build_root: Path,
    force: bool = False,
) -> BuildOutcome:
    """Build one service image of the plan unless an image with its content tag exists."""
    svc, ref, coverage = config.service(service), plan.ref(service), plan.coverage
    if not force and podman.image_exists(ref):
        log.debug("%s: %s is up to date, not rebuilt", svc.name, ref)
        return BuildOutcome(svc.name, ref, built=False)
    timeout = config.timeouts.build
    labels = {SERVICE_LABEL: svc.name, COVERAGE_LABEL: str(coverage).lower()}
    source = config.path(svc.source)
    if svc.containerfile:
        args = dict(svc.build_args)
        if coverage:
            args["GOFLAGS"] = " ".join([args.get("GOFLAGS", ""), *COVER_FLAGS]).strip()
        podman.build(
            ref,
            source,
            config.path(svc.containerfile),
            build_args=args,
            labels=labels,
            timeout=timeout,
        )
        return BuildOutcome(svc.name, ref, built=True)
    build_root.mkdir(parents=True, exist_ok=True)
    # unique per build: two concurrent runs may build the same tag at once
    context = Path(tempfile.mkdtemp(prefix=f"{svc.name}-{ref.tag}-", dir=build_root))
    try:
        runner.run(
            go_build_argv(svc, context / BINARY, coverage=coverage),
            timeout=timeout,
            cwd=source,
            env=GO_ENV,
            hint=f"fix the Go build of service {svc.name!r} ({source})",
        )
        (context / "Containerfile").write_text(SCRATCH_CONTAINERFILE)
        podman.build(
            ref,
            context,
            context / "Containerfile",
            build_args=svc.build_args,
            labels=labels,
            timeout=timeout,
        )
    finally:
        shutil.rmtree(context, ignore_errors=True)
    return BuildOutcome(svc.name, ref, built=True)


def save_images(podman: Podman, refs: Sequence[ImageRef], archive: Path, timeout: float) -> Path:
    """One docker-archive for all refs (RepoTags keep `localhost/`)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.unlink(missing_ok=True)
    podman.save(refs, archive, timeout=timeout)
    return archive
