"""Image references: the ONE place that knows podman's `localhost/` prefix and registry names.

podman stores `team/api:tag` as `localhost/team/api:tag`, `podman save` keeps
that in RepoTags and containerd in a kind node keeps it as is, so a Pod must
reference the `localhost/...` form. Every reference the harness hands to a
command, a manifest or a state file comes from `ImageRef.__str__`.

An image the harness does not build (a third-party one) is the opposite case:
Kubernetes reads `redis:7` as `docker.io/library/redis:7`, so `ImageRef.foreign`
spells it out that way, and never as `localhost/`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from infra.names import InvalidName, check_image_path, check_tag

LOCAL_REGISTRY = "localhost"
DEFAULT_REGISTRY = "docker.io"  # where Kubernetes (and containerd) look for a name without one
DIGEST_PREFIX = "sha256:"


def _has_registry(first: str) -> bool:
    return "." in first or ":" in first or first == LOCAL_REGISTRY


@dataclass(frozen=True, order=True)
class ImageRef:
    repository: str  # always fully qualified: localhost/team/api
    tag: str

    @classmethod
    def parse(cls, ref: str) -> ImageRef:
        """Parse `name[:tag]`, qualifying a registry-less name with `localhost/`."""
        name, tag = ref, "latest"
        last = ref.rsplit("/", 1)[-1]
        if ":" in last:
            name, tag = ref.rsplit(":", 1)
        return cls(qualify(name), check_tag(tag))

    @classmethod
    def foreign(cls, ref: str) -> ImageRef:
        """A third-party reference as Kubernetes reads it: `redis:7` -> `docker.io/library/redis:7`."""
        if "@" in ref:
            raise InvalidName(
                f"image {ref!r}: a digest reference cannot be loaded into kind nodes by name; "
                "next: reference it by a tag (podman tag it locally if needed)"
            )
        name, tag = ref, "latest"
        if ":" in ref.rsplit("/", 1)[-1]:
            name, tag = ref.rsplit(":", 1)
        return cls(check_image_path(normalize_repository(name)), check_tag(tag))

    @property
    def is_local(self) -> bool:
        """Only in podman's store: there is no registry to pull it from."""
        return self.repository.split("/", 1)[0] == LOCAL_REGISTRY

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}"


_REGISTRY = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")


def check_registry(value: str) -> str:
    """`host[:port][/path]`: where `--platform cluster` pushes (E2E_REGISTRY, platform.cluster.registry)."""
    if not _REGISTRY.match(value) or value.split("/", 1)[0] == LOCAL_REGISTRY:
        raise InvalidName(
            f"invalid registry {value!r}: give host[:port][/path], e.g. localhost:5001 or "
            "registry.example.com/team (not `localhost` alone: that is podman's store)"
        )
    return value


def in_registry(ref: ImageRef, registry: str) -> ImageRef:
    """The same image as the cluster pulls it from `registry`, with the same tag: the harness's own
    `localhost/team/api` becomes `<registry>/team/api`; a third-party `docker.io/library/redis` keeps
    its registry as a path part, `<registry>/docker.io/library/redis`, so two sources never meet."""
    path = ref.repository.split("/", 1)[1] if ref.is_local else ref.repository
    return ImageRef(check_image_path(f"{check_registry(registry)}/{path}"), ref.tag)


STAND_IN_CACHE = f"{LOCAL_REGISTRY}/e2e-harness/stand-in"


def stand_in_cache(ref: ImageRef, digest: str) -> ImageRef:
    """Where a stand-in's build is kept between runs, by its inputs' digest: the registry's name is
    tagged onto it for a run only (a PostgreSQL stand-in takes a minute to build, a tag no time)."""
    return ImageRef(check_image_path(f"{STAND_IN_CACHE}/{ref.repository}"), check_tag(digest))


DOCKER_HUB_ALIASES = (DEFAULT_REGISTRY, "index.docker.io", "registry-1.docker.io")


def normalize_repository(name: str) -> str:
    """As containerd and the kubelet name it: `redis`, `docker.io/redis` and `index.docker.io/library/redis`
    are all `docker.io/library/redis`."""
    first, _, rest = name.partition("/")
    if not rest or not _has_registry(first):
        first, rest = DEFAULT_REGISTRY, name
    if first in DOCKER_HUB_ALIASES:
        first = DEFAULT_REGISTRY
        if "/" not in rest:
            rest = f"library/{rest}"
    return f"{first}/{rest}"


def qualify(repository: str) -> str:
    """`team/api` -> `localhost/team/api`; a name with a registry is kept as is."""
    check_image_path(repository)
    first = repository.split("/", 1)[0]
    return repository if _has_registry(first) else f"{LOCAL_REGISTRY}/{repository}"


def same_image_id(a: str, b: str) -> bool:
    """podman prints bare hex ids, crictl `sha256:<hex>`: compare without prefix."""
    return bool(a) and a.removeprefix(DIGEST_PREFIX) == b.removeprefix(DIGEST_PREFIX)


SKIP_DIRS = {".git", "__pycache__"}


def context_files(source: Path, outputs: Iterable[Path] = ()) -> list[Path]:
    """Every file of a Containerfile's build context (COPY may take any), not the harness's outputs."""
    files = []
    skip = [o.resolve() for o in outputs]
    for path in sorted(source.rglob("*")):
        if skip and any(path.resolve().is_relative_to(o) for o in skip):
            continue  # e2e.toml inside the context: artifacts/ and coverage/ would churn the tag
        rel = path.relative_to(source)
        if any(part in SKIP_DIRS for part in rel.parts[:-1]) or not path.is_file():
            continue
        files.append(path)
    return files


def files_digest(base: Path, files: Iterable[Path]) -> str:
    """One hash of these files' paths (relative to base) and contents."""
    digest = hashlib.sha256()
    for path in sorted(files):
        name = os.path.relpath(path, base).replace(os.sep, "/")
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def content_tag(
    tree: str,
    *,
    main: str,
    build_args: Mapping[str, str],
    coverage: bool,
    extra: Iterable[Path] = (),
    toolchain: str = "",
    flush: str = "",
) -> str:
    """The tag: a hash of the inputs' digest, build args, main package, coverage on/off, Go.

    flush: the coverage flush file and its signal (coverflush.tag_input), part of coverage images.
    """
    digest = hashlib.sha256()
    header = {"tree": tree, "main": main, "args": dict(sorted(build_args.items())), "cover": coverage,
              "go": toolchain}  # fmt: skip
    if flush:
        header["flush"] = flush
    digest.update(json.dumps(header, sort_keys=True).encode())
    for path in extra:
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return ("cov-" if coverage else "") + digest.hexdigest()[:16]
