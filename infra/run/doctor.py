"""Preflight: can this machine run the harness? One line per problem, naming the fix.

Runs as `inv doctor` and as the first phase of every run, so a missing tool,
a podman that cannot start containers, a busy port or a leftover of an
earlier run is explained in seconds instead of surfacing as a timeout.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from infra.builds import baseimages, gotool, third_party
from infra.checks import Check, check_tool
from infra.config import Config
from infra.names import RUN_LABEL
from infra.platforms import ports
from infra.platforms.stack import platform_class
from infra.podman_cli import Podman, needs_containers_conf
from infra.proc import CommandError, Runner

MIN_PODMAN = (4, 0)
MIN_FREE_BYTES = 2 * 1024**3
PROBE_SOURCE = "package main\n\nfunc main() {}\n"


class PreflightFailed(Exception):
    def __init__(self, checks: list[Check]) -> None:
        self.checks = checks
        super().__init__("preflight failed:\n" + "\n".join(c.line() for c in checks if not c.ok))


def check_go(config: Config, runner: Runner) -> Check:
    """Which Go the harness uses and why (infra.builds.gotool); activated for the checks after it."""
    try:
        choice = gotool.ensure(gotool.config_go_mods(config), runner)
    except gotool.GoNotFound as err:
        detail, _, fix = str(err).partition("; next: ")
        return Check("go", False, detail, fix)
    return Check("go", True, choice.line())


def check_podman_runs(runner: Runner, podman: Podman, state_dir: Path) -> Check:
    """Start a real container from a tiny local rootfs (no registry needed)."""
    rootfs = state_dir / "probe" / "rootfs"
    binary = rootfs / "probe"
    if not binary.exists():
        src = state_dir / "probe" / "src"
        src.mkdir(parents=True, exist_ok=True)
        (src / "main.go").write_text(PROBE_SOURCE)
        (src / "go.mod").write_text("module probe\n\ngo 1.22\n")
        rootfs.mkdir(parents=True, exist_ok=True)
        runner.run(
            ["go", "build", "-o", str(binary.resolve()), "."],
            timeout=180,
            cwd=src,
            env={"CGO_ENABLED": "0", "GOWORK": "off"},  # the repo's go.work does not list the probe
        )
    res = podman("run", "--rm", "--rootfs", str(rootfs.resolve()), "/probe", check=False, timeout=60)
    _, why = needs_containers_conf()
    conf = f" (with the harness's containers.conf: {why})" if "CONTAINERS_CONF" in podman.env else ""
    if res.returncode != 0:
        return Check(
            "podman run",
            False,
            f"cannot start a container{conf}: {(res.stderr or res.stdout).strip()[-300:]}",
            "see README: Prerequisites (runc, cgroup manager, ulimits)",
        )
    return Check("podman run", True, f"a container starts{conf}")


def check_ports(config: Config, podman: Podman) -> list[Check]:
    checks = []
    for svc in config.services:
        port = svc.host_port
        if not port:
            continue
        if ports.is_free(port):
            checks.append(Check(f"port {port}", True, f"free for {svc.name}"))
            continue
        holder = _port_holder(podman, port)
        checks.append(
            Check(
                f"port {port}",
                False,
                f"127.0.0.1:{port} (host_port of {svc.name}) is in use" + (f" by {holder}" if holder else ""),
                "run `nox -s cleanup` (a leftover of an earlier run)"
                if holder
                else f"stop what listens there (`ss -ltnp 'sport = :{port}'`) or set host_port = 0",
            )
        )
    return checks


def _port_holder(podman: Podman, port: int) -> str:
    try:
        for ctr in podman.containers():
            for mapping in ctr.get("Ports") or []:
                if int(mapping.get("host_port", 0)) == port:
                    run = (ctr.get("Labels") or {}).get(RUN_LABEL, "")
                    return f"container {ctr['Names'][0]}" + (f" of harness run {run}" if run else "")
    except (ValueError, KeyError, TypeError, CommandError):
        return ""
    return ""


def check_disk(path: Path) -> Check:
    free = shutil.disk_usage(path).free
    ok = free >= MIN_FREE_BYTES
    return Check(
        "disk",
        ok,
        f"{free / 1024**3:.1f} GiB free at {path}",
        "free at least 2 GiB for images and archives (`nox -s cleanup` removes old ones)",
    )


def podman_runs_cached(runner: Runner, podman: Podman, state_dir: Path, podman_version: str) -> Check:
    """The container probe, re-run only when podman or the harness's containers.conf changed."""
    conf = podman.env.get("CONTAINERS_CONF", "")
    inputs = podman_version + "\0" + (Path(conf).read_text() if conf and Path(conf).exists() else "")
    key = hashlib.sha256(inputs.encode()).hexdigest()
    cache = state_dir / "preflight.json"
    try:
        if json.loads(cache.read_text()).get("podman_run_ok") == key:
            return Check("podman run", True, f"a container starts (cached for podman {podman_version})")
    except (OSError, ValueError):
        pass
    check = check_podman_runs(runner, podman, state_dir)
    if check.ok:
        cache.write_text(json.dumps({"podman_run_ok": key}))
    return check


def run_checks(
    config: Config, runner: Runner, podman: Podman, root: Path, platform: str, *, cached: bool = False
) -> list[Check]:
    """Every check; `cached` (a run's preflight) skips what cannot have changed since it last passed."""
    checks = [
        check_tool(
            runner,
            "podman",
            ["podman", "version", "--format", "{{.Client.Version}}"],
            MIN_PODMAN,
            "apt-get install -y podman runc",
        ),
        check_go(config, runner),
    ]
    checks += platform_class(platform).doctor(config, runner, podman, cached=cached)
    if checks[0].ok and checks[1].ok:
        if cached:
            checks.append(podman_runs_cached(runner, podman, root / ".e2e", checks[0].detail))
        else:
            checks.append(check_podman_runs(runner, podman, root / ".e2e"))
    checks += check_ports(config, podman)
    checks.append(check_disk(root))
    if not cached:
        checks += base_image_checks(config, podman)
    return checks


def base_image_checks(config: Config, podman: Podman) -> list[Check]:
    """Where each base image the services' Containerfiles start FROM comes from."""
    out = []
    for ref, users in sorted(third_party.containerfile_bases(config).items()):
        base = baseimages.provided(ref)
        said = baseimages.where(base, podman) if base else (
            "in podman's store" if podman.image_exists(ref) else f"pulled at run time ([images] pull = "
            f"{config.images.pull!r})"
        )  # fmt: skip
        bad = said.startswith("cannot")
        out.append(Check(f"base image {ref}", not bad, f"{said}; {', '.join(users)}",
                         "apt-get install -y debootstrap" if bad else ""))  # fmt: skip
    return out


def preflight(config: Config, runner: Runner, podman: Podman, root: Path, platform: str) -> list[Check]:
    checks = run_checks(config, runner, podman, root, platform, cached=True)
    if not all(c.ok for c in checks):
        raise PreflightFailed(checks)
    return checks
