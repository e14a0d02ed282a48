"""What every platform offers the run and the E2E fixtures, and how one is chosen."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from infra import waits
from infra.checks import Check
from infra.config import Config
from infra.gocover import coverflush
from infra.images import ImageRef
from infra.paths import RunPaths
from infra.platforms.manifests import Doc, Rendered
from infra.podman_cli import Podman
from infra.proc import Runner


class PlatformError(Exception):
    """A platform step failed; the message names the object and the next step."""


class ImageMissing(PlatformError):
    pass


@dataclass
class Context:
    config: Config
    paths: RunPaths
    runner: Runner
    podman: Podman
    coverage: bool = False
    coverage_via: str = "signal"  # the provider's (Platform.coverage_via): with coverage, the mode
    host_ports: Mapping[int, int] = field(default_factory=dict)  # nodePort -> 127.0.0.1 port
    cluster: str = ""  # kind: cluster name
    reuse: bool = False  # kind: the cluster was not ours to create or delete
    rendered: Rendered = field(default_factory=lambda: Rendered([]))
    """What the run deploys (podman plans its network from it); empty when read back from state."""

    @property
    def coverage_mode(self) -> coverflush.CoverageMode:
        return coverflush.resolve(self.coverage, self.config, self.coverage_via)

    @property
    def run_id(self) -> str:
        return self.paths.run_id

    def endpoint(self, service: str) -> str:
        svc = self.config.service(service)
        if not svc.node_port:
            raise PlatformError(f"service {service!r} has no node_port in {self.config.source_file}")
        return f"http://127.0.0.1:{self.host_ports[svc.node_port]}"

    def wait_served(self, service: str) -> None:
        """The service answers its ready_path on its published port (rolled out is not yet served)."""
        if service not in self.config.names():
            return  # objects deployed outside a configured service have no endpoint
        svc = self.config.service(service)
        if svc.node_port and svc.ready_path:
            url = self.endpoint(service) + svc.ready_path
            waits.wait_http(
                url,
                timeout=self.config.timeouts.ready,
                what=f"service {service} at {url}",
                hint=f"inspect the logs of {service}",
            )


@dataclass(frozen=True)
class Sweep:
    """What a cleanup asks of a provider (Platform.clean)."""

    older_than: float  # seconds
    dry_run: bool = False
    all_: bool = False  # kind: every harness cluster, whatever its age
    keep_images: bool = False


Swept = tuple[list[str], list[str]]
"""(removed, left with why)"""


@dataclass(frozen=True)
class Request:
    """What a run asks of a provider, answered before anything starts (Platform.refusals)."""

    config: Config
    docs: Callable[[], list[Doc]]  # the manifests' documents, read on demand
    coverage: bool = False
    reuse: str = ""
    keeps_stack: bool = False  # `up`: the stack outlives the command


class Platform(Protocol):
    """A provider: the platform a run uses, and what it declares about itself (its images step, its
    refusals, its doctor checks, what cleanup removes), so that no other module compares its name."""

    name: str
    images_step: str
    """How the images reach the nodes, a setup phase after the builds: load, push, or "" (podman's own)."""
    brings_third_party: bool
    """Whether third-party images come from podman's store (else the cluster pulls them itself)."""
    on_this_machine: bool
    """Whether what a run makes lives on this machine (podman objects, kind nodes), for cleanup to see."""
    coverage_via: str
    """How -cover services' counters reach the harness: "signal" (a flush into a directory the harness
    reads, then the graceful stop's) or "pull" (served over HTTP through a port-forward)."""
    ctx: Context

    def create(self) -> None: ...
    def load_images(self, refs: Sequence[ImageRef]) -> None: ...
    def verify_images(self, rendered: Rendered) -> None: ...
    def deploy(self, service: str, docs: list[Doc]) -> None: ...
    def wait_ready(self, service: str) -> None: ...
    def restart(self, service: str) -> None: ...
    def stop(self, service: str) -> None: ...
    def start(self, service: str) -> None: ...
    def logs(self, service: str) -> str: ...
    def stop_gracefully(self) -> dict[str, str]: ...
    def collect_diagnostics(self, into: Path) -> None: ...
    def teardown(self) -> None: ...
    def state(self) -> dict[str, object]: ...
    def inspect_command(self) -> str: ...
    @classmethod
    def refusals(cls, request: Request) -> list[str]:
        """What this provider cannot do for the run (each line naming the fix); notices are said."""
        ...

    @classmethod
    def clean(cls, config: Config, runner: Runner, podman: Podman, what: Sweep) -> Swept:
        """What earlier runs left on this provider and only that: (removed, left with why)."""
        ...

    @classmethod
    def doctor(cls, config: Config, runner: Runner, podman: Podman, *, cached: bool) -> list[Check]:
        """Its own preflight checks (cached: a run's, which skips what cannot have changed)."""
        ...

    def flush_coverage(self, services: Sequence[str] | None = None) -> dict[str, list[str]]:
        """Signal the running processes of the services (all: None) to write their coverage
        counters and wait for the files (coverflush.flush); service -> the new files."""
        ...


@dataclass(frozen=True)
class Choice:
    name: str
    reason: str


def choose(flag: str | None, config: Config, podman: Podman) -> Choice:
    """--platform, else platform.default; auto: kind when kind and a usable node image are here."""
    requested = flag or config.platform.default
    if requested in ("kind", "podman", "cluster"):
        where = "--platform" if flag else f"platform.default in {config.source_file}"
        return Choice(requested, f"requested with {where}")
    from infra.nodeimage import select

    kind = shutil.which("kind")
    if kind is None:
        return Choice("podman", "auto: no kind binary on PATH")
    image = select.available(podman, config.platform.kind_node_image)
    if not image:
        return Choice(
            "podman",
            f"auto: kind at {kind} but no node image (kindest/node, or the offline one: `nox -s node_image`)",
        )
    return Choice("kind", f"auto: kind at {kind} and node image {image}")
