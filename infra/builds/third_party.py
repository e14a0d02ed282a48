"""Images the harness does not build: taken from podman's store, pulled, or built by a stand-in.

They are used as they are, by their full reference (`ImageRef.foreign`).
`[images] pull` decides when to pull (missing, never, always). A stand-in
(`[[images.stand_in]]`) is a local Go build tagged with the registry name,
for machines that reach no registry; it is rebuilt when its inputs change.
What is still missing fails the run in seconds, before any cluster work,
naming every image and the way to bring it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from infra import waits
from infra.builds import baseimages, build
from infra.config import Config, StandIn
from infra.images import ImageRef, stand_in_cache
from infra.names import InvalidName
from infra.podman_cli import Podman
from infra.proc import CommandError, Runner, tail

log = logging.getLogger("infra.third_party")
STAND_IN_LABEL = "io.e2e-harness.stand-in"
"""On a stand-in image: the digest of its inputs (rebuilt when they change)."""


class ImagesUnavailable(Exception):
    """Third-party images that are neither in podman's store nor pullable; the message lists the fixes."""


@dataclass(frozen=True)
class Outcome:
    ref: ImageRef
    how: str  # present | pulled | stand-in built | stand-in up to date

    def line(self) -> str:
        return f"third-party image {self.ref}: {self.how}"


def containerfile_bases(config: Config) -> dict[ImageRef, list[str]]:
    """The base images the services' own Containerfiles start FROM (not scratch, not an earlier stage,
    not a name an ARG decides): checked or pulled like any third-party image, before the builds."""
    out: dict[ImageRef, list[str]] = {}
    builds = [(s.containerfile, f"service {s.name!r}") for s in config.services]
    builds += [(s.containerfile, f"stand-in for {s.image}") for s in config.images.stand_in]
    for containerfile, who in builds:
        if containerfile is None:
            continue
        path = config.path(containerfile)
        stages: set[str] = set()
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue  # the build says it, naming the file
        for line in lines:
            words = line.split()
            if len(words) < 2 or words[0].upper() != "FROM":
                continue
            args = [w for w in words[1:] if not w.startswith("--")]
            if not args:
                continue
            name, earlier = args[0], name_in(args[0], stages)
            if len(args) >= 3 and args[1].upper() == "AS":
                stages.add(args[2].lower())
            if earlier or name == "scratch" or "$" in name:
                continue
            try:
                ref = ImageRef.foreign(name)
            except InvalidName:
                continue  # a digest: podman's build resolves it itself
            out.setdefault(ref, []).append(f"FROM in {path} ({who})")
    return out


def remove_stand_ins(podman: Podman, refs: Sequence[ImageRef]) -> list[ImageRef]:
    """The stand-ins the harness built, untagged from podman's store at teardown: a local build under
    a registry's name must not outlive the run and stand in for the real image elsewhere. One the user
    made (no stand-in label) stays; one a container still uses stays too (podman refuses)."""
    removed = []
    for ref in refs:
        label = podman("image", "inspect", "--format", f'{{{{index .Labels "{STAND_IN_LABEL}"}}}}', str(ref),
                       check=False)  # fmt: skip
        ours = label.ok and label.stdout.strip() not in ("", "<no value>")
        if ours and podman("rmi", str(ref), check=False).ok:
            removed.append(ref)
    return removed


def name_in(name: str, stages: set[str]) -> bool:
    return name.lower() in stages


def stand_in_for(config: Config, ref: ImageRef) -> StandIn | None:
    for stand_in in config.images.stand_in:
        if ImageRef.foreign(stand_in.image) == ref:
            return stand_in
    return None


def ensure(
    config: Config,
    foreign: Mapping[ImageRef, Sequence[str]],
    *,
    podman: Podman,
    runner: Runner,
    build_root: Path,
    stand_ins: Mapping[ImageRef, str],
    force: bool = False,
) -> list[Outcome]:
    """Make every third-party image present in podman's store, or raise naming each one that is not.

    force: stand-ins are rebuilt even when up to date (`--rebuild`: every image the harness builds).
    """

    def one(ref: ImageRef) -> Outcome | str:
        stand_in = stand_in_for(config, ref)
        if stand_in is not None:
            return _stand_in(config, ref, stand_in, stand_ins[ref], podman, runner, build_root, force)
        present = podman.image_exists(ref)
        policy = config.images.pull
        if present and policy != "always":
            return Outcome(ref, "present")
        if ref.is_local:
            return Outcome(ref, "present") if present else "localhost/ images exist only in podman's store"
        if policy == "never":
            return _made_here(ref) or 'not in podman\'s store, and [images] pull = "never"'
        try:
            podman("pull", "--quiet", str(ref), timeout=config.timeouts.pull)
        except CommandError as err:
            if present:  # `always` with no registry: the copy at hand still serves
                log.warning("pull of %s failed, using the local copy: %s", ref, err)
                return Outcome(ref, "present (pull failed, local copy used)")
            return _made_here(ref) or f"pull failed: {tail(err.output_tail, 2) or err}"
        return Outcome(ref, "pulled")

    def _made_here(ref: ImageRef) -> Outcome | str | None:
        """A base a Containerfile starts FROM that the harness can make (debian from debootstrap)."""
        base = baseimages.provided(ref)
        if base is None or not any(w.startswith("FROM in ") for w in foreign[ref]):
            return None
        try:
            return Outcome(ref, baseimages.ensure(base, podman, runner))
        except (baseimages.BaseImageError, CommandError) as err:
            return f"not pullable, and not made here: {err}"

    refs = sorted(foreign)
    with ThreadPoolExecutor(max_workers=max(1, min(4, len(refs)))) as pool:
        results = waits.map_all(pool, one, refs)
    problems = [
        f"{ref} (used by {', '.join(foreign[ref])}): {res}; next: {_fix(ref, config)}"
        for ref, res in zip(refs, results, strict=True)
        if isinstance(res, str)
    ]
    if problems:
        raise ImagesUnavailable(
            "images the manifests use are not in podman's store and cannot be brought in:\n  "
            + "\n  ".join(problems)
        )
    return [r for r in results if isinstance(r, Outcome)]


def _stand_in(
    config: Config,
    ref: ImageRef,
    stand_in: StandIn,
    digest: str,
    podman: Podman,
    runner: Runner,
    build_root: Path,
    force: bool = False,
) -> Outcome:
    """Built when absent or when its inputs changed (the digest the plan computed, kept as a label),
    under its cache name (images.stand_in_cache), then tagged with the name the manifests use."""
    source = config.path(stand_in.source).resolve()
    if not force and podman.image_exists(ref):
        have = podman(
            "image", "inspect", "--format", f'{{{{index .Labels "{STAND_IN_LABEL}"}}}}', str(ref)
        ).stdout.strip()
        if have == digest:
            return Outcome(ref, "stand-in up to date")
    cache = stand_in_cache(ref, digest)
    if not force and podman.image_exists(cache):
        podman("tag", str(cache), str(ref))
        return Outcome(ref, "stand-in up to date (kept from an earlier run)")
    if stand_in.containerfile is not None:
        containerfile = config.path(stand_in.containerfile)
        podman.build(cache, source, containerfile, build_args={}, labels={STAND_IN_LABEL: digest},
                     timeout=config.timeouts.build)  # fmt: skip
        made = f"stand-in built from {containerfile}"
    else:
        _go_stand_in(config, cache, stand_in, source, digest, podman, runner, build_root)
        made = f"stand-in built from {source / stand_in.main}"
    podman("tag", str(cache), str(ref))
    _drop_older_builds(podman, cache)
    return Outcome(ref, made)


def _go_stand_in(
    config: Config, cache: ImageRef, stand_in: StandIn, source: Path, digest: str,
    podman: Podman, runner: Runner, build_root: Path,
) -> None:  # fmt: skip
    build_root.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix="stand-in-", dir=build_root))
    name = build.binary_name(build.module_path(source), stand_in.main)
    try:
        build.go_build(
            runner, [stand_in.main], out, coverage=False, cwd=source, timeout=config.timeouts.build,
            hint=f"fix the Go build of the stand-in for {cache}",
        )  # fmt: skip
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # no empty build directory left behind
        raise
    build.build_binary_image(
        cache, out / name, podman=podman, build_root=build_root,
        labels={STAND_IN_LABEL: digest}, timeout=config.timeouts.build,
    )  # fmt: skip


def _drop_older_builds(podman: Podman, cache: ImageRef) -> None:
    """One kept build per stand-in: those of earlier inputs go (one a container still runs stays)."""
    listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}", "--filter",
                    f"reference={cache.repository}", check=False)  # fmt: skip
    older = [r for r in listed.stdout.split() if r.startswith(f"{cache.repository}:") and r != str(cache)]
    if older:
        podman("rmi", *older, check=False)


def _fix(ref: ImageRef, config: Config) -> str:
    local = f"`podman load -i <archive>` of a saved copy, or `podman tag <a local image> {ref}`"
    if ref.is_local:
        return (
            f"build it (a service in {config.source_file.name} whose image is {ref.repository}), or {local}"
        )
    return f"`podman pull {ref}` where a registry is reachable, {local}, or an [[images.stand_in]]"
