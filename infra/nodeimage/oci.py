"""OCI image archives written directly: the node's preloaded images need no registry and no podman store.

One archive holds every image (an index entry per name), which containerd
imports in one `ctr images import`. Layers are gzip tarballs with fixed
owners and times, so the same inputs give the same digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
PATH_ENV = "PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin"
CONTAINERD_NAME = "io.containerd.image.name"
OCI_REF = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class Blob:
    digest: str  # sha256:<hex> of the stored (compressed) bytes
    size: int
    diff_id: str = ""  # sha256 of the uncompressed tar, for layers
    path: Path | None = None
    data: bytes = b""


@dataclass(frozen=True)
class Image:
    name: str  # registry.k8s.io/etcd:3.7.0-0
    layers: tuple[Blob, ...]
    entrypoint: tuple[str, ...] = ()
    env: tuple[str, ...] = (PATH_ENV,)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def json_blob(doc: dict[str, Any]) -> Blob:
    data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return Blob(_digest(data), len(data), data=data)


class _HashingWriter(io.RawIOBase):
    """Counts and hashes what passes through to the file below."""

    def __init__(self, target: io.BufferedWriter) -> None:
        self.target, self.sha, self.size = target, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.sha.update(data)
        self.size += len(data)
        self.target.write(data)
        return len(data)


def _fixed(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def write_layer(out: Path, fill: Callable[[tarfile.TarFile], None]) -> Blob:
    """A gzip layer whose tar content `fill` adds; returns its digest and diff_id."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as raw:
        zipped = _HashingWriter(raw)
        with gzip.GzipFile(fileobj=zipped, mode="wb", compresslevel=1, mtime=0) as gz:
            plain = _HashingWriter(gz)  # type: ignore[arg-type]
            with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                fill(tar)
    return Blob("sha256:" + zipped.sha.hexdigest(), zipped.size, "sha256:" + plain.sha.hexdigest(), path=out)


def add_dirs(tar: tarfile.TarFile, *dirs: str) -> None:
    for d in dirs:
        info = _fixed(tarfile.TarInfo(d))
        info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
        tar.addfile(info)


def binary_layer(out: Path, binary: Path, dest: str = "usr/local/bin") -> Blob:
    """One static binary at /<dest>/<name>, plus /tmp (Go's os.TempDir)."""

    def fill(tar: tarfile.TarFile) -> None:
        parts = dest.split("/")
        add_dirs(tar, "tmp", *("/".join(parts[: i + 1]) for i in range(len(parts))))
        info = _fixed(tar.gettarinfo(str(binary), arcname=f"{dest}/{binary.name}"))
        info.mode = 0o755
        with binary.open("rb") as fh:
            tar.addfile(info, fh)

    return write_layer(out, fill)


def filtered_layer(out: Path, source_tar: Path, skip: Callable[[str], bool]) -> Blob:
    """A layer of a root filesystem tar without the members `skip` names."""

    def fill(tar: tarfile.TarFile) -> None:
        kept: set[str] = set()
        with tarfile.open(source_tar) as src:
            for member in src:
                name = member.name.removeprefix("./")
                if not name or skip(name):
                    continue
                if member.islnk() and member.linkname.removeprefix("./") not in kept:
                    continue
                member.name = name
                if member.islnk():
                    member.linkname = member.linkname.removeprefix("./")
                kept.add(name)
                tar.addfile(member, src.extractfile(member) if member.isreg() else None)

    return write_layer(out, fill)


def _config(image: Image) -> Blob:
    cfg: dict[str, Any] = {"Env": list(image.env)}
    if image.entrypoint:
        cfg["Entrypoint"] = list(image.entrypoint)
    return json_blob(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in image.layers]},
        }
    )


@dataclass
class Archive:
    """An OCI image layout tar with one index entry per image name."""

    images: list[Image] = field(default_factory=list)

    def write(self, out: Path) -> Path:
        blobs: dict[str, Blob] = {}
        entries = []
        for image in self.images:
            config = _config(image)
            manifest = json_blob(
                {
                    "schemaVersion": 2,
                    "mediaType": MANIFEST,
                    "config": {"mediaType": CONFIG, "digest": config.digest, "size": config.size},
                    "layers": [
                        {"mediaType": LAYER, "digest": layer.digest, "size": layer.size}
                        for layer in image.layers
                    ],
                }
            )
            for blob in (config, manifest, *image.layers):
                blobs[blob.digest] = blob
            entries.append(
                {
                    "mediaType": MANIFEST,
                    "digest": manifest.digest,
                    "size": manifest.size,
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {CONTAINERD_NAME: image.name, OCI_REF: image.name.rsplit(":", 1)[1]},
                }
            )
        index = json.dumps({"schemaVersion": 2, "manifests": entries}, indent=1).encode()
        layout = b'{"imageLayoutVersion":"1.0.0"}'
        tmp = out.with_name(out.name + ".partial")
        out.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, "oci-layout", layout)
            _add_bytes(tar, "index.json", index)
            for blob in blobs.values():
                name = "blobs/sha256/" + blob.digest.removeprefix("sha256:")
                if blob.path is not None:
                    tar.add(str(blob.path), arcname=name, filter=_fixed)
                else:
                    _add_bytes(tar, name, blob.data)
        shutil.move(tmp, out)
        return out


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = _fixed(tarfile.TarInfo(name))
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def names(images: Iterable[Image]) -> Sequence[str]:
    return sorted(i.name for i in images)
