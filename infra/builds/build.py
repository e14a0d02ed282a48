"""The image pipeline: plan refs (tag computed once), go build, podman import (or build), save."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from infra import waits
from infra.builds import gosources
from infra.config import Config
from infra.gocover import coverflush
from infra.images import ImageRef, content_tag, context_files, files_digest, qualify
from infra.names import COVERAGE_LABEL, SERVICE_LABEL
from infra.paths import output_dirs
from infra.podman_cli import Podman
from infra.proc import CANCEL, CommandCancelled, Runner

log = logging.getLogger("infra.build")

COVER_FLAGS = ("-cover", "-covermode=atomic", "-coverpkg=./...")
BINARY = "app"


@dataclass(frozen=True)
class ImagePlan:
    """The refs of one run: computed once, then only passed along."""

    refs: Mapping[str, ImageRef]
    coverage: bool
    toolchain: str = ""
    stand_ins: Mapping[ImageRef, str] = field(default_factory=dict)
    """third-party reference -> the digest of its stand-in's inputs ([[images.stand_in]])."""

    def ref(self, service: str) -> ImageRef:
        return self.refs[service]

    def all(self) -> list[ImageRef]:
        return [self.refs[name] for name in sorted(self.refs)]


def go_version(runner: Runner, timeout: float = 30) -> str:
    return runner.run(["go", "env", "GOVERSION"], timeout=timeout).stdout.strip()


def input_digests(config: Config, runner: Runner) -> dict[str, str]:
    """service -> digest of exactly what goes into its image (one `go list` per module)."""
    digests: dict[str, str] = {}
    for batch in go_batches(config):
        mains = {n: config.service(n).main for n in batch.services}
        wanted = sorted(set(mains.values()))
        files = gosources.inputs(
            batch.source, wanted, runner=runner, env=GO_ENV, timeout=config.timeouts.build
        )
        digests |= {n: files_digest(batch.source, files[m]) for n, m in mains.items()}
    outputs = output_dirs(config.root)
    for svc in config.services:
        if svc.containerfile is not None:
            context = config.path(svc.source)
            digests[svc.name] = files_digest(context, context_files(context, outputs))
    return digests


def plan_images(config: Config, *, coverage: bool, toolchain: str, runner: Runner) -> ImagePlan:
    with ThreadPoolExecutor(max_workers=2) as pool:  # `go list` of the services and of the stand-ins
        stand_ins = pool.submit(stand_in_digests, config, runner, toolchain)
        digests = input_digests(config, runner)
    refs = {}
    for svc in config.services:
        extra = [config.path(svc.containerfile)] if svc.containerfile else []
        tag = content_tag(
            digests[svc.name],
            main=svc.main,
            build_args=svc.build_args,
            coverage=coverage,
            extra=extra,
            toolchain=toolchain,
            flush=coverflush.tag_input(config) if coverage and not svc.containerfile else "",
        )
        refs[svc.name] = ImageRef(qualify(svc.image), tag)
    stand_in_tags: dict[ImageRef, str] = waits.result(stand_ins)
    return ImagePlan(refs, coverage, toolchain, stand_in_tags)


def stand_in_digests(config: Config, runner: Runner, toolchain: str) -> dict[ImageRef, str]:
    out = {}
    for stand_in in config.images.stand_in:
        source = config.path(stand_in.source).resolve()
        timeout = config.timeouts.build
        files = gosources.inputs(source, [stand_in.main], runner=runner, env=GO_ENV, timeout=timeout)
        out[ImageRef.foreign(stand_in.image)] = content_tag(
            files_digest(source, files[stand_in.main]),
            main=stand_in.main, build_args={}, coverage=False, toolchain=toolchain,
        )  # fmt: skip
    return out


def go_build_argv(mains: Sequence[str], out_dir: Path, *, coverage: bool) -> list[str]:
    """One go build for every main of a module: the standard library and shared packages compile once.

    `-o dir/`: each binary is named after its package path (see binary_name).
    """
    cover = list(COVER_FLAGS) if coverage else []
    return ["go", "build", "-trimpath", *cover, "-o", f"{out_dir}/", *mains]


@dataclass(frozen=True)
class GoBatch:
    """The services built from one Go module on the host (not from a Containerfile)."""

    name: str  # for the phase: go:<name>
    source: Path
    services: tuple[str, ...]


def go_batches(config: Config) -> list[GoBatch]:
    by_source: dict[Path, list[str]] = {}
    for svc in config.services:
        if svc.containerfile is None:
            by_source.setdefault(config.path(svc.source).resolve(), []).append(svc.name)
    batches: list[GoBatch] = []
    for source, names in sorted(by_source.items()):
        base = source.name or "module"
        same = sum(1 for b in batches if b.name.split("#")[0] == base)
        batches.append(GoBatch(f"{base}#{same + 1}" if same else base, source, tuple(names)))
    return batches


def module_path(source: Path) -> str:
    for line in (source / "go.mod").read_text().splitlines():
        if line.startswith("module "):
            return line.split()[1].strip('"')
    raise ValueError(f"{source / 'go.mod'} has no module line")


def binary_name(module: str, main: str) -> str:
    """What `go build -o dir/` calls a main package's binary (a /vN suffix is skipped)."""
    rel = main.strip().removeprefix("./").strip("/")
    parts = (module if rel in ("", ".") else f"{module}/{rel}").split("/")
    if len(parts) > 1 and re.fullmatch(r"v[2-9][0-9]*", parts[-1]):
        return parts[-2]
    return parts[-1]


def compile_batch(
    config: Config,
    plan: ImagePlan,
    batch: GoBatch,
    *,
    runner: Runner,
    podman: Podman,
    build_root: Path,
    force: bool = False,
) -> dict[str, Path]:
    """Build every service of the batch whose image is missing with ONE go build; service -> binary."""
    todo = [n for n in batch.services if force or not podman.image_exists(plan.ref(n))]
    if not todo:
        return {}
    mains = {n: config.service(n).main for n in todo}
    names = {n: binary_name(module_path(batch.source), m) for n, m in mains.items()}
    build_root.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix=f"go-{batch.name}-", dir=build_root))
    # two mains whose binaries would share a name: one build (and directory) each
    groups = [(out, todo)] if len(set(names.values())) == len(todo) else [(out / n, [n]) for n in todo]
    binaries: dict[str, Path] = {}
    for target, group in groups:
        target.mkdir(exist_ok=True)
        binaries |= {n: target / names[n] for n in group}
        who = ", ".join(repr(n) for n in group)
        group_mains = [mains[n] for n in group]
        # the flush package's tree lives outside the binaries' dir: that one is removed once empty
        extra = Path(tempfile.mkdtemp(prefix=f"src-{batch.name}-", dir=build_root))
        try:
            cwd = batch.source
            if plan.coverage and coverflush.enabled(config):
                cwd = coverflush.prepare_tree(
                    batch.source, module_path(batch.source), group_mains,
                    config.coverage.flush_signal, extra, skip=output_dirs(config.root),
                )  # fmt: skip
                coverflush.mirror_workspace(batch.source, cwd, runner=runner, timeout=config.timeouts.build)
            go_build(
                runner, group_mains, target, coverage=plan.coverage, cwd=cwd, timeout=config.timeouts.build,
                hint=f"fix the Go build of service{'s' if len(group) > 1 else ''} {who} ({batch.source})",
            )  # fmt: skip
        finally:
            shutil.rmtree(extra, ignore_errors=True)
    return binaries


GO_ENV = {"CGO_ENABLED": "0", "GOOS": "linux"}
_GO_BUILDS = threading.Lock()


def go_build(
    runner: Runner,
    mains: Sequence[str],
    out_dir: Path,
    *,
    coverage: bool,
    cwd: Path,
    timeout: float,
    hint: str,
) -> None:
    """One go build at a time: each already uses every core, and two at once on an empty cache
    would both compile the standard library (other modules' builds, stand-ins)."""
    argv = go_build_argv(mains, out_dir, coverage=coverage)
    with _GO_BUILDS:
        if CANCEL.is_set():  # interrupted while it waited its turn: a command started now would run on
            raise CommandCancelled(argv, -1, "")
        runner.run(argv, timeout=timeout, cwd=cwd, env=GO_ENV,
                   hint=hint)  # fmt: skip


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
    podman: Podman,
    build_root: Path,
    binary: Path | None = None,
    force: bool = False,
) -> BuildOutcome:
    """The image of one service: from its Containerfile, or one layer of the binary its batch built.

    A host-built service without a binary was found up to date by its batch.
    """
    svc, ref, coverage = config.service(service), plan.ref(service), plan.coverage
    timeout = config.timeouts.build
    labels = {SERVICE_LABEL: svc.name, COVERAGE_LABEL: str(coverage).lower()}
    if svc.containerfile:
        if not force and podman.image_exists(ref):
            return BuildOutcome(svc.name, ref, built=False)
        args = dict(svc.build_args)
        if coverage:
            args["GOFLAGS"] = " ".join([args.get("GOFLAGS", ""), *COVER_FLAGS]).strip()
        podman.build(
            ref,
            config.path(svc.source),
            config.path(svc.containerfile),
            build_args=args,
            labels=labels,
            timeout=timeout,
        )
        return BuildOutcome(svc.name, ref, built=True)
    if binary is None:
        log.debug("%s: %s is up to date, not rebuilt", svc.name, ref)
        return BuildOutcome(svc.name, ref, built=False)
    build_binary_image(ref, binary, podman=podman, build_root=build_root, labels=labels, timeout=timeout)
    return BuildOutcome(svc.name, ref, built=True)


def build_binary_image(
    ref: ImageRef,
    binary: Path,
    *,
    podman: Podman,
    build_root: Path,
    labels: Mapping[str, str],
    timeout: float,
) -> None:
    """An image of the binary alone, at /app (it is removed, with its directory once that is empty)."""
    build_root.mkdir(parents=True, exist_ok=True)
    # unique per build: two concurrent runs may build the same tag at once
    fd, name = tempfile.mkstemp(
        prefix=f"{ref.repository.rsplit('/', 1)[-1]}-{ref.tag}-", suffix=".tar", dir=build_root
    )
    archive = Path(name)
    try:
        with os.fdopen(fd, "wb") as out, tarfile.open(fileobj=out, mode="w") as tar:
            entry = tar.gettarinfo(binary, arcname=BINARY)
            entry.uid = entry.gid = 0
            entry.uname = entry.gname = ""
            entry.mode, entry.mtime = 0o755, 0  # the same binary gives the same layer
            with binary.open("rb") as data:
                tar.addfile(entry, data)
        binary.unlink()
        podman.import_image(ref, archive, entrypoint=[f"/{BINARY}"], labels=labels, timeout=timeout)
    finally:
        archive.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # the batch's output dir, once its last binary is packaged
            binary.parent.rmdir()


def build_services(
    config: Config,
    plan: ImagePlan,
    names: Sequence[str],
    *,
    runner: Runner,
    podman: Podman,
    build_root: Path,
    force: bool = False,
) -> list[BuildOutcome]:
    """`inv images`: one go build per module, then the image builds in parallel."""
    binaries: dict[str, Path] = {}
    for batch in go_batches(config):
        wanted = tuple(n for n in batch.services if n in names)
        if wanted:
            binaries |= compile_batch(
                config, plan, GoBatch(batch.name, batch.source, wanted),
                runner=runner, podman=podman, build_root=build_root, force=force,
            )  # fmt: skip

    def one(name: str) -> BuildOutcome:
        return build_image(config, plan, name, podman=podman, build_root=build_root,
                           binary=binaries.get(name), force=force)  # fmt: skip

    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        return waits.map_all(pool, one, names)


def save_images(podman: Podman, refs: Sequence[ImageRef], archive: Path, timeout: float) -> Path:
    """One docker-archive for all refs (RepoTags keep `localhost/`)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.unlink(missing_ok=True)
    podman.save(refs, archive, timeout=timeout)
    return archive
