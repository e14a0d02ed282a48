"""infra.platforms.ports: nodePort -> 127.0.0.1 port, fixed or free."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.cleanup import runlock
from infra.config import Config, parse
from infra.platforms import ports
from infra.podman_cli import Podman
from infra.proc import RecordingRunner
from infra.run import doctor


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_free_port_is_free() -> None:
    port = ports.free_port()
    assert 0 < port < 65536
    assert ports.is_free(port)


def test_is_free_sees_a_bound_port(busy_port: int) -> None:
    assert not ports.is_free(busy_port)


def test_allocate_picks_free_ports_per_node_port(repo_cfg: Config) -> None:
    got = ports.allocate(repo_cfg)
    assert sorted(got) == [30080, 30081]
    assert len(set(got.values())) == 2
    assert all(ports.is_free(p) for p in got.values())


def test_allocate_keeps_a_fixed_free_port(tmp_path: Path) -> None:
    port = ports.free_port()
    cfg = parse(
        {
            "manifests": [],
            "services": [
                {"name": "api", "source": ".", "image": "t/api", "node_port": 30090, "host_port": port},
                {"name": "worker", "source": ".", "image": "t/worker"},  # no node_port: not published
            ],
        },
        tmp_path / "e2e.toml",
    )
    assert ports.allocate(cfg) == {30090: port}


def test_a_busy_fixed_port_is_named_by_preflight(tmp_path: Path, busy_port: int) -> None:
    """allocate keeps the configured port; preflight is the one place that says it is taken."""
    cfg = parse(
        {
            "manifests": [],
            "services": [
                {"name": "api", "source": ".", "image": "t/api", "node_port": 30090, "host_port": busy_port},
            ],
        },
        tmp_path / "e2e.toml",
    )
    assert ports.allocate(cfg) == {30090: busy_port}
    (check,) = doctor.check_ports(cfg, Podman(RecordingRunner()))
    assert not check.ok
    assert f"127.0.0.1:{busy_port} (host_port of api) is in use" in check.line()
    assert "host_port = 0" in check.line()


def test_a_picked_port_is_not_picked_again_until_its_picker_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one free port only: another run's pick is still free to bind() until podman binds it
    port = ports.free_port()
    monkeypatch.setattr(runlock, "LOCK_DIR", tmp_path)
    monkeypatch.setattr(ports, "_listener_range", lambda: range(port, port + 1))
    first = ports.free_ports(1)
    assert first == [port] and ports.is_free(port)
    with pytest.raises(OSError, match="no 1 free"):
        ports.free_ports(1)
    held = json.loads((tmp_path / "ports.json").read_text())
    gone = subprocess.Popen(["true"])  # a pid that no longer runs
    gone.wait()
    held[str(first[0])][0] = gone.pid
    (tmp_path / "ports.json").write_text(json.dumps(held))
    assert ports.free_ports(1) == first
