"""127.0.0.1 ports a run publishes its NodePorts on: fixed in e2e.toml or free ones.

A port picked here is reserved machine-wide until podman or kind binds it: between the pick and
the bind (a cold build's minutes) it is still free to a bind() test, and another run on this
machine would pick it too and fail with "address already in use".
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from infra.cleanup import runlock
from infra.config import Config

RESERVE_SECONDS = 1800.0  # longer than a cold setup's pick-to-bind; once bound, is_free says so


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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _reservations() -> Iterator[dict[str, list[float]]]:
    """port -> [pid, picked at]: the live ones, under the machine-wide lock, written back after."""
    runlock.LOCK_DIR.mkdir(parents=True, exist_ok=True)
    with open(runlock.LOCK_DIR / "ports.json", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        try:
            held: dict[str, list[float]] = json.loads(fh.read() or "{}")
        except ValueError:
            held = {}
        now = time.time()
        live = {
            port: entry
            for port, entry in held.items()
            if now - entry[1] < RESERVE_SECONDS and _alive(int(entry[0]))
        }
        yield live
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(live))


def free_ports(count: int) -> list[int]:
    """Distinct ports free now and not picked by another live process lately, at random where
    listeners live; reserved for this process."""
    found: list[int] = []
    candidates = _listener_range()
    with _reservations() as held:
        for _ in range(count * 50):
            if len(found) == count:
                break
            port = random.choice(candidates)
            if port not in found and str(port) not in held and is_free(port):
                found.append(port)
        if len(found) < count:
            raise OSError(f"no {count} free 127.0.0.1 ports in {candidates.start}-{candidates.stop - 1}")
        held.update({str(port): [os.getpid(), time.time()] for port in found})
    return found


def allocate(config: Config) -> dict[int, int]:
    """nodePort -> 127.0.0.1 port: the fixed one (preflight checks it is free) or a free one."""
    return {svc.node_port: svc.host_port or free_port() for svc in config.services if svc.node_port}
