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
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Distinct free ports: each socket stays bound until all are picked."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def allocate(config: Config) -> dict[int, int]:
    """nodePort -> 127.0.0.1 port: the fixed one (preflight checks it is free) or a free one."""
    return {svc.node_port: svc.host_port or free_port() for svc in config.services if svc.node_port}
