"""e2e.toml loaded into frozen, typed objects; bad keys name their path and file."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from infra.names import check_dns_label, check_image_path

DEFAULT_CONFIG = Path("e2e.toml")


class ConfigError(Exception):
    """The config file is missing, not TOML, or has a bad key or value."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Seconds = Annotated[float, Field(gt=0)]
Port = Annotated[int, Field(ge=0, le=65535)]


ImagePath = Annotated[str, Field(pattern=r"^(/[^/]+)+$")]


class Layout(_Model):
    """An image laid out like the repo's Dockerfile's final stage, with no base image: its mains at
    their paths, repo files and directories, a working directory, a user, env, entrypoint and cmd."""

    binary: ImagePath = Field(default="/app", description="where the service's main goes")
    binaries: dict[ImagePath, str] = Field(
        default_factory=dict, description="more mains: image path -> package"
    )
    files: dict[ImagePath, Path] = Field(
        default_factory=dict,
        description="image path -> a file or directory of the repo (relative to the config)",
    )
    workdir: str = ""
    user: str = Field(default="", description="uid[:gid], or a name (the harness writes /etc/passwd for it)")
    env: dict[str, str] = Field(default_factory=dict)
    entrypoint: tuple[str, ...] | None = Field(default=None, description="default: [binary]")
    cmd: tuple[str, ...] = ()

    @field_validator("binaries", "files")
    @classmethod
    def _no_dotdot(cls, v: dict[str, Any]) -> dict[str, Any]:
        for dest in v:
            if ".." in dest.split("/"):
                raise ValueError(f"image path {dest!r}: no '..' in it")
        return v

    @field_validator("user")
    @classmethod
    def _user(cls, v: str) -> str:
        if v and not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}|\d+(:\d+)?", v):
            raise ValueError(f"user {v!r}: a uid[:gid] or a user name")
        return v


class Service(_Model):
    """One Go service: how to build its image and how to reach it."""

    name: str
    source: Path = Field(description="Go module directory, relative to the config file")
    main: str = Field(default=".", description="Go main package inside the module")
    image: str = Field(description="image repository, e.g. localhost/team/api")
    containerfile: Path | None = Field(
        default=None, description="the team's own Containerfile instead of the host go build"
    )
    build_args: dict[str, str] = Field(default_factory=dict)
    node_port: Port = Field(default=0, description="NodePort the Service publishes")
    host_port: Port = Field(default=0, description="127.0.0.1 port; 0 picks a free one per run")
    ready_path: str = "/ready"
    depends_on: tuple[str, ...] = ()
    layout: Layout | None = Field(default=None, description="the image laid out like the repo's Dockerfile")

    def mains(self) -> dict[str, str]:
        """Image path -> main package of every binary the service's image holds."""
        layout = self.layout or Layout()
        return {layout.binary: self.main, **layout.binaries}

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_dns_label("service", v)

    @model_validator(mode="after")
    def _layout_needs_the_host_build(self) -> Service:
        if self.layout is not None and self.containerfile is not None:
            raise ValueError("layout lays out the image the harness builds: drop it, or drop containerfile")
        return self

    @model_validator(mode="after")
    def _build_args_need_a_containerfile(self) -> Service:
        if self.build_args and self.containerfile is None:
            raise ValueError(
                "build_args go to a containerfile's build: set containerfile, or remove them (without one,"
                " the harness copies the host's go build into an empty image and no build arg reaches it)"
            )
        return self

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        if ":" in v.rsplit("/", 1)[-1] or "@" in v:
            raise ValueError("give the repository only: the harness computes the tag")
        return check_image_path(v)


class ClusterTarget(_Model):
    """A Kubernetes cluster the harness never creates or deletes (`--platform cluster`); the environment
    variables E2E_KUBECONFIG, E2E_CONTEXT, E2E_REGISTRY and E2E_INSECURE_REGISTRY win over these."""

    kubeconfig: Path | None = None
    context: str = Field(default="", description="named, never the kubeconfig's current one by default")
    registry: str = Field(default="", description="host[:port][/path] the nodes pull the run's images from")
    insecure_registry: bool = Field(default=False, description="plain HTTP to the registry")
    namespace: str = Field(default="", description="an existing namespace to run in (else one per run)")
    mirror_third_party: bool = Field(default=False, description="push third-party images too")
    cluster_scoped: Literal["refuse", "allow"] = "refuse"

    @field_validator("namespace")
    @classmethod
    def _ns(cls, v: str) -> str:
        return check_dns_label("namespace", v) if v else v


class Platform(_Model):
    default: Literal["auto", "kind", "podman", "cluster"] = "auto"
    kind_config: Path = Path("kind/cluster.yaml")
    kind_workers: Annotated[int, Field(ge=0, le=8)] = 1
    kind_node_image: str = ""
    kind_provider: Literal["podman", "docker"] = "podman"
    namespace: str = "e2e"
    cluster: ClusterTarget = ClusterTarget()

    @field_validator("namespace")
    @classmethod
    def _ns(cls, v: str) -> str:
        return check_dns_label("namespace", v, max_len=30)


class StandIn(_Model):
    """A local build standing in for a registry image where no registry is reachable."""

    image: str = Field(description="the full reference the manifests use, with its tag")
    source: Path = Field(description="Go module directory (or, with containerfile, the build context)")
    main: str = "."
    containerfile: Path | None = Field(
        default=None, description="build it from this Containerfile instead (e.g. FROM debian + apt-get)"
    )

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        if "@" in v or ":" not in v.rsplit("/", 1)[-1]:
            raise ValueError("give the full reference with its tag, as the manifests use it")
        return v


class Images(_Model):
    """Images the harness does not build: used as they are, by their full reference."""

    pull: Literal["missing", "never", "always"] = "missing"
    stand_in: tuple[StandIn, ...] = ()


class Timeouts(_Model):
    command: Seconds = 120
    build: Seconds = 300
    pull: Seconds = 300
    job: Seconds = 300
    cluster: Seconds = 300
    load: Seconds = 300
    deploy: Seconds = 60
    ready: Seconds = 60
    stop: Seconds = 20
    tests: Seconds = 1200


class Coverage(_Model):
    mount: str = "/coverdata"
    go_module: Path | None = Field(
        default=None, description="the one module the reports resolve; default: every service's module"
    )
    fail_under: Annotated[float, Field(ge=0, le=100)] = 0
    flush_signal: Literal["SIGUSR1", "SIGUSR2", "SIGHUP", "SIGWINCH", "off"] = Field(
        default="SIGUSR1", description="signal on which -cover services write their counters; off: never"
    )
    flush_timeout: Seconds = 30
    pull_port: Annotated[int, Field(ge=1, le=65535)] = Field(
        default=9099, description="--platform cluster: the port -cover services serve their counters on"
    )


class Tests(_Model):
    path: Path = Path("e2e")
    workers: str = "auto"
    reruns: Annotated[int, Field(ge=0, le=5)] = 1
    serial_marker: str = "disruptive"


class HelmChart(_Model):
    """A Helm chart as a manifest source: rendered with `helm template` (helm pinned, built once)."""

    chart: Path = Field(description="the chart's directory, relative to the config file")
    release: str = "e2e"
    values: tuple[Path, ...] = Field(default=(), description="values files, relative to the config file")
    set: dict[str, str] = Field(default_factory=dict, description="--set KEY=VALUE, in key order")

    @field_validator("release")
    @classmethod
    def _release(cls, v: str) -> str:
        return check_dns_label("release", v, max_len=53)


ManifestSource = Path | HelmChart
"""A YAML file, a kustomization directory (rendered with kustomize), or a Helm chart."""


class Config(_Model):
    """The whole of e2e.toml. Paths are resolved against the file's directory."""

    root: Path = Field(default=Path("."), exclude=True)
    source_file: Path = Field(default=DEFAULT_CONFIG, exclude=True)
    services: tuple[Service, ...]
    manifests: tuple[ManifestSource, ...]
    platform: Platform = Platform()
    images: Images = Images()
    timeouts: Timeouts = Timeouts()
    coverage: Coverage = Coverage()
    tests: Tests = Tests()

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        names = [s.name for s in self.services]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"service names must be unique: {sorted(dupes)}")
        for attr in ("node_port", "host_port"):
            used = [getattr(s, attr) for s in self.services if getattr(s, attr)]
            clash = sorted({p for p in used if used.count(p) > 1})
            if clash:
                raise ValueError(f"{attr} values must be unique across services: {clash}")
        for svc in self.services:
            for dep in svc.depends_on:
                if dep not in names:
                    raise ValueError(f"service {svc.name!r} depends on unknown service {dep!r}")
        return self

    def service(self, name: str) -> Service:
        for svc in self.services:
            if svc.name == name:
                return svc
        raise KeyError(f"no service {name!r} in {self.source_file}; known: {self.names()}")

    def names(self) -> list[str]:
        return [s.name for s in self.services]

    def path(self, p: Path) -> Path:
        return p if p.is_absolute() else (self.root / p)

    def coverage_modules(self) -> list[Path]:
        """coverage.go_module, else every Go module a service is built from (reports span them all)."""
        if self.coverage.go_module is not None:
            return [self.path(self.coverage.go_module)]
        return sorted({self.path(s.source).resolve() for s in self.services})


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not part.startswith("function-"):
            out += ("." if out else "") + part
    return out or "(top level)"


def format_errors(err: ValidationError, file: Path) -> str:
    lines = [f"invalid config {file}:"]
    for e in err.errors():
        where = _key_path(tuple(e["loc"]))
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {where}: {msg}")
    lines.append("next: fix the keys above (see README: The config file)")
    return "\n".join(lines)


def parse(data: dict[str, Any], file: Path) -> Config:
    file = file.resolve()
    try:
        return Config.model_validate({**data, "root": file.parent, "source_file": file})
    except ValidationError as err:
        raise ConfigError(format_errors(err, file)) from None


def load(path: Path | str | None = None) -> Config:
    file = Path(path) if path else DEFAULT_CONFIG
    try:
        data = tomllib.loads(file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {file} not found; next: pass --config PATH") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {file} cannot be read: {err}; next: pass --config PATH") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {file} is not valid TOML: {err}") from None
    for reserved in ("root", "source_file"):
        if reserved in data:
            raise ConfigError(f"invalid config {file}:\n  {reserved}: unknown key")
    return parse(data, file)
