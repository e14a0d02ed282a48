"""Images into a registry for a cluster to pull: `podman push`, skipped when the registry already
holds the tag with the same image (its manifest's config digest is podman's image ID).

Credentials are podman's own (its auth file); they are sent to the registry the reference names
and never printed or logged.
"""

from __future__ import annotations

import json
import logging
import os
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from infra.images import ImageRef, in_registry, same_image_id
from infra.podman_cli import Podman

log = logging.getLogger("infra.push")

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
CHECK_TIMEOUT = 10.0


@dataclass(frozen=True)
class Pushed:
    local: ImageRef
    remote: ImageRef
    skipped: bool
    seconds: float

    def line(self) -> str:
        if self.skipped:
            return f"image {self.remote}: already in the registry (same image): push skipped"
        return f"image {self.remote}: pushed in {self.seconds:.1f}s"


def _auth_files() -> list[Path]:
    """Where podman looks, in its order (containers-auth.json(5)), then Docker's."""
    files = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    files += [Path(runtime) / "containers/auth.json", Path.home() / ".config/containers/auth.json"]
    files.append(Path.home() / ".docker/config.json")
    return files


def _basic(host: str) -> str | None:
    """podman's stored `user:password` (base64) for a registry host, if any."""
    for path in _auth_files():
        try:
            auths = json.loads(path.read_text()).get("auths") or {}
        except (OSError, ValueError):
            continue
        for key, entry in auths.items():
            if key.split("/", 1)[0].removeprefix("https://").removeprefix("http://") == host:
                auth = entry.get("auth")
                if auth:
                    return str(auth)
    return None


class _Registry:
    """Just enough of the distribution API to read a tag's config digest."""

    def __init__(self, host: str, insecure: bool) -> None:
        self.host, self.scheme = host, "http" if insecure else "https"
        self._auth: str | None = None  # a header value, once a challenge asked for one

    def _open(self, url: str, accept: str) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(url, headers={"Accept": accept})
        if self._auth:
            req.add_header("Authorization", self._auth)
        try:
            with urllib.request.urlopen(
                req, timeout=CHECK_TIMEOUT, context=ssl.create_default_context()
            ) as r:
                return r.status, dict(r.headers), r.read(1 << 22)
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers or {}), b""

    def _get(self, path: str, accept: str) -> tuple[int, dict[str, str], bytes]:
        url = f"{self.scheme}://{self.host}{path}"
        status, headers, body = self._open(url, accept)
        if status == 401 and self._auth is None:
            self._auth = self._answer(headers.get("WWW-Authenticate") or headers.get("Www-Authenticate", ""))
            if self._auth:
                status, headers, body = self._open(url, accept)
        return status, headers, body

    def _answer(self, challenge: str) -> str:
        basic = _basic(self.host)
        if challenge.lower().startswith("basic"):
            return f"Basic {basic}" if basic else ""
        if not challenge.lower().startswith("bearer"):
            return ""
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", "")
        if not realm:
            return ""
        query = "&".join(f"{k}={urllib.parse.quote(v)}" for k, v in params.items())
        req = urllib.request.Request(f"{realm}?{query}")
        if basic:
            req.add_header("Authorization", f"Basic {basic}")
        try:
            with urllib.request.urlopen(req, timeout=CHECK_TIMEOUT) as r:
                data = json.loads(r.read())
        except (OSError, ValueError):
            return ""
        token = data.get("token") or data.get("access_token")
        return f"Bearer {token}" if token else ""

    def config_digest(self, ref: ImageRef) -> str:
        """The config digest (image ID) of the tag's linux/amd64 image; "" when it has none."""
        _, _, path = ref.repository.partition("/")
        reference = ref.tag
        for _ in range(2):  # an index names the manifest
            status, _, body = self._get(f"/v2/{path}/manifests/{reference}", MANIFEST_TYPES)
            if status != 200:
                return ""
            doc = json.loads(body)
            if "config" in doc:
                return str(doc["config"].get("digest", ""))
            wanted = [
                m
                for m in doc.get("manifests", [])
                if (m.get("platform") or {}).get("architecture") in (None, "amd64")
            ]
            if not wanted:
                return ""
            reference = wanted[0]["digest"]
        return ""


def push(
    podman: Podman, refs: Sequence[ImageRef], registry: str, *, insecure: bool, timeout: float
) -> list[Pushed]:
    """Each image to `registry` under its content tag, unless the registry holds that image already."""
    host = registry.split("/", 1)[0]
    client = _Registry(host, insecure)
    tls = ["--tls-verify=false"] if insecure else []
    done: list[Pushed] = []
    if not refs:
        return done
    # one podman for every ID: each podman start-up costs a quarter second under load
    ids = podman("image", "inspect", "--format", "{{.Id}}", *map(str, refs)).stdout.split()
    for ref, local_id in zip(refs, ids, strict=True):
        start = time.monotonic()
        remote = in_registry(ref, registry)
        try:
            held = client.config_digest(remote)
        except (OSError, ValueError) as err:  # the push says what is wrong with the registry
            log.info("registry check of %s failed (%s): pushing", remote, err)
            held = ""
        if held and same_image_id(local_id, held):
            done.append(Pushed(ref, remote, True, time.monotonic() - start))
            continue
        podman(
            "push", *tls, "--quiet", str(ref), str(remote), timeout=timeout,
            hint=f"check that registry {registry} accepts pushes (`podman login {host}`"
            + ("" if insecure else "; a plain-HTTP registry needs insecure_registry = true") + ")",
        )  # fmt: skip
        done.append(Pushed(ref, remote, False, time.monotonic() - start))
    return done
