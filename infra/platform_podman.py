"""The embedded platform: the same manifests run with podman alone.

The harness translates each workload into one `podman run` on a per-run
network: Service names become network aliases (podman ignores Service
objects), NodePorts are published on 127.0.0.1, ConfigMaps become env and
files, hostPath volumes become per-run host directories, readiness probes are
polled through ports published on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from infra import coverflush, waits
from infra.images import ImageRef
from infra.manifests import WORKLOAD_KINDS, Doc, Rendered, ident, pod_labels, pod_spec, selects
from infra.names import LABEL, RUN_LABEL, SERVICE_LABEL, resource_name
from infra.paths import make_open_dir
from infra.platform import Context, ImageMissing, PlatformError
from infra.proc import CommandError, tail

log = logging.getLogger("infra.podman")
DEFAULT_GRACE = 30


class PodmanPlatform:
    name = "podman"

    def __init__(self, ctx: Context, containers_by_service: dict[str, list[str]] | None = None):
        self.ctx = ctx
        self.network = resource_name(ctx.run_id)
        self.containers: dict[str, list[str]] = containers_by_service or {}
        self.grace: dict[str, int] = {}
        self.probes: dict[str, tuple[str, int]] = {}  # container -> (path, container port)
        self._configmaps: dict[str, dict[str, str]] = {}
        self._services: list[Doc] = []

    # -- lifecycle ---------------------------------------------------------
    def create(self) -> None:
        self.ctx.podman(
            "network",
            "create",
            "--label",
            f"{LABEL}=true",
            "--label",
            f"{RUN_LABEL}={self.ctx.run_id}",
            self.network,
        )
        self.ctx.paths.run_dir.mkdir(parents=True, exist_ok=True)

    def load_images(self, refs: Sequence[ImageRef]) -> None:
        """Nothing to load: podman runs images from its own store."""

    def verify_images(self, rendered: Rendered) -> None:
        missing = [
            f"{ref} (referenced by {where})"
            for ref, where in sorted(rendered.image_refs().items())
            if self.ctx.podman("image", "exists", ref, check=False).returncode != 0
        ]
        if missing:
            raise ImageMissing(
                "images not present in podman's store: "
                + "; ".join(missing)
                + ". next: the manifest must reference the image the harness built"
                " (localhost/<name>:<tag>, see `inv images`), a service in e2e.toml must build it, or,"
                " for an image the harness does not build: `podman pull` it, `podman load -i` an archive,"
                " or `podman tag` a local image with that name"
            )

    def deploy(self, service: str, docs: list[Doc]) -> None:
        for doc in docs:
            if doc["kind"] == "ConfigMap":
                self._configmaps[doc["metadata"]["name"]] = dict(doc.get("data") or {})
            elif doc["kind"] == "Service":
                self._services.append(doc)
        for doc in docs:
            if doc["kind"] in WORKLOAD_KINDS:
                self._run_workload(service, doc)

    def wait_ready(self, service: str) -> None:
        for name in self.containers.get(service, []):
            path, port = self.probes.get(name, ("", 0))
            if not path:
                continue
            self._fail_if_exited(name)  # an exited container has no ports to probe
            url = f"http://127.0.0.1:{self._host_port(name, port)}{path}"
            waits.wait_http(
                url,
                timeout=self.ctx.config.timeouts.ready,
                what=f"readiness probe of container {name} ({url})",
                hint=self._logs_hint(name),
                extra_check=lambda n=name: self._fail_if_exited(n),  # type: ignore[misc]
            )

    def teardown(self) -> None:
        names = self._all_names()
        names += [c["Names"][0] for c in self._labelled_containers() if c["Names"][0] not in names]
        for name in names:  # one per call: podman 4.3 removes none if any name is missing
            self.ctx.podman("rm", "--force", "--time", "2", name, check=False)
        self.ctx.podman("network", "rm", "--force", self.network, check=False)
        shutil.rmtree(self.ctx.paths.hostpaths, ignore_errors=True)
        shutil.rmtree(self.ctx.paths.run_dir / "configmaps", ignore_errors=True)

    # -- the handle the E2E suite uses -------------------------------------
    def restart(self, service: str) -> None:
        self._flush_before_end(service)
        for name in self._names(service):
            self.ctx.podman("restart", "--time", str(self.grace.get(name, DEFAULT_GRACE)), name)
        self.wait_ready(service)

    def stop(self, service: str) -> None:
        self._flush_before_end(service)
        for name in self._names(service):
            self.ctx.podman("stop", "--time", str(self.grace.get(name, DEFAULT_GRACE)), name)

    def start(self, service: str) -> None:
        for name in self._names(service):
            self.ctx.podman("start", name)
        self.wait_ready(service)

    def logs(self, service: str) -> str:
        out = []
        for name in self._names(service):
            res = self.ctx.podman("logs", name, check=False)
            out.append(res.stdout + res.stderr)
        return "".join(out)

    def stop_gracefully(self) -> dict[str, str]:
        """Stop every container with its grace period; report how each one ended."""
        names = [(svc, n) for svc, ns in self.containers.items() for n in ns]

        def stop(item: tuple[str, str]) -> tuple[str, str]:
            svc, name = item
            grace = self.grace.get(name, DEFAULT_GRACE)
            self.ctx.podman("stop", "--time", str(grace), name, timeout=grace + 30, check=False)
            code = self._inspect(name).get("State", {}).get("ExitCode", "?")
            return svc, f"{name} exit {code}"

        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            return dict(pool.map(stop, names))

    def collect_diagnostics(self, into: Path) -> None:
        into.mkdir(parents=True, exist_ok=True)
        listing = self.ctx.podman(
            "ps", "--all", "--filter", f"label={RUN_LABEL}={self.ctx.run_id}", check=False
        )
        (into / "containers.txt").write_text(listing.stdout + listing.stderr)
        for name in self._all_names():
            logs = self.ctx.podman("logs", "--timestamps", name, check=False)
            (into / f"{name}.log").write_text(logs.stdout + logs.stderr)
            (into / f"{name}.inspect.json").write_text(json.dumps(self._inspect(name), indent=2))

    def inspect_command(self) -> str:
        return f"podman ps --all --filter label={RUN_LABEL}={self.ctx.run_id}"

    def state(self) -> dict[str, object]:
        return {
            "network": self.network,
            "containers": self.containers,
            "grace": self.grace,
            "probes": self.probes,
        }

    @classmethod
    def from_state(cls, ctx: Context, state: dict[str, Any]) -> PodmanPlatform:
        plat = cls(ctx, {k: list(v) for k, v in state["containers"].items()})
        plat.grace = dict(state.get("grace", {}))
        plat.probes = {k: (v[0], int(v[1])) for k, v in state.get("probes", {}).items()}
        return plat

    # -- translation -------------------------------------------------------
    def _run_workload(self, service: str, doc: Doc) -> None:
        spec = pod_spec(doc)
        ctrs = spec.get("containers", [])
        if len(ctrs) != 1:
            raise PlatformError(
                f"{ident(doc)}: the podman platform runs one container per pod, found {len(ctrs)}"
            )
        if int(doc["spec"].get("replicas", 1)) > 1:
            log.warning("%s: podman platform runs 1 replica of %s", ident(doc), doc["spec"]["replicas"])
        ctr = ctrs[0]
        deployment = doc["metadata"]["name"]
        name = resource_name(self.ctx.run_id, deployment)
        labels = pod_labels(doc)
        grace = int(spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE))
        argv = [
            "run",
            "--detach",
            "--pull",
            "never",  # manifests say imagePullPolicy: Never; a missing image must not be fetched
            "--name",
            name,
            "--network",
            self.network,
            "--network-alias",
            deployment,
            "--label",
            f"{LABEL}=true",
            "--label",
            f"{RUN_LABEL}={self.ctx.run_id}",
            "--label",
            f"{SERVICE_LABEL}={service or 'shared'}",
            "--stop-signal",
            "SIGTERM",
            "--stop-timeout",
            str(grace),
        ]
        published: set[int] = set()
        for svc_doc in self._services:
            if not selects(svc_doc, labels):
                continue
            argv += ["--network-alias", svc_doc["metadata"]["name"]]
            for port in svc_doc["spec"].get("ports", []):
                target = _target_port(port, ctr)
                node_port = port.get("nodePort")
                if node_port and target not in published:
                    host = self.ctx.host_ports.get(int(node_port))
                    if host is None:
                        raise PlatformError(
                            f"Service {svc_doc['metadata']['name']}: no host port for nodePort {node_port}"
                        )
                    argv += ["--publish", f"127.0.0.1:{host}:{target}"]
                    published.add(target)
        for port in ctr.get("ports", []):
            if int(port["containerPort"]) not in published:
                argv += ["--publish", f"127.0.0.1::{port['containerPort']}"]
        for key, value in self._env(ctr, doc).items():
            argv += ["--env", f"{key}={value}"]
        for src, dest, ro in self._mounts(ctr, spec, deployment):
            argv += ["--volume", f"{src}:{dest}" + (":ro" if ro else "")]
        if ctr.get("command"):
            argv += ["--entrypoint", json.dumps(ctr["command"])]
        argv += [ctr["image"], *[str(a) for a in ctr.get("args", [])]]
        self.ctx.podman(
            *argv, timeout=self.ctx.config.timeouts.deploy, hint=f"check {ident(doc)} in {_source(doc)}"
        )
        self.containers.setdefault(service, []).append(name)
        self.grace[name] = grace
        probe = ctr.get("readinessProbe", {}).get("httpGet")
        if probe:
            self.probes[name] = (probe.get("path", "/"), _resolve_port(probe["port"], ctr))

    def _env(self, ctr: Doc, doc: Doc) -> dict[str, str]:
        env: dict[str, str] = {}
        for src in ctr.get("envFrom", []):
            if "configMapRef" in src:
                env.update(self._configmap(src["configMapRef"]["name"], doc))
        for item in ctr.get("env", []):
            if "value" in item:
                env[item["name"]] = str(item["value"])
            elif "configMapKeyRef" in item.get("valueFrom", {}):
                ref = item["valueFrom"]["configMapKeyRef"]
                env[item["name"]] = self._configmap(ref["name"], doc)[ref["key"]]
        return env

    def _configmap(self, name: str, doc: Doc) -> dict[str, str]:
        if name not in self._configmaps:
            raise PlatformError(f"{ident(doc)} uses ConfigMap {name!r}, which no manifest defines")
        return self._configmaps[name]

    def _mounts(self, ctr: Doc, spec: Doc, deployment: str) -> Iterable[tuple[Path, str, bool]]:
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for mount in ctr.get("volumeMounts", []):
            vol = volumes[mount["name"]]
            ro = bool(mount.get("readOnly", False))
            if "hostPath" in vol:
                yield self._host_dir(vol["hostPath"]["path"]), mount["mountPath"], ro
            elif "emptyDir" in vol:
                yield (
                    make_open_dir(self.ctx.paths.hostpaths / "emptydir" / deployment / vol["name"]),
                    mount["mountPath"],
                    ro,
                )
            elif "configMap" in vol:
                yield self._configmap_dir(vol["configMap"]["name"], spec), mount["mountPath"], True
            else:
                raise PlatformError(
                    f"volume {vol['name']!r} of {deployment}: the podman platform supports "
                    "hostPath, emptyDir and configMap volumes"
                )

    def _host_dir(self, path: str) -> Path:
        """hostPath -> a per-run directory; the coverage mount -> the run's covdata."""
        if self.ctx.coverage and path == self.ctx.config.coverage.mount:
            return self.ctx.paths.covdata  # prepared by the run (gocoverage.prepare_dirs)
        return make_open_dir(self.ctx.paths.hostpaths / path.strip("/"))

    def _configmap_dir(self, name: str, spec: Doc) -> Path:
        target = self.ctx.paths.run_dir / "configmaps" / name
        target.mkdir(parents=True, exist_ok=True)
        for key, value in self._configmaps.get(name, {}).items():
            (target / key).write_text(value)
        return target

    # -- helpers -----------------------------------------------------------
    def _all_names(self) -> list[str]:
        return [n for names in self.containers.values() for n in names]

    def _logs_hint(self, name: str) -> str:
        """Teardown removes the container: point at the copy diagnostics keep."""
        return (
            f"read {self.ctx.paths.diagnostics / self.name / (name + '.log')} "
            f"(or rerun with --keep and `podman logs {name}`)"
        )

    def _names(self, service: str) -> list[str]:
        if service not in self.containers:
            raise PlatformError(f"no service {service!r} in this run; known: {sorted(self.containers)}")
        return self.containers[service]

    def _inspect(self, name: str) -> dict[str, Any]:
        res = self.ctx.podman("container", "inspect", name, check=False)
        data = json.loads(res.stdout) if res.returncode == 0 and res.stdout.strip() else [{}]
        return dict(data[0])

    def _host_port(self, name: str, port: int) -> int:
        out = self.ctx.podman("port", name, f"{port}/tcp").stdout.strip().splitlines()
        if not out:
            raise PlatformError(f"container {name}: port {port} is not published")
        return int(out[0].rsplit(":", 1)[1])

    def _fail_if_exited(self, name: str) -> None:
        state = self._inspect(name).get("State", {})
        if state and not state.get("Running", False):
            logs = self.ctx.podman("logs", "--tail", "20", name, check=False)
            raise waits.Fatal(
                f"container {name} exited (code {state.get('ExitCode')}) before it was ready; "
                f"last log lines:\n{tail(logs.stdout + logs.stderr, 20)}\nnext: {self._logs_hint(name)}"
            )

    def _labelled_containers(self) -> list[dict[str, Any]]:
        try:
            return self.ctx.podman.containers(f"label={RUN_LABEL}={self.ctx.run_id}")
        except (CommandError, json.JSONDecodeError):
            return []

    # -- coverage flush (coverflush) ------------------------------------------
    def flush_coverage(self, services: Sequence[str] | None = None) -> dict[str, list[str]]:
        names = list(self.containers) if services is None else list(services)
        return coverflush.flush(self.ctx, names, self._signal_running)

    def _signal_running(self, service: str, signame: str) -> list[str]:
        """`podman kill --signal` to each running container of the service; those signalled."""
        names = self.containers.get(service, [])

        def kill(name: str) -> str:
            res = self.ctx.podman("kill", "--signal", signame, name, check=False)
            if res.returncode != 0:  # not running (stopped by a test, exited): nothing to flush
                log.info("coverage flush: %s not signalled: %s", name, (res.stderr or res.stdout).strip())
                return ""
            return name

        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            return [n for n in pool.map(kill, names) if n]

    def _flush_before_end(self, service: str) -> None:
        """What the old process counted survives a restart or stop that kills it at the grace period."""
        if self.ctx.coverage and coverflush.flushable(self.ctx.config, service):
            self.flush_coverage([service])


def _resolve_port(port: int | str, ctr: Doc) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for p in ctr.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    raise PlatformError(f"container {ctr.get('name')}: no port named {port!r}")


def _target_port(port: Doc, ctr: Doc) -> int:
    target: int | str = port["targetPort"] if "targetPort" in port else port["port"]
    return _resolve_port(target, ctr)


def _source(doc: Doc) -> str:
    return str(doc["metadata"].get("annotations", {}).get("e2e-harness/source", "manifests"))
