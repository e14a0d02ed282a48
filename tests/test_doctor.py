"""Preflight: what a run checks before it builds anything, and what it may trust from last time."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from infra.config import Config
from infra.podman_cli import Podman
from infra.proc import RecordingRunner


def test_the_container_probe_is_cached_by_podman_version_and_containers_conf(tmp_path: Path) -> None:
    from infra.run import doctor

    conf = tmp_path / "containers.conf"
    conf.write_text('[engine]\nruntime = "runc"\n')
    runner = RecordingRunner()
    podman = Podman(runner, env={"CONTAINERS_CONF": str(conf)})

    def probes() -> int:
        return sum(1 for a in runner.argvs() if a[:3] == ("podman", "run", "--rm"))

    assert doctor.podman_runs_cached(runner, podman, tmp_path, "4.3.1").ok
    assert doctor.podman_runs_cached(runner, podman, tmp_path, "4.3.1").ok
    assert probes() == 1  # the second preflight trusted the first
    doctor.podman_runs_cached(runner, podman, tmp_path, "4.4.0")
    assert probes() == 2  # a new podman: probed again
    conf.write_text('[engine]\nruntime = "crun"\n')
    doctor.podman_runs_cached(runner, podman, tmp_path, "4.4.0")
    assert probes() == 3  # another containers.conf: probed again
    runner.on(["podman", "run"], returncode=1, stdout="crun: error")
    conf.write_text("changed")
    assert not doctor.podman_runs_cached(runner, podman, tmp_path, "4.4.0").ok
    assert not doctor.podman_runs_cached(runner, podman, tmp_path, "4.4.0").ok  # a failure is never cached
    assert probes() == 5


def test_a_stale_podman_dns_pid_file_fails_the_kind_preflight_with_a_command_that_fixes_it(
    repo_cfg: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """netavark 1.4 signals whatever process the file names and starts no DNS server for kind."""
    from infra.checks import Check
    from infra.platforms import hostfixes, platform_kind

    pid_file = tmp_path / "aardvark.pid"
    monkeypatch.setattr(hostfixes, "aardvark_pid_file", lambda: pid_file)

    def dns_check() -> Check | None:
        checks = platform_kind.kind_checks(repo_cfg, Podman(RecordingRunner()))
        return next((c for c in checks if c.name == "podman DNS"), None)

    assert dns_check() is None  # no file: netavark starts a server
    pid_file.write_text(str(os.getpid()))  # a live process that is not aardvark-dns: this one
    check = dns_check()
    assert check is not None and not check.ok
    comm = Path("/proc/self/comm").read_text().strip()
    assert f"names pid {os.getpid()} ({comm}), not aardvark-dns" in check.detail
    command = shlex.split(check.fix.split(" (")[0])
    assert subprocess.run(command, check=False).returncode == 0  # works as printed
    assert dns_check() is None
    pid_file.write_text("999999999")  # no such process: netavark starts a server
    assert dns_check() is None
