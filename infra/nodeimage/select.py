"""Which node image a kind cluster boots: configured, kindest/node, or the harness's offline one."""

from __future__ import annotations

from dataclasses import dataclass

from infra.nodeimage import cache
from infra.podman_cli import Podman
from infra.proc import Runner

KINDEST = "kindest/node"


class NodeImageMissing(Exception):
    """No node image kind could boot without a registry; the message says how to get one."""


@dataclass(frozen=True)
class Choice:
    image: str
    reason: str


def kindest_images(podman: Podman) -> list[str]:
    out = podman(
        "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", f"reference={KINDEST}", check=False
    ).stdout
    return sorted({line.strip() for line in out.splitlines() if line.strip() and "<none>" not in line})


def available(podman: Podman, configured: str) -> str:
    """Why a node image can be had without a build, or "" when none can."""
    if configured:
        return f"{configured} (platform.kind_node_image)" if _present(podman, configured) else ""
    found = kindest_images(podman)
    if found:
        return f"{found[-1]} in podman's store"
    st = cache.status(podman)
    return "" if st.state == "missing" else st.line()


def node_image(runner: Runner, podman: Podman, configured: str) -> Choice:
    """The image for `kind create cluster --image`; loads the cached offline image when needed."""
    if configured:
        if not _present(podman, configured):
            raise NodeImageMissing(
                f"platform.kind_node_image {configured} is not in podman's store, and kind cannot pull "
                "it without a registry; next: `podman load -i <archive>` it, or leave kind_node_image "
                "empty to use the harness's offline image (`nox -s node_image`)"
            )
        return Choice(configured, "platform.kind_node_image")
    found = kindest_images(podman)
    if found:
        return Choice(found[-1], "kindest/node found in podman's store")
    st = cache.status(podman)
    if st.state == "missing":
        raise NodeImageMissing(
            f"no kind node image: no {KINDEST} in podman's store and no offline image {st.image} "
            f"(built or cached); next: `nox -s node_image` ({cache.BUILD_COST}), "
            "or set platform.kind_node_image"
        )
    image = cache.ensure(runner, podman)
    return Choice(
        str(image), "the harness's offline image" + (" (loaded from cache)" if st.state == "cached" else "")
    )


def _present(podman: Podman, ref: str) -> bool:
    return podman("image", "exists", ref, check=False).returncode == 0
