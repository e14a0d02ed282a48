"""127.0.0.1 ports a run publishes its NodePorts on: fixed in e2e.toml or free ones."""

from __future__ import annotations

import random
import socket
from pathlib import Path

from infra.config import Config


def is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    return free_ports(1)[0]


EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 20000


def _listener_range() -> range:
    """Ports below the kernel's ephemeral range: no outgoing connection takes one meanwhile (a port
    bind(0) hands out is one an HTTP client may use next, before podman binds it)."""
    try:
        low = int(EPHEMERAL.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return range(LOWEST, low) if low - LOWEST >= 1000 else range(low, 65536)


def free_ports(count: int) -> list[int]:
    """Distinct ports free now, picked at random where listeners live."""
    found: list[int] = []
    candidates = _listener_range()
    for _ in range(count * 50):
        if len(found) == count:
            break
        port = random.choice(candidates)
        if port not in found and is_free(port):
            found.append(port)
    if len(found) < count:
        raise OSError(f"no {count} free 127.0.0.1 ports in {candidates.start}-{candidates.stop - 1}")
    return found


def allocate(config: Config) -> dict[int, int]:
    """nodePort -> 127.0.0.1 port: the fixed one (preflight checks it is free) or a free one."""
    return {svc.node_port: svc.host_port or free_port() for svc in config.services if svc.node_port}
