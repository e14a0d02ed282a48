"""The kind commands the harness runs, all with the same environment.

kind drives podman itself, so it gets the harness's CONTAINERS_CONF as well as
the provider choice; cluster names are validated before they reach argv.
"""

from __future__ import annotations

from pathlib import Path

from infra.names import check_dns_label
from infra.podman_cli import Podman
from infra.proc import Result, Runner


def kind_env(podman: Podman, provider: str) -> dict[str, str]:
    return {**podman.env, "KIND_EXPERIMENTAL_PROVIDER": provider}


def run_kind(
    runner: Runner,
    podman: Podman,
    provider: str,
    *args: str,
    timeout: float,
    check: bool = True,
    hint: str = "",
) -> Result:
    return runner.run(
        ["kind", *args], timeout=timeout, env=kind_env(podman, provider), check=check, hint=hint
    )


def load_archive_args(archive: Path, cluster: str) -> list[str]:
    """`kind load image-archive`: the only load that works with podman (not docker-image)."""
    return ["load", "image-archive", str(archive), "--name", check_dns_label("cluster", cluster)]
