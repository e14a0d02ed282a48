"""Service names on the podman platform, with no DNS server.

A run's network has DNS off. Podman's DNS server on Debian 12, aardvark-dns 1.4, can lose a
network's names for a whole run: netavark sends SIGHUP to whatever process has the pid in
aardvark's stale pid file and starts no server (seen in CI: an init container failed to
reach `datastore` for 60 s), and it drops queries while it reloads on every container start
(containers/aardvark-dns#389). Instead, every workload's pod gets a fixed address planned
before the first container starts, and every container gets an /etc/hosts line for each
name: workload, a StatefulSet's pod (`<name>-0`) and each Service that selects it. An
address keeps one MAC, so no peer's ARP cache goes stale.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from infra.platforms.manifests import WORKLOAD_KINDS, Doc, pod_labels, selects


class AddressError(Exception):
    """The network cannot hold the run's containers."""


def names_of(docs: Iterable[Doc]) -> dict[str, list[str]]:
    """workload -> the host names that reach its container, as Kubernetes DNS would serve them."""
    docs = list(docs)
    services = [d for d in docs if d["kind"] == "Service"]
    names: dict[str, list[str]] = {}
    for doc in docs:
        if doc["kind"] not in WORKLOAD_KINDS:
            continue
        workload = doc["metadata"]["name"]
        own = [workload] + ([f"{workload}-0"] if doc["kind"] == "StatefulSet" else [])
        labels = pod_labels(doc)
        own += [s["metadata"]["name"] for s in services if selects(s, labels)]
        names[workload] = list(dict.fromkeys(own))
    return names


@dataclass
class Addresses:
    """The run network's plan: the workloads' pods' addresses first, then the ones a Job's
    containers take."""

    fixed: dict[str, str]  # workload -> its pod's address
    names: dict[str, list[str]]  # workload -> its host names
    _pool: list[str] = field(default_factory=list, repr=False)
    _next: int = field(default=0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def plan(cls, docs: Iterable[Doc], subnet: str, gateway: str) -> Addresses:
        names = names_of(docs)
        net = ipaddress.ip_network(subnet)
        free = [str(ip) for ip in net.hosts() if str(ip) != gateway]
        if len(free) < len(names) + 1:
            raise AddressError(
                f"network {subnet} has {len(free)} addresses for {len(names)} workloads and the "
                "containers that run to completion. next: give podman a larger default subnet "
                "(default_subnet in containers.conf)"
            )
        fixed = dict(zip(names, free, strict=False))
        return cls(fixed, names, _pool=free[len(fixed) :])

    def transient(self) -> str:
        """An address for a container of a Job: it exits before its deploy goes on, so the pool
        comes round again only after as many other such containers started."""
        with self._lock:
            address = self._pool[self._next % len(self._pool)]
            self._next += 1
            return address

    @staticmethod
    def mac_of(address: str) -> str:
        """A fixed MAC per address, as Docker's 02:42:<ip>: podman draws a new one for every
        network namespace, and a peer that cached the old one for a reused address (a Job's)
        sends to nobody until its ARP entry expires."""
        return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(address).packed)

    def add_host_argv(self) -> list[str]:
        """`podman run` flags: one /etc/hosts line per name and address."""
        return [
            arg
            for name, addresses in self.hosts().items()
            for address in addresses
            for arg in ("--add-host", f"{name}:{address}")
        ]

    def hosts(self) -> dict[str, list[str]]:
        """name -> addresses (a Service that selects two workloads has both)."""
        out: dict[str, list[str]] = {}
        for workload, names in self.names.items():
            for name in names:
                out.setdefault(name, []).append(self.fixed[workload])
        return out
