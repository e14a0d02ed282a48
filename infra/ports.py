"""127.0.0.1 ports a run publishes its NodePorts on: fixed in e2e.toml or free ones."""

from __future__ import annotations

import socket

from infra.config import Config


class PortBusy(Exception):
    pass


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


def allocate(config: Config, *, check: bool = True) -> dict[int, int]:
    """nodePort -> host port. Fixed ports must be free (unless preflight checks); 0 picks one."""
    ports: dict[int, int] = {}
    for svc in config.services:
        if not svc.node_port:
            continue
        if svc.host_port:
            if check and not is_free(svc.host_port):
                raise PortBusy(
                    f"port 127.0.0.1:{svc.host_port} (host_port of service {svc.name!r} in "
                    f"{config.source_file}) is already in use; next: find the holder with "
                    f"`ss -ltnp 'sport = :{svc.host_port}'`, run `nox -s cleanup` if it is a "
                    "leftover of an earlier run, or set host_port = 0 to pick a free port"
                )
            ports[svc.node_port] = svc.host_port
        else:
            ports[svc.node_port] = free_port()
    return ports
