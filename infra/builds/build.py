"""The image pipeline: plan refs (tag computed once), go build, podman import (or build), save."""

from __future__ import annotations

import contextlib
import hashlib
import json
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
from infra.config import Config, Layout
from infra.gocover import coverflush
from infra.images import ImageRef, content_tag, context_files, files_digest, qualify
from infra.names import COVERAGE_LABEL, SERVICE_LABEL
from infra.paths import output_dirs
from infra.podman_cli import Podman
from infra.proc import CANCEL, CommandCancelled, Runner

log = logging.getLogger("infra.build")

COVER_FLAGS = ("-cover", "-covermode=atomic", "-coverpkg=./...")
BINARY = "app"
NAMED_UID = 10001
"""The uid a layout's named user gets in the /etc/passwd the harness writes (FROM scratch has none)."""


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
        mains = {n: sorted(set(config.service(n).mains().values())) for n in batch.services}
        wanted = sorted({m for ms in mains.values() for m in ms})
        files = gosources.inputs(
            batch.source, wanted, runner=runner, env=GO_ENV, timeout=config.timeouts.build
        )
        for n, ms in mains.items():
            digests[n] = files_digest(batch.source, sorted({f for m in ms for f in files[m]}))
            layout = config.service(n).layout
            if layout is not None:  # where everything goes, and the repo files it copies
                placed = {dest: _layout_files(config, src) for dest, src in layout.files.items()}
                files_part = {d: files_digest(config.path(layout.files[d]), fs) for d, fs in placed.items()}
                digests[n] += (
                    ":"
                    + hashlib.sha256(
                        json.dumps([layout.model_dump(mode="json"), files_part], sort_keys=True).encode()
                    ).hexdigest()
                )
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
        if stand_in.containerfile is not None:  # its build context and its Containerfile
            out[ImageRef.foreign(stand_in.image)] = content_tag(
                files_digest(source, context_files(source, output_dirs(config.root))), main="", build_args={},
                coverage=False, extra=[config.path(stand_in.containerfile)],
            )  # fmt: skip
            continue
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


def _layout_files(config: Config, src: Path) -> list[Path]:
    """The files a layout's entry copies: the file, or every file under the directory."""
    path = config.path(src)
    if path.is_file():
        return [path]
    if path.is_dir():
        return context_files(path, output_dirs(config.root))
    raise FileNotFoundError(
        f"layout file {path} does not exist (services[].layout.files in {config.source_file})"
    )


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
    """Build every service of the batch whose image is missing with ONE go build of all their mains;
    service -> its image's root filesystem, staged (binaries hard-linked at their image paths, the
    layout's repo files, /etc/passwd for a named user)."""
    todo = [n for n in batch.services if force or not podman.image_exists(plan.ref(n))]
    if not todo:
        return {}
    wanted = {n: config.service(n).mains() for n in todo}
    packages = sorted({m for ms in wanted.values() for m in ms.values()})
    names = {m: binary_name(module_path(batch.source), m) for m in packages}
    build_root.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix=f"go-{batch.name}-", dir=build_root))
    # two mains whose binaries would share a name: one build (and directory) each
    groups = (
        [(out, packages)] if len(set(names.values())) == len(packages) else [(out / str(i), [m]) for i, m in
                                                                             enumerate(packages)]
    )  # fmt: skip
    staged: dict[str, Path] = {}
    try:
        built = _compile_groups(config, plan, batch, groups, names, runner=runner, build_root=build_root)
        for n in todo:
            staged[n] = stage_rootfs(config, n, {dest: built[m] for dest, m in wanted[n].items()}, build_root)
    except BaseException:
        for rootfs in staged.values():
            shutil.rmtree(rootfs, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(out, ignore_errors=True)  # the binaries live on as the staged trees' links
    return staged


def stage_rootfs(config: Config, service: str, binaries: Mapping[str, Path], build_root: Path) -> Path:
    """A service image's files in a directory of their own: what the image's one layer holds."""
    layout = config.service(service).layout
    rootfs = Path(tempfile.mkdtemp(prefix=f"rootfs-{service}-", dir=build_root))
    for dest, binary in binaries.items():
        target = rootfs / dest.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        _link_or_copy(binary, target)
        target.chmod(0o755)
    if layout is not None:
        for dest, src in layout.files.items():
            base = config.path(src)
            for file in _layout_files(config, src):
                target = rootfs / dest.lstrip("/") / (file.relative_to(base) if base.is_dir() else "")
                target.parent.mkdir(parents=True, exist_ok=True)
                _link_or_copy(file, target)
        user = layout.user.split(":", 1)[0]
        if user and not user.isdigit():  # a name needs /etc/passwd, which no base image brings here
            etc = rootfs / "etc"
            etc.mkdir(exist_ok=True)
            (etc / "passwd").write_text(f"root:x:0:0:root:/root:/sbin/nologin\n{user}:x:{NAMED_UID}:"
                                        f"{NAMED_UID}:{user}:/home/{user}:/sbin/nologin\n")  # fmt: skip
            (etc / "group").write_text(f"root:x:0:\n{user}:x:{NAMED_UID}:\n")
    return rootfs


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def _compile_groups(
    config: Config,
    plan: ImagePlan,
    batch: GoBatch,
    groups: list[tuple[Path, list[str]]],
    names: dict[str, str],
    *,
    runner: Runner,
    build_root: Path,
) -> dict[str, Path]:
    """main package -> its binary."""
    binaries: dict[str, Path] = {}
    for target, group_mains in groups:
        target.mkdir(exist_ok=True)
        binaries |= {m: target / names[m] for m in group_mains}
        users = sorted(
            n for n in batch.services if set(config.service(n).mains().values()) & set(group_mains)
        )
        who = ", ".join(repr(n) for n in users)
        # the flush package's tree lives outside the binaries' dir
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
                hint=f"fix the Go build of service{'s' if len(users) > 1 else ''} {who} ({batch.source})",
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
    rootfs: Path | None = None,
    force: bool = False,
) -> BuildOutcome:
    """The image of one service: from its Containerfile, or one layer of what its batch staged.

    A host-built service without a staged tree was found up to date by its batch.
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
    if rootfs is None:
        log.debug("%s: %s is up to date, not rebuilt", svc.name, ref)
        return BuildOutcome(svc.name, ref, built=False)
    layout = svc.layout or Layout()
    entrypoint = layout.entrypoint if layout.entrypoint is not None else (layout.binary,)
    changes = [f"ENTRYPOINT {json.dumps(list(entrypoint))}"]
    changes += [f"CMD {json.dumps(list(layout.cmd))}"] if layout.cmd else []
    changes += [f"WORKDIR {layout.workdir}"] if layout.workdir else []
    changes += [f"ENV {k}={json.dumps(v)}" for k, v in sorted(layout.env.items())]
    user = layout.user
    if user and not user.split(":", 1)[0].isdigit():
        user = f"{NAMED_UID}:{NAMED_UID}"  # the /etc/passwd entry stage_rootfs wrote for the name
    changes += [f"USER {user}"] if user else []
    try:
        _import_tree(ref, rootfs, podman=podman, build_root=build_root, changes=changes, labels=labels,
                     timeout=timeout)  # fmt: skip
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return BuildOutcome(svc.name, ref, built=True)


def _import_tree(
    ref: ImageRef,
    rootfs: Path,
    *,
    podman: Podman,
    build_root: Path,
    changes: Sequence[str],
    labels: Mapping[str, str],
    timeout: float,
) -> None:
    """One layer of a directory's files, owned by root, with no timestamps: the same files give the
    same layer (and image ID, which the kind load skip compares)."""
    fd, name = tempfile.mkstemp(prefix=f"{ref.repository.rsplit('/', 1)[-1]}-{ref.tag}-", suffix=".tar",
                                dir=build_root)  # fmt: skip
    archive = Path(name)
    try:
        with os.fdopen(fd, "wb") as out, tarfile.open(fileobj=out, mode="w") as tar:
            for path in sorted(rootfs.rglob("*")):
                entry = tar.gettarinfo(path, arcname=path.relative_to(rootfs).as_posix())
                entry.uid = entry.gid = 0
                entry.uname = entry.gname = ""
                entry.mtime = 0
                if entry.isdir():
                    entry.mode = 0o755
                elif entry.isfile():
                    entry.mode = 0o755 if entry.mode & 0o111 else 0o644
                    with path.open("rb") as data:
                        tar.addfile(entry, data)
                    continue
                tar.addfile(entry)
        podman.import_image(ref, archive, entrypoint=None, changes=changes, labels=labels, timeout=timeout)
    finally:
        archive.unlink(missing_ok=True)


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
        podman.import_image(
            ref, archive, entrypoint=[f"/{BINARY}"], changes=(), labels=labels, timeout=timeout
        )
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
                           rootfs=binaries.get(name), force=force)  # fmt: skip

    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        return waits.map_all(pool, one, names)


def save_images(podman: Podman, refs: Sequence[ImageRef], archive: Path, timeout: float) -> Path:
    """One docker-archive for all refs (RepoTags keep `localhost/`)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.unlink(missing_ok=True)
    podman.save(refs, archive, timeout=timeout)
    return archive
