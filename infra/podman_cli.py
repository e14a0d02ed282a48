"""podman commands the harness issues, with the containers.conf it needs here."""

from __future__ import annotations

import json
import os
import resource
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.images import ImageRef
from infra.names import LABEL
from infra.proc import Result, Runner

# Hosts with hybrid cgroups and a hard RLIMIT_NOFILE below podman's default
# make crun/runc fail at container start; these settings make podman work there.
CONTAINERS_CONF = """\
# written by the e2e harness; used only for the podman commands it runs
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""
PODMAN_DEFAULT_NOFILE = 1048576


def _cgroup_v2_only() -> bool:
    return Path("/sys/fs/cgroup/cgroup.controllers").exists()


def needs_containers_conf() -> tuple[bool, str]:
    """Whether podman needs the harness's containers.conf here, and why."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    reasons = []
    if hard != resource.RLIM_INFINITY and hard < PODMAN_DEFAULT_NOFILE:
        reasons.append(f"hard RLIMIT_NOFILE {hard} < {PODMAN_DEFAULT_NOFILE}")
    if not _cgroup_v2_only():
        reasons.append("cgroups v1/hybrid")
    return bool(reasons), ", ".join(reasons)


CONF_ENV = "E2E_PODMAN_CONF"  # auto | always | never


def podman_env(state_dir: Path, mode: str = "") -> dict[str, str]:
    """CONTAINERS_CONF for the harness's own podman calls (never /etc)."""
    mode = mode or os.environ.get(CONF_ENV, "auto")
    needed, _ = needs_containers_conf()
    if mode == "never" or (mode == "auto" and not needed):
        return {}
    conf = state_dir / "containers.conf"
    if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
        conf.parent.mkdir(parents=True, exist_ok=True)
        tmp = conf.with_name(f".containers.conf.{os.getpid()}")
        tmp.write_text(CONTAINERS_CONF)
        os.replace(tmp, conf)  # concurrent runs never read a half-written file
    return {"CONTAINERS_CONF": str(conf)}


@dataclass
class Podman:
    runner: Runner
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 120

    def __call__(
        self, *args: str, timeout: float | None = None, check: bool = True, hint: str = ""
    ) -> Result:
        return self.runner.run(
            ["podman", *args],
            timeout=timeout or self.timeout,
            env=self.env,
            check=check,
            hint=hint,
        )

    def image_exists(self, ref: ImageRef) -> bool:
        return self("image", "exists", str(ref), check=False).returncode == 0

    def image_id(self, ref: ImageRef) -> str:
        return self("image", "inspect", "--format", "{{.Id}}", str(ref)).stdout.strip()

    def build(
        self,
        ref: ImageRef,
        context: Path,
        containerfile: Path,
        *,
        build_args: Mapping[str, str],
        labels: Mapping[str, str],
        timeout: float,
    ) -> Result:
        argv = ["build", "--file", str(containerfile), "--tag", str(ref)]
        for k, v in sorted(build_args.items()):
            argv += ["--build-arg", f"{k}={v}"]
        for k, v in sorted({LABEL: "true", **labels}.items()):
            argv += ["--label", f"{k}={v}"]
        return self(*argv, str(context), timeout=timeout, hint=f"fix the build of {ref}")

    def import_image(
        self,
        ref: ImageRef,
        archive: Path,
        *,
        entrypoint: Sequence[str] | None,
        changes: Sequence[str] = (),
        labels: Mapping[str, str],
        timeout: float,
    ) -> Result:
        """A one-layer image of a tar's files: what a FROM-scratch build with one COPY commits, for a
        third of its CPU (no build context, no working container). changes: Dockerfile instructions."""
        argv = ["import", "--quiet"]
        if entrypoint is not None:
            argv += ["--change", f"ENTRYPOINT {json.dumps(list(entrypoint))}"]
        for change in changes:
            argv += ["--change", change]
        for k, v in sorted({LABEL: "true", **labels}.items()):
            argv += ["--change", f"LABEL {k}={json.dumps(v)}"]
        return self(*argv, str(archive), str(ref), timeout=timeout, hint=f"fix the import of {ref}")

    def remove_displaced(self) -> None:
        """The harness's images no tag names and no container uses, removed: rebuilding a tag leaves
        the old image so (`podman image prune --filter` took 70 s for four here; rmi takes 0.05)."""
        listed = self("images", "--quiet", "--no-trunc", "--filter", "dangling=true",
                      "--filter", f"label={LABEL}=true", check=False)  # fmt: skip
        ids = listed.stdout.split() if listed.ok else []
        if ids:  # an image a container still uses stays (exit 2); the others go
            self("rmi", *ids, check=False)

    def save(self, refs: Sequence[ImageRef], archive: Path, *, timeout: float) -> Result:
        multi = ["-m"] if len(refs) > 1 else []
        return self(
            "save",
            "--format",
            "docker-archive",
            *multi,
            "-o",
            str(archive),
            *[str(r) for r in refs],
            timeout=timeout,
        )

    def json(self, *args: str) -> Any:
        out = self(*args).stdout.strip()
        return json.loads(out) if out else []

    def containers(self, *filters: str) -> list[dict[str, Any]]:
        """Every container, running or not, matching the filters."""
        result: list[dict[str, Any]] = self.json("ps", "--format", "json", "--all", *_filters(filters)) or []
        return result

    def pods(self, *filters: str) -> list[dict[str, Any]]:
        """Every pod matching the filters."""
        result: list[dict[str, Any]] = self.json("pod", "ps", "--format", "json", *_filters(filters)) or []
        return result

    def remove(self, name: str, *, pod: bool = False, timeout: float | None = None) -> None:
        """A container, or a pod with its containers, stopped with 2 s of grace, whatever state it is
        in; one per call: podman 4.3 removes none if any name of a call is missing."""
        self(*(["pod"] if pod else []), "rm", "--force", "--time", "2", name, timeout=timeout, check=False)


def _filters(filters: tuple[str, ...]) -> list[str]:
    return [arg for f in filters for arg in ("--filter", f)]
