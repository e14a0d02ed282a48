"""A Containerfile that starts `FROM debian:bookworm-slim` builds with no registry, `RUN apt-get
install` included: the harness makes the base with debootstrap once (cached), and never replaces
an image of that name the user has."""

from __future__ import annotations

import json
import os
import secrets
import subprocess

import pytest

from infra.builds import baseimages
from infra.images import ImageRef
from tests.faultkit import REPO, RootFactory, deployment_yaml, service_yaml
from tests.test_init_real_repo import REDIS_PORT

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


REDIS_CONTAINERFILE = """\
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends redis-server && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["redis-server", "--protected-mode", "no"]
"""


def test_redis_from_debians_package_stands_in_for_the_registry_image(roots: RootFactory) -> None:
    """A third-party image made here from a Containerfile (FROM debian + apt-get install redis-server)."""
    root = roots.make("redis-stand-in")
    tag = secrets.token_hex(3)
    context = root.path / "stand-ins" / "redis"
    context.mkdir(parents=True)
    (context / "Containerfile").write_text(REDIS_CONTAINERFILE)
    image = f"docker.io/redis:7.0-e2eh-{tag}"
    root.data["images"]["stand_in"].append(
        {"image": image, "source": str(context), "containerfile": str(context / "Containerfile")}
    )
    root.write_config()
    redis = deployment_yaml("redis", image, port=REDIS_PORT, exec_probe=["redis-cli", "ping"])
    root.append_manifest("gateway.yaml", redis + "---\n" + service_yaml("redis", REDIS_PORT))

    out = root.e2e("-k", "smoke", timeout=900)

    assert out.code == 0, str(out)
    assert f"third-party image docker.io/library/redis:7.0-e2eh-{tag}: stand-in built from {context}" in (
        out.output
    ), str(out)
    assert root.leftovers(out.run_id) == [], str(out)
    # a stand-in made here does not stay behind under the registry's name
    assert not root.podman("images", "--quiet", image, check=False).strip()
