"""Image references: the ONE place that knows podman's `localhost/` prefix.

podman stores `team/api:tag` as `localhost/team/api:tag`, `podman save` keeps
that in RepoTags and containerd in a kind node keeps it as is, so a Pod must
reference the `localhost/...` form. Every reference the harness hands to a
command, a manifest or a state file comes from `ImageRef.__str__`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.names import check_image_path, check_tag

LOCAL_REGISTRY = "localhost"
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

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}"


def qualify(repository: str) -> str:
    """`team/api` -> `localhost/team/api`; a name with a registry is kept as is."""
    check_image_path(repository)
    first = repository.split("/", 1)[0]
    return repository if _has_registry(first) else f"{LOCAL_REGISTRY}/{repository}"


def same_image_id(a: str, b: str) -> bool:
    """podman prints bare hex ids, crictl `sha256:<hex>`: compare without prefix."""
    return bool(a) and a.removeprefix(DIGEST_PREFIX) == b.removeprefix(DIGEST_PREFIX)


BUILD_INPUT_SUFFIXES = (".go", ".mod", ".sum", ".s", ".c", ".h", ".tmpl", ".json", ".yaml")
BUILD_INPUT_NAMES = ("Containerfile", "Dockerfile", "go.work", "go.work.sum")
SKIP_DIRS = {".git", "bin", "testdata", "vendor-cache", "__pycache__"}


def build_inputs(source: Path, outputs: Iterable[Path] = ()) -> list[Path]:
    """Files whose content decides the image: Go sources and build files, never the harness's outputs."""
    files = []
    skip = [o.resolve() for o in outputs]
    for path in sorted(source.rglob("*")):
        if skip and any(path.resolve().is_relative_to(o) for o in skip):
            continue  # e2e.toml inside the module: artifacts/ and coverage/ would churn the tag
        rel = path.relative_to(source)
        if any(part in SKIP_DIRS or part.startswith(".") for part in rel.parts[:-1]):
            continue
        if not path.is_file() or path.name.endswith("_test.go"):
            continue
        if path.suffix in BUILD_INPUT_SUFFIXES or path.name in BUILD_INPUT_NAMES:
            files.append(path)
    return files


def _hash_files(digest: Any, files: Iterable[tuple[str, Path]]) -> None:
    for name, path in files:
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())


def tree_digest(source: Path, outputs: Iterable[Path] = ()) -> str:
    """One hash of every build input under source (services sharing a module read it once)."""
    digest = hashlib.sha256()
    _hash_files(digest, ((p.relative_to(source).as_posix(), p) for p in build_inputs(source, outputs)))
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
    """The tag: a hash of the source tree, build args, main package, coverage on/off, Go.

    flush: the coverage flush file and its signal (coverflush.tag_input), part of coverage images.
    """
    digest = hashlib.sha256()
    header = {"tree": tree, "main": main, "args": dict(sorted(build_args.items())), "cover": coverage,
              "go": toolchain}  # fmt: skip
    if flush:
        header["flush"] = flush
    digest.update(json.dumps(header, sort_keys=True).encode())
    _hash_files(digest, ((p.name, p) for p in extra))
    return ("cov-" if coverage else "") + digest.hexdigest()[:16]
