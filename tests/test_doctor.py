"""Preflight: what a run checks before it builds anything, and what it may trust from last time."""

from __future__ import annotations

from pathlib import Path

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
