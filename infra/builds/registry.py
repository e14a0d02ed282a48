"""A container registry with no registry to pull it from: distribution's, built from the Go module
proxy once per version (cached like helm), in a one-layer image of its static binary.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from pathlib import Path

from infra.builds import gotool
from infra.images import ImageRef
from infra.paths import user_cache
from infra.podman_cli import Podman
from infra.proc import Runner

MODULE = "github.com/distribution/distribution/v3/cmd/registry"
VERSION = "v3.1.2"
"""`go install` builds it in about 6 min cold (a minute with Go's caches warm), 75 MiB."""
BUILD_TIMEOUT = 1800.0
PORT = 5000  # inside its container
CONFIG_PATH = "/etc/distribution/config.yml"
CONFIG = f"""\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: :{PORT}
"""


def binary_path(version: str = VERSION) -> Path:
    return user_cache("registry") / version / "registry"


def binary(runner: Runner, version: str = VERSION) -> Path:
    return gotool.installed(runner, MODULE, version, binary_path(version), timeout=BUILD_TIMEOUT)


def image_ref(version: str = VERSION) -> ImageRef:
    return ImageRef.parse(f"e2e-harness/registry:{version}")


def image(runner: Runner, podman: Podman, version: str = VERSION) -> ImageRef:
    """The registry's image in podman's store: made from the cached binary when missing (seconds)."""
    ref = image_ref(version)
    if podman.image_exists(ref):
        return ref
    path = binary(runner, version)
    with tempfile.TemporaryDirectory(prefix="registry-image-") as tmp:
        archive = Path(tmp) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(path, arcname="registry")
            data = CONFIG.encode()
            info = tarfile.TarInfo(CONFIG_PATH.lstrip("/"))
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        podman.import_image(
            ref,
            archive,
            entrypoint=["/registry", "serve", CONFIG_PATH],
            # v3 exports OpenTelemetry traces by default, to a collector that is not there
            changes=["ENV OTEL_TRACES_EXPORTER=none", f"EXPOSE {PORT}"],
            labels={"io.e2e-harness.registry": version},
            timeout=300,
        )
    return ref
