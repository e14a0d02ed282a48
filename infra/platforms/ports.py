"""127.0.0.1 ports a run publishes its NodePorts on: fixed in e2e.toml or free ones."""

from __future__ import annotations

import socket

from infra.config import Config


def is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def allocate(config: Config) -> dict[int, int]:
    """nodePort -> 127.0.0.1 port: the fixed one (preflight checks it is free) or a free one."""
    return {svc.node_port: svc.host_port or free_port() for svc in config.services if svc.node_port}
