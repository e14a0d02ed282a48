"""Port-forwards: the run's 127.0.0.1 ports reaching a Service's pods through the API server, for a
cluster whose NodePorts the runner cannot reach.

Each accepted connection picks a ready pod behind the Service at that moment and opens its own
stream (the kubernetes client's port-forward), so a restart, a stop and start, or a rollout is
followed with nothing to re-establish: the next connection reaches the new pod. The listener stays
bound for the whole run, so the suite's URLs never change.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from infra.platforms.kube import KubeApi

log = logging.getLogger("infra.forwards")

IDLE_CHECK = 1.0  # how often a quiet connection looks whether the run is ending
BUFFER = 1 << 16


class NoPod(Exception):
    pass


@dataclass(frozen=True)
class Route:
    local: int  # the 127.0.0.1 port the suite uses
    service: str  # the Kubernetes Service
    port: int  # its port (as the Service spec lists it)


@dataclass
class Failure:
    count: int = 0
    last: str = ""


@dataclass
class Forwarder:
    api: KubeApi  # the lookups (Service, pods)
    open_stream: Callable[[str, int], Any]  # (pod, port) -> a socket to it
    namespace: str
    routes: list[Route]
    failures: dict[str, Failure] = field(default_factory=dict)  # Service -> failed connections
    _stopping: threading.Event = field(default_factory=threading.Event)
    _listeners: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        for route in self.routes:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", route.local))
            listener.listen(64)
            self._listeners.append(listener)
            threading.Thread(
                target=self._accept, args=(listener, route), name=f"forward-{route.service}", daemon=True
            ).start()

    def stop(self) -> None:
        self._stopping.set()
        for listener in self._listeners:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        self._listeners.clear()

    def report(self) -> list[str]:
        """One line per Service whose connections could not be forwarded."""
        return [
            f"port-forward to Service {svc}: {f.count} connection(s) failed, the last: {f.last}"
            for svc, f in sorted(self.failures.items())
        ]

    def _accept(self, listener: socket.socket, route: Route) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed by stop()
            threading.Thread(target=self._serve, args=(conn, route), daemon=True).start()

    def _serve(self, conn: socket.socket, route: Route) -> None:
        try:
            remote = self._open(route)
        except Exception as err:  # noqa: BLE001 - the client sees a closed connection; the run says why
            with self._lock:
                failure = self.failures.setdefault(route.service, Failure())
                failure.count += 1
                failure.last = " ".join(str(err).split())[:300]
            log.info("port-forward to Service %s: %s", route.service, err)
            conn.close()
            return
        self._pump(conn, remote)

    def _open(self, route: Route) -> Any:
        pod, port = self.target(route)
        try:
            return self.open_stream(pod, port)
        except Exception as err:  # noqa: BLE001 - the pod went between the listing and the stream
            log.info("port-forward to pod %s failed (%s): asking again", pod, err)
            pod, port = self.target(route)
            return self.open_stream(pod, port)

    def target(self, route: Route) -> tuple[str, int]:
        """A ready pod behind the Service, and the container port its `port` targets."""
        svc = self.api.service(route.service, self.namespace)
        spec = svc.get("spec") or {}
        selector = spec.get("selector") or {}
        if not selector:
            raise NoPod(f"Service {route.service} has no selector: nothing to forward to")
        ports = [p for p in spec.get("ports") or [] if int(p.get("port", 0)) == route.port]
        if not ports:
            raise NoPod(f"Service {route.service} has no port {route.port}")
        target = ports[0].get("targetPort", route.port)
        pods = self.api.pods(self.namespace, ",".join(f"{k}={v}" for k, v in sorted(selector.items())))
        ready = [p for p in pods if _ready(p)]
        if not ready:
            seen = ", ".join(
                f"{p['metadata']['name']} ({(p.get('status') or {}).get('phase')})" for p in pods
            )
            raise NoPod(f"no ready pod behind Service {route.service} (seen: {seen or 'none'})")
        pod = ready[0]
        return str(pod["metadata"]["name"]), _container_port(pod, target)

    def _pump(self, a: socket.socket, b: Any) -> None:
        """Bytes both ways until either side closes (or the run ends)."""
        try:
            while not self._stopping.is_set():
                readable, _, _ = select.select([a, b], [], [], IDLE_CHECK)
                for sock in readable:
                    data = sock.recv(BUFFER)
                    if not data:
                        return
                    (b if sock is a else a).sendall(data)
        except OSError as err:
            log.info("port-forward connection ended: %s", err)
        finally:
            a.close()
            b.close()


def _ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    if (pod.get("metadata") or {}).get("deletionTimestamp") or status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def _container_port(pod: dict[str, Any], target: int | str) -> int:
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    for ctr in (pod.get("spec") or {}).get("containers") or []:
        for port in ctr.get("ports") or []:
            if port.get("name") == target:
                return int(port["containerPort"])
    raise NoPod(f"pod {pod['metadata']['name']} has no container port named {target!r}")
