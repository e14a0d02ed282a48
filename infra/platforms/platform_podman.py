"""The embedded platform: the same manifests run with podman alone.

The harness translates each workload into one `podman run` in a pod of its own
on a per-run network: the pod holds the network namespace at a fixed address,
Service names become /etc/hosts lines for the pods of the workloads they select
(podman_hosts: the network has no DNS server), NodePorts are published on
127.0.0.1, ConfigMaps become env and files, hostPath volumes become per-run
host directories, readiness probes are polled through ports published on
127.0.0.1.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from infra import waits
from infra.checks import Check
from infra.config import Config
from infra.console import say
from infra.gocover import coverflush
from infra.images import ImageRef
from infra.names import LABEL, RUN_LABEL, SERVICE_LABEL, resource_name
from infra.paths import make_open_dir
from infra.platforms import podman_fields, podman_security, ports
from infra.platforms.manifests import (
    JOB_KINDS,
    WORKLOAD_KINDS,
    Doc,
    ManifestError,
    Rendered,
    ident,
    pod_labels,
    pod_spec,
    selects,
)
from infra.platforms.platform import Context, ImageMissing, PlatformError, Request, Sweep, Swept
from infra.platforms.podman_hosts import AddressError, Addresses
from infra.podman_cli import Podman
from infra.proc import CommandError, CommandTimeout, Runner, tail

log = logging.getLogger("infra.podman")
DEFAULT_GRACE = 30
PORT_ATTEMPTS = 3
EXEC_INTERVAL = 0.5  # seconds between exec probes while none of the container's ports is open
EXEC_START = 2.0  # seconds a `podman exec` may take to start its command, beyond the probe's timeout
WAIT_SLICE = 2.0  # seconds of one `podman wait` for a container's exit


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class PodmanPlatform:
    name = "podman"
    images_step = ""
    brings_third_party = True
    coverage_via = "signal"
    on_this_machine = True

    @classmethod
    def refusals(cls, request: Request) -> list[str]:
        try:
            for notice in podman_fields.check(request.docs()):
                say(notice)
        except (podman_fields.PodmanRefusal, ManifestError) as err:
            return [str(err)]
        return []

    @classmethod
    def clean(cls, config: Config, runner: Runner, podman: Podman, what: Sweep) -> Swept:
        """Containers, pods, networks, volumes, images, archives and run dirs of finished runs."""
        from infra.cleanup import cleanup

        report = cleanup.clean_podman(podman, config.root, dry_run=what.dry_run, images=not what.keep_images)
        return report.removed, report.left

    @classmethod
    def doctor(cls, config: Config, runner: Runner, podman: Podman, *, cached: bool) -> list[Check]:
        return []

    def __init__(self, ctx: Context, containers_by_service: dict[str, list[str]] | None = None):
        self.ctx = ctx
        self.network = resource_name(ctx.run_id)
        self.containers: dict[str, list[str]] = containers_by_service or {}
        self.grace: dict[str, int] = {}
        self.probes: dict[str, dict[str, Any]] = {}  # container -> {http: path, port} | {tcp: port} | {exec}
        self.finished: dict[str, list[str]] = {}  # service -> its init containers and Job pods
        self._configmaps: dict[str, dict[str, bytes]] = {}
        self._secrets: dict[str, dict[str, bytes]] = {}
        self.addresses: Addresses | None = None
        self.pods: list[str] = []
        self._pod_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pods")
        self._pending_pods: dict[str, Future[None]] = {}  # pod -> its creation, until a deploy needs it
        self.published: dict[str, dict[int, int]] = {}  # container -> its ports -> host ports

    # -- lifecycle ---------------------------------------------------------
    def create(self) -> None:
        self.ctx.podman(
            "network",
            "create",
            "--disable-dns",  # names go to /etc/hosts (podman_hosts)
            "--label",
            f"{LABEL}=true",
            "--label",
            f"{RUN_LABEL}={self.ctx.run_id}",
            self.network,
        )
        subnet = self.ctx.podman.json("network", "inspect", self.network)[0]["subnets"][0]
        try:
            self.addresses = Addresses.plan(self.ctx.rendered.docs, subnet["subnet"], subnet["gateway"])
        except AddressError as err:
            raise PlatformError(f"network {self.network}: {err}") from None
        self.ctx.paths.run_dir.mkdir(parents=True, exist_ok=True)
        # every workload's pod now, beside the builds: its deploy then only runs containers. The
        # shared ones (a database) and the claims' volumes before this phase ends, all at once, since
        # their deploy comes first; the services' pods go on in the background until their deploy
        # asks for them. Each port is picked here: podman's own pick at `pod create` gave two pods
        # created at once the same port (CI)
        rendered = self.ctx.rendered
        owner = {id(d): name for name, docs in rendered.by_service.items() for d in docs}
        workloads = [d for d in rendered.docs if d["kind"] in WORKLOAD_KINDS]
        jobs: list[Callable[[], None]] = [partial(self._create_volume, c) for c in sorted(self._claims())]
        jobs += [partial(self._create_pod, "", d) for d in workloads if id(d) not in owner]
        if jobs:
            with ThreadPoolExecutor(max_workers=min(4, len(jobs))) as pool:
                waits.map_all(pool, lambda job: job(), jobs)
        for doc in (d for d in workloads if id(d) in owner):
            self._pending_pods[self._pod_name(doc["metadata"]["name"])] = self._pod_pool.submit(
                self._create_pod, owner[id(doc)], doc
            )

    def _create_volume(self, claim: str) -> None:
        """A volume per claim: it outlives restarts, not the run."""
        labels = ["--label", f"{LABEL}=true", "--label", f"{RUN_LABEL}={self.ctx.run_id}"]
        self.ctx.podman("volume", "create", *labels, self._volume_name(claim))
        where = self.ctx.podman("volume", "inspect", "--format", "{{.Mountpoint}}", self._volume_name(claim))
        Path(where.stdout.strip()).chmod(0o777)  # as the hostPath dirs: any container user writes it

    def _claims(self) -> set[str]:
        """Every claim of the stack: PersistentVolumeClaims, and a StatefulSet's pod-0 claims."""
        docs = self.ctx.rendered.docs
        claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
        for sts in (d for d in docs if d["kind"] == "StatefulSet"):
            claims |= set(_template_claims(sts).values())
        return claims

    def _volume_name(self, claim: str) -> str:
        return resource_name(self.ctx.run_id, f"pvc-{claim}")

    def load_images(self, refs: Sequence[ImageRef]) -> None:
        """Nothing to load: podman runs images from its own store."""

    def verify_images(self, rendered: Rendered) -> None:
        """Nothing to ask podman first: the build and images phases have just made every image, and
        `podman run --pull never` refuses one that went missing since, named by _run (an `image
        exists` per image cost a podman call on every deploy's path)."""

    def deploy(self, service: str, docs: list[Doc]) -> None:
        for doc in docs:
            name = doc["metadata"]["name"]
            if doc["kind"] == "ConfigMap":
                self._configmaps[name] = {k: str(v).encode() for k, v in (doc.get("data") or {}).items()}
            elif doc["kind"] == "Secret":
                self._secrets[name] = _secret_data(doc)
        for doc in docs:  # in apply order: a Job (a migration) completes before the workloads start
            if doc["kind"] in JOB_KINDS:
                self._run_job(service, doc)
        workloads = [d for d in docs if d["kind"] in WORKLOAD_KINDS]
        if workloads:  # a shared one (postgres) is handled by its own name
            with ThreadPoolExecutor(max_workers=min(4, len(workloads))) as pool:
                waits.map_all(
                    pool, lambda d: self._run_workload(service or d["metadata"]["name"], d), workloads
                )

    def wait_ready(self, service: str) -> None:
        for name in self.containers.get(service, []):
            probe = self.probes.get(name) or {}
            # as the kubelet: the startup probe passes first, then the readiness probe is asked
            for kind, one in (("startup", probe.get("startup")), ("readiness", probe)):
                if one:
                    self._wait_probe(name, kind, one)

    def _wait_probe(self, name: str, kind: str, probe: dict[str, Any]) -> None:
        timeout, hint = self.ctx.config.timeouts.ready, self._logs_hint(name)
        if "http" in probe:
            url = f"http://127.0.0.1:{self._host_port(name, int(probe['port']))}{probe['http']}"
            waits.wait_http(
                url,
                timeout=timeout,
                what=f"{kind} probe of container {name} ({url})",
                hint=hint,
                extra_check=lambda n=name: self._fail_if_exited(n),  # type: ignore[misc]
            )
        elif "tcp" in probe:
            port = self._host_port(name, int(probe["tcp"]))
            waits.poll(
                f"{kind} probe of container {name} (TCP 127.0.0.1:{port})",
                lambda n=name, p=port: self._tcp_probe(n, p),  # type: ignore[misc]
                timeout=timeout,
                hint=hint,
            )
        elif "exec" in probe:
            command = [str(a) for a in probe["exec"]]
            waits.poll(
                f"{kind} probe of container {name} (exec {json.dumps(command)})",
                self._gated_exec_probe(name, command, float(probe.get("timeout", 1))),
                timeout=timeout,
                interval=0.1,
                hint=hint,
            )

    # a probe that passes needs no inspect; one that fails asks whether the container is gone
    def _tcp_probe(self, name: str, port: int) -> waits.Observation[None]:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                return waits.Observation(True, "connected")
        except OSError as err:
            self._fail_if_exited(name)
            return waits.Observation(False, f"connect: {err}")

    def _gated_exec_probe(
        self, name: str, command: list[str], timeout: float
    ) -> Callable[[], waits.Observation[None]]:
        """The exec probe (a `podman exec`: 0.15 s) every EXEC_INTERVAL, and at once whenever one
        of the container's ports accepts a connection: a server that listens is ready to be asked.
        Each has the probe's timeoutSeconds, and EXEC_START for podman's own start."""
        host_ports = sorted(self.published.get(name, {}).values())
        asked_at, seen, answered = [-EXEC_INTERVAL], ["not asked yet"], [""]

        def probe() -> waits.Observation[None]:
            now = time.monotonic()
            if now - asked_at[0] < EXEC_INTERVAL and not any(_accepts(p) for p in host_ports):
                return waits.Observation(False, seen[0])
            asked_at[0] = now
            obs, timed_out = self._exec_probe(name, command, timeout + EXEC_START)
            if not timed_out:
                answered[0] = obs.seen
            # a probe that timed out last still says what the command answered before
            seen[0] = (
                f"{obs.seen}; the answer before: {answered[0]}" if timed_out and answered[0] else obs.seen
            )
            return waits.Observation(obs.done, seen[0])

        return probe

    def _exec_probe(
        self, name: str, command: list[str], timeout: float
    ) -> tuple[waits.Observation[None], bool]:
        """The probe's observation, and whether it timed out."""
        try:
            res = self.ctx.podman("exec", name, *command, check=False, timeout=timeout)
        except CommandTimeout:  # as the kubelet's: a probe that outlives its timeout failed
            return waits.Observation(False, f"no answer within {timeout:g} s"), True
        if res.returncode >= 125:  # podman's own failure (a probe's command exits below): is it gone?
            self._fail_if_exited(name)
        said = f"exit {res.returncode}: {tail(res.stdout + res.stderr, 2)}"
        return waits.Observation(res.returncode == 0, said), False

    def teardown(self) -> None:
        # the pods still being created first: each is then listed by its label and removed
        pending, self._pending_pods = list(self._pending_pods.values()), {}
        for fut in pending:
            try:
                waits.result(fut)
            except Exception as err:  # noqa: BLE001 - what teardown removes is what exists now
                log.info("a pod's creation failed before teardown: %s", err)
        self._pod_pool.shutdown(wait=False)
        # one round: a pod goes with its containers, the others (a Job's) alone
        listed = self._labelled_containers()
        in_pods = {c["Names"][0] for c in listed if c.get("Pod")}
        names = [n for n in self._all_names() if n not in in_pods]
        names += [c["Names"][0] for c in listed if not c.get("Pod") and c["Names"][0] not in names]
        pods = [*self.pods, *[p for p in self._labelled_pods() if p not in self.pods]]
        removals = [(n, False) for n in names] + [(p, True) for p in pods]
        with ThreadPoolExecutor(max_workers=max(1, min(6, len(removals)))) as pool:
            waits.map_all(pool, lambda r: self.ctx.podman.remove(r[0], pod=r[1]), removals)
        self.ctx.podman("network", "rm", "--force", self.network, check=False)
        ours = f"label={RUN_LABEL}={self.ctx.run_id}"
        claims = self.ctx.podman("volume", "ls", "--quiet", "--filter", ours, check=False).stdout.split()
        if claims:
            self.ctx.podman("volume", "rm", "--force", *claims, check=False)
        shutil.rmtree(self.ctx.paths.hostpaths, ignore_errors=True)
        shutil.rmtree(self.ctx.paths.run_dir / "volumes", ignore_errors=True)

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
            return dict(waits.map_all(pool, stop, names))

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
            "hosts": self.addresses.hosts() if self.addresses else {},  # for people: /etc/hosts
            "pods": self.pods,
            "containers": self.containers,
            "grace": self.grace,
            "probes": self.probes,
            "finished": self.finished,
        }

    @classmethod
    def from_state(cls, ctx: Context, state: dict[str, Any]) -> PodmanPlatform:
        plat = cls(ctx, {k: list(v) for k, v in state["containers"].items()})
        plat.grace = dict(state.get("grace", {}))
        plat.probes = {k: dict(v) for k, v in state.get("probes", {}).items()}
        plat.finished = {k: list(v) for k, v in state.get("finished", {}).items()}
        plat.pods = list(state.get("pods", []))
        return plat

    # -- translation -------------------------------------------------------
    def _network_argv(self, doc: Doc, address: str = "") -> list[str]:
        """A network namespace's place in the run's network: a workload's pod has its fixed address,
        a Job's containers take the next free one. Its MAC goes with the address; its /etc/hosts
        has the run's names and the pod's hostAliases."""
        plan = self._addresses()
        address = address or plan.transient()
        aliases = [
            arg
            for alias in pod_spec(doc).get("hostAliases") or []
            for hostname in alias.get("hostnames") or []
            for arg in ("--add-host", f"{hostname}:{alias['ip']}")
        ]
        return [
            "--network", self.network, "--ip", address, "--mac-address", plan.mac_of(address),
            *plan.add_host_argv(), *aliases,
        ]  # fmt: skip

    def _labels(self, service: str) -> list[str]:
        return [
            "--label", f"{LABEL}=true", "--label", f"{RUN_LABEL}={self.ctx.run_id}",
            "--label", f"{SERVICE_LABEL}={service or 'shared'}",
        ]  # fmt: skip

    def _base_argv(self, name: str, service: str, grace: int, where: list[str]) -> list[str]:
        """where: `--pod P` (a workload's containers) or _network_argv() (a Job's)."""
        return [
            "run",
            "--detach",
            "--pull",
            "never",  # manifests say imagePullPolicy: Never; a missing image must not be fetched
            "--name",
            name,
            *where,
            *self._labels(service),
            # no --stop-signal: the image's STOPSIGNAL (else SIGTERM), as containerd sends it
            "--stop-timeout",
            str(grace),
        ]

    def _container_argv(self, ctr: Doc, doc: Doc, pod: str, *, in_pod: bool = True) -> list[str]:
        """env, volumes, security, entrypoint, image and args: what every container of a pod is run with."""
        spec = pod_spec(doc)
        who = f"container {ctr.get('name')!r} of {ident(doc)} ({_source(doc)})"
        argv = podman_security.argv(ctr, spec, lambda: self._image_user(ctr["image"]), who)
        if not in_pod:  # a Job's container has the pod's namespaces to itself
            argv += podman_security.sysctl_argv(spec)
        for key, value in self._env(ctr, doc).items():
            argv += ["--env", f"{key}={value}"]
        for src, dest, ro in self._mounts(ctr, pod_spec(doc), pod, _template_claims(doc)):
            argv += ["--volume", f"{src}:{dest}" + (":ro" if ro else "")]
        if ctr.get("command"):
            argv += ["--entrypoint", json.dumps(ctr["command"])]
        return [*argv, ctr["image"], *[str(a) for a in ctr.get("args", [])]]

    def _run(self, argv: list[str], doc: Doc) -> None:
        try:
            self.ctx.podman(
                *argv, timeout=self.ctx.config.timeouts.deploy, hint=f"check {ident(doc)} in {_source(doc)}"
            )
        except CommandError as err:
            said = err.output_tail
            missing = [ref for ref in Rendered([doc]).image_refs() if f"{ref}: image not known" in said]
            if missing:
                raise ImageMissing(
                    f"{missing[0]} (used by {ident(doc)} in {_source(doc)}) is not in podman's store. next: "
                    "the manifest must reference the image the harness built (localhost/<name>:<tag>, see "
                    "`inv images`), a service in e2e.toml must build it, or, for an image the harness does "
                    "not build: `podman pull` it, `podman load -i` an archive, or `podman tag` a local "
                    "image with that name"
                ) from None
            raise

    def _run_init_containers(self, service: str, doc: Doc, pod: str, where: list[str] | None = None) -> None:
        """One after the other, each to exit 0, before the pod's container starts (as Kubernetes does).
        where: the workload's pod; a Job's init containers take addresses of their own."""
        for i, ctr in enumerate(pod_spec(doc).get("initContainers", [])):
            name = resource_name(self.ctx.run_id, f"{pod}-init{i}")
            argv = self._base_argv(name, service, DEFAULT_GRACE, where or self._network_argv(doc))
            self._run([*argv, *self._container_argv(ctr, doc, pod, in_pod=where is not None)], doc)
            self.finished.setdefault(service, []).append(name)
            what = f"init container {ctr['name']!r} of {ident(doc)}"
            code = self._wait_exit(name, what, self.ctx.config.timeouts.ready)
            if code != 0:
                raise PlatformError(
                    f"{what} exited {code}; last log lines:\n{self._log_tail(name)}\n"
                    f"next: {self._logs_hint(name)}"
                )

    def _run_workload(self, service: str, doc: Doc) -> None:
        spec = pod_spec(doc)
        ctrs = spec.get("containers", [])
        if len(ctrs) != 1:
            raise PlatformError(
                f"{ident(doc)}: the podman platform runs one container per pod, found {len(ctrs)}"
            )
        ctr = ctrs[0]
        workload = doc["metadata"]["name"]
        pod = self._pod_name(workload)
        if pod in self._pending_pods:
            waits.result(self._pending_pods.pop(pod))  # a failed creation raises here, naming the pod
        if pod not in self.pods:  # create() makes one per workload the run rendered
            raise PlatformError(f"{ident(doc)} is not among the documents run {self.ctx.run_id} rendered")
        where = ["--pod", pod]
        self._run_init_containers(service, doc, workload, where)
        name = self._container_name(workload)
        grace = int(spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE))
        self._run(
            [*self._base_argv(name, service, grace, where), *self._container_argv(ctr, doc, workload)], doc
        )
        self.containers.setdefault(service, []).append(name)
        self.grace[name] = grace
        probe = _readiness(ctr)
        if probe:
            self.probes[name] = probe

    def _create_pod(self, service: str, doc: Doc) -> None:
        """The pod holds the network namespace, as Kubernetes' pause container does: a stopped or
        restarted container keeps its address and MAC, and while it is down a connection to it is
        refused at once (a lone container's address would answer nothing: `no route to host`
        after 3 s). Published ports belong to the pod; it is started at once."""
        ctrs = pod_spec(doc).get("containers", [])
        ctr = ctrs[0] if len(ctrs) == 1 else {}  # the deploy refuses another count, naming it
        workload = doc["metadata"]["name"]
        address = self._addresses().fixed[workload]
        pod, infra = self._pod_name(workload), resource_name(self.ctx.run_id, f"{workload}-infra")
        argv = [
            "pod", "create", "--name", pod, "--infra-name", infra, *self._network_argv(doc, address),
            *self._labels(service), *podman_security.sysctl_argv(pod_spec(doc)),
        ]  # fmt: skip
        labels = pod_labels(doc)
        published = self.published.setdefault(self._container_name(workload), {})  # what a probe reads
        for svc_doc in (d for d in self.ctx.rendered.docs if d["kind"] == "Service"):
            if not selects(svc_doc, labels):
                continue
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
                    published[target] = host
        unpublished = [int(p["containerPort"]) for p in ctr.get("ports", [])]
        unpublished = [p for p in dict.fromkeys(unpublished) if p not in published]
        for attempt in range(PORT_ATTEMPTS):  # a picked port another process bound meanwhile: others
            picked = dict(zip(unpublished, ports.free_ports(len(unpublished)), strict=True))
            publish = [a for port, host in picked.items() for a in ("--publish", f"127.0.0.1:{host}:{port}")]
            published.update(picked)
            self._run([*argv, *publish], doc)
            try:
                self._run(["pod", "start", pod], doc)
            except CommandError as err:
                if "address already in use" not in str(err) or attempt == PORT_ATTEMPTS - 1 or not picked:
                    self.pods.append(pod)  # teardown removes it
                    raise
                log.info("pod %s: a port it was given was taken meanwhile (%s); other ports", pod, err)
                self.ctx.podman("pod", "rm", "--force", pod, check=False)
                continue
            self.pods.append(pod)
            return

    def _run_job(self, service: str, doc: Doc) -> None:
        """Attempts one after the other until one exits 0; backoffLimit + 1 failures fail the setup."""
        job, spec = doc["metadata"]["name"], doc["spec"]
        ctrs = pod_spec(doc).get("containers", [])
        if len(ctrs) != 1:
            raise PlatformError(
                f"{ident(doc)}: the podman platform runs one container per pod, found {len(ctrs)}"
            )
        limit = int(spec.get("backoffLimit", 6))
        timeout = min(self.ctx.config.timeouts.job, float(spec.get("activeDeadlineSeconds") or "inf"))
        code, name = -1, ""
        for attempt in range(limit + 1):
            pod = f"{job}-{attempt}"
            self._run_init_containers(service, doc, pod)
            name = resource_name(self.ctx.run_id, pod)
            argv = self._base_argv(name, service, DEFAULT_GRACE, self._network_argv(doc))
            self._run([*argv, *self._container_argv(ctrs[0], doc, pod, in_pod=False)], doc)
            self.finished.setdefault(service, []).append(name)
            code = self._wait_exit(name, f"{ident(doc)} (attempt {attempt + 1} of {limit + 1})", timeout)
            if code == 0:
                log.info("%s completed (attempt %d)", ident(doc), attempt + 1)
                return
            log.warning("%s: attempt %d exited %d", ident(doc), attempt + 1, code)
        raise PlatformError(
            f"{ident(doc)} failed: {limit + 1} attempt(s) (backoffLimit {limit}), the last exited {code}; "
            f"last log lines:\n{self._log_tail(name)}\nnext: {self._logs_hint(name)}"
        )

    def _wait_exit(self, name: str, what: str, timeout: float) -> int:
        def probe() -> waits.Observation[int]:
            # one `podman wait` that polls in process, not an inspect (a podman start-up) every 0.2 s;
            # a short one, so that a cancel is seen between them
            try:
                res = self.ctx.podman("wait", "--interval", "100ms", name, check=False, timeout=WAIT_SLICE)
            except CommandTimeout:
                return waits.Observation(False, f"{name} running")
            code = res.stdout.strip()
            if res.returncode == 0 and code.lstrip("-").isdigit():
                return waits.Observation(True, "exited", int(code))
            return waits.Observation(False, f"podman wait {name}: {tail(res.stdout + res.stderr, 2)}")

        try:
            code = waits.poll(
                f"{what} to finish", probe, timeout=timeout, interval=0.1, hint=self._logs_hint(name)
            )
        except waits.WaitTimeout as err:  # "running" says nothing: what the container said does
            if waits.CANCEL.is_set():
                raise
            raise waits.WaitTimeout(
                err.what, err.timeout, f"{err.last}; last log lines:\n{self._log_tail(name)}",
                self._logs_hint(name),
            ) from None  # fmt: skip
        return -1 if code is None else code

    def _image_user(self, image: str) -> str:
        """The user an image runs as (its USER), as the kubelet reads it for runAsNonRoot."""
        return self.ctx.podman("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()

    def _log_tail(self, name: str) -> str:
        res = self.ctx.podman("logs", "--tail", "20", name, check=False)
        return tail(res.stdout + res.stderr, 20)

    def _env(self, ctr: Doc, doc: Doc) -> dict[str, str]:
        env: dict[str, str] = {}
        for src in ctr.get("envFrom", []):
            prefix = src.get("prefix", "")
            for key, ref in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                if key in src:
                    data = self._object(
                        ref, src[key]["name"], ident(doc), optional=src[key].get("optional", False)
                    )
                    env.update({prefix + k: _text(v, ref, src[key]["name"], k) for k, v in data.items()})
        for item in ctr.get("env", []):
            if "value" in item:
                env[item["name"]] = str(item["value"])
                continue
            for key, ref in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                sel = item.get("valueFrom", {}).get(key)
                if sel is None:
                    continue
                optional = sel.get("optional", False)
                data = self._object(ref, sel["name"], ident(doc), optional=optional)
                if sel["key"] in data:
                    env[item["name"]] = _text(data[sel["key"]], ref, sel["name"], sel["key"])
                elif not optional:
                    raise PlatformError(
                        f"{ident(doc)} uses key {sel['key']!r} of {ref} {sel['name']!r}, which it lacks"
                    )
        return env

    def _object(self, kind: str, name: str, who: str, *, optional: bool = False) -> dict[str, bytes]:
        """The data of a ConfigMap or Secret `who` (an object, a volume) uses."""
        store = self._configmaps if kind == "ConfigMap" else self._secrets
        if name not in store:
            if optional:
                return {}
            raise PlatformError(f"{who} uses {kind} {name!r}, which no manifest defines")
        return store[name]

    def _mounts(
        self, ctr: Doc, spec: Doc, deployment: str, templates: dict[str, str]
    ) -> Iterable[tuple[Path | str, str, bool]]:
        """templates: a StatefulSet's volumeClaimTemplates by name -> its pod's claim."""
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for mount in ctr.get("volumeMounts", []):
            ro = bool(mount.get("readOnly", False))
            if mount["name"] in templates and mount["name"] not in volumes:
                yield self._volume_name(templates[mount["name"]]), mount["mountPath"], ro
                continue
            vol = volumes[mount["name"]]
            if "persistentVolumeClaim" in vol:
                claim = vol["persistentVolumeClaim"]
                yield (
                    self._volume_name(claim["claimName"]),
                    mount["mountPath"],
                    ro or bool(claim.get("readOnly")),
                )
            elif "hostPath" in vol:
                yield self._host_dir(vol["hostPath"]["path"]), mount["mountPath"], ro
            elif "emptyDir" in vol:
                yield (
                    make_open_dir(self.ctx.paths.hostpaths / "emptydir" / deployment / vol["name"]),
                    mount["mountPath"],
                    ro,
                )
            elif "configMap" in vol or "secret" in vol:
                yield self._files_dir(vol, deployment), mount["mountPath"], True
            else:
                raise PlatformError(
                    f"volume {vol['name']!r} of {deployment}: the podman platform supports "
                    "hostPath, emptyDir, configMap and secret volumes"
                )

    def _host_dir(self, path: str) -> Path:
        """hostPath -> a per-run directory; the coverage mount -> the run's covdata."""
        if self.ctx.coverage and path == self.ctx.config.coverage.mount:
            return self.ctx.paths.covdata  # prepared by the run (gocoverage.prepare_dirs)
        return make_open_dir(self.ctx.paths.hostpaths / path.strip("/"))

    def _files_dir(self, vol: Doc, pod: str) -> Path:
        """A configMap or secret volume: one file per key (or per item), read-only in the container."""
        kind, src = ("ConfigMap", vol["configMap"]) if "configMap" in vol else ("Secret", vol["secret"])
        name = src.get("name") or src.get("secretName", "")
        data = self._object(
            kind, name, f"volume {vol['name']!r} of {pod}", optional=src.get("optional", False)
        )
        items = src.get("items") or [{"key": k, "path": k} for k in sorted(data)]
        target: Path = self.ctx.paths.run_dir / "volumes" / pod / vol["name"]
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        mode = int(src.get("defaultMode", 0o644))
        for item in items:
            if item["key"] not in data:
                raise PlatformError(
                    f"{kind} {name!r} has no key {item['key']!r} (volume {vol['name']!r} of {pod})"
                )
            path = target / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data[item["key"]])
            path.chmod(int(item.get("mode", mode)) | 0o444)  # the container's user is not the file's owner
        return target

    # -- helpers -----------------------------------------------------------
    def _pod_name(self, workload: str) -> str:
        return resource_name(self.ctx.run_id, f"{workload}-pod")

    def _container_name(self, workload: str) -> str:
        return resource_name(self.ctx.run_id, workload)

    def _addresses(self) -> Addresses:
        if self.addresses is None:
            raise PlatformError(f"run {self.ctx.run_id}: its network was not created (create() first)")
        return self.addresses

    def _all_names(self) -> list[str]:
        """Every container of the run: init containers and Jobs' first, as they ran."""
        return [n for group in (self.finished, self.containers) for names in group.values() for n in names]

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
        if port in self.published.get(name, {}):  # fixed before the pod was created
            return self.published[name][port]
        res = self.ctx.podman("port", name, f"{port}/tcp", check=False)
        out = res.stdout.strip().splitlines()
        if not out:
            self._fail_if_exited(name)  # an exited container has no ports
            raise PlatformError(f"container {name}: port {port} is not published")
        return int(out[0].rsplit(":", 1)[1])

    def _fail_if_exited(self, name: str) -> None:
        state = self._inspect(name).get("State", {})
        if state and not state.get("Running", False):
            raise waits.Fatal(
                f"container {name} exited (code {state.get('ExitCode')}) before it was ready; "
                f"last log lines:\n{self._log_tail(name)}\nnext: {self._logs_hint(name)}"
            )

    def _labelled_pods(self) -> list[str]:
        try:
            return [str(p["Name"]) for p in self.ctx.podman.pods(f"label={RUN_LABEL}={self.ctx.run_id}")]
        except (CommandError, json.JSONDecodeError):
            return []

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
            return [n for n in waits.map_all(pool, kill, names) if n]

    def _flush_before_end(self, service: str) -> None:
        """What the old process counted survives a restart or stop that kills it at the grace period."""
        if self.ctx.coverage_mode.flushes and coverflush.flushable(self.ctx.config, service):
            self.flush_coverage([service])


def _template_claims(doc: Doc) -> dict[str, str]:
    """A StatefulSet's volumeClaimTemplates -> the claim of its one pod (`<template>-<name>-0`)."""
    if doc.get("kind") != "StatefulSet":
        return {}
    name = doc["metadata"]["name"]
    templates = (doc.get("spec") or {}).get("volumeClaimTemplates") or []
    return {t["metadata"]["name"]: f"{t['metadata']['name']}-{name}-0" for t in templates}


def _resolve_port(port: int | str, ctr: Doc) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for p in ctr.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    raise PlatformError(f"container {ctr.get('name')}: no port named {port!r}")


def _readiness(ctr: Doc) -> dict[str, Any] | None:
    """What the readiness wait asks: the readiness probe, after the startup probe when there is one."""
    found = _probe(ctr, ctr.get("readinessProbe") or {}) or {}
    startup = _probe(ctr, ctr.get("startupProbe") or {})
    if startup:
        found["startup"] = startup
    return found or None


def _probe(ctr: Doc, probe: Doc) -> dict[str, Any] | None:
    if "httpGet" in probe:
        return {
            "http": probe["httpGet"].get("path", "/"),
            "port": _resolve_port(probe["httpGet"]["port"], ctr),
        }
    if "tcpSocket" in probe:
        return {"tcp": _resolve_port(probe["tcpSocket"]["port"], ctr)}
    if "exec" in probe:
        return {
            "exec": list(probe["exec"].get("command") or []),
            "timeout": int(probe.get("timeoutSeconds", 1)),
        }
    return None


def _secret_data(doc: Doc) -> dict[str, bytes]:
    try:
        data = {k: base64.b64decode(v, validate=True) for k, v in (doc.get("data") or {}).items()}
    except (binascii.Error, ValueError) as err:
        raise PlatformError(f"{ident(doc)} ({_source(doc)}): data is not valid base64: {err}") from None
    data.update({k: str(v).encode() for k, v in (doc.get("stringData") or {}).items()})
    return data


def _text(value: bytes, kind: str, name: str, key: str) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise PlatformError(
            f"{kind} {name!r}: key {key!r} is not UTF-8 text and cannot be an env value"
        ) from None


def _target_port(port: Doc, ctr: Doc) -> int:
    target: int | str = port["targetPort"] if "targetPort" in port else port["port"]
    return _resolve_port(target, ctr)


def _source(doc: Doc) -> str:
    return str(doc["metadata"].get("annotations", {}).get("e2e-harness/source", "manifests"))
