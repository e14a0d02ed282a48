"""A Containerfile that starts `FROM debian:bookworm-slim` builds with no registry, `RUN apt-get
install` included: the harness makes the base with debootstrap once (cached), and never replaces
an image of that name the user has."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from infra.builds import baseimages
from infra.images import ImageRef
from tests.faultkit import REPO, RootFactory

pytestmark = [pytest.mark.podman, pytest.mark.slow]

CONTAINERFILE = """\
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends netbase && rm -rf /var/lib/apt/lists/*
COPY gateway /app
ENTRYPOINT ["/app"]
"""


def test_a_debian_based_containerfile_builds_and_runs_with_no_registry(roots: RootFactory) -> None:
    root = roots.make("from-debian")
    context = root.path / "gateway-image"
    context.mkdir()
    subprocess.run(["go", "build", "-o", str(context / "gateway"), "./gateway"], cwd=REPO / "services",
                   env={**os.environ, "CGO_ENABLED": "0"}, check=True, timeout=300)  # fmt: skip
    (context / "Containerfile").write_text(CONTAINERFILE)
    root.service("gateway", source=str(context), containerfile=str(context / "Containerfile"))
    doctor = root.harness("doctor", "--platform", "podman", timeout=120)
    assert "base image docker.io/library/debian:bookworm-slim:" in doctor.output, str(doctor)

    out = root.e2e("-k", "smoke", timeout=900)

    assert out.code == 0, str(out)
    slim = ImageRef.foreign("debian:bookworm-slim")
    made = f"third-party image {slim}: made"
    assert made in out.output or f"third-party image {slim}: present" in out.output, str(out)
    assert baseimages.provided(slim) is not None and baseimages.provided(slim).archive().is_file()  # type: ignore[union-attr]
    inspected = json.loads(root.podman("image", "inspect", str(slim)))[0]
    assert baseimages.BASE_LABEL in (inspected.get("Labels") or {}) or made not in out.output, inspected

    # the name is there now: the next run takes it as it is (the user's image would be too)
    again = root.e2e("-k", "smoke", timeout=300)
    assert again.code == 0 and f"third-party image {slim}: present" in again.output, str(again)
    assert root.leftovers(again.run_id) == [], str(again)
