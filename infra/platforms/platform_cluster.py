"""`--platform cluster`: any Kubernetes cluster the harness never creates or deletes, fed by a registry.

Nothing is taken implicitly: the kubeconfig, its context and the registry are named in e2e.toml
([platform.cluster]) or by E2E_KUBECONFIG, E2E_CONTEXT, E2E_REGISTRY, E2E_INSECURE_REGISTRY (these
win), never the kubeconfig's current context. The run gets a namespace of its own, labelled with
the run, its owner and its creation time, deleted at teardown; or, with `namespace = "NAME"`, works
in an existing namespace and deletes only what it applied. Images go through the registry under
their content tags; services are reached through port-forwards on the run's 127.0.0.1 ports.
"""

from __future__ import annotations

import copy
import getpass
import http.client
import io
import logging
import os
import secrets
import socket
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra import waits
from infra.builds import push, third_party
from infra.checks import Check
from infra.cleanup import runlock
from infra.config import Config
from infra.console import say
from infra.gocover import coverflush
from infra.images import ImageRef, check_registry
from infra.names import LABEL, RUN_LABEL, InvalidName, check_dns_label, resource_name
from infra.platforms import forwards
from infra.platforms.kube import KubeApi, RealKubeApi
from infra.platforms.manifests import Doc, ManifestError, Rendered, containers
from infra.platforms.platform import Context, PlatformError, Request, Sweep, Swept
from infra.platforms.platform_kube import KubePlatform
from infra.podman_cli import Podman
from infra.proc import Runner

log = logging.getLogger("infra.cluster")

OWNER_LABEL = "io.e2e-harness.owner"
CREATED_LABEL = "io.e2e-harness.created"  # unix seconds: a label value holds no ':'
ENV = {
    "kubeconfig": "E2E_KUBECONFIG",
    "context": "E2E_CONTEXT",
    "registry": "E2E_REGISTRY",
    "insecure_registry": "E2E_INSECURE_REGISTRY",
}
CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "StorageClass",
    "PersistentVolume", "PriorityClass", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
    "APIService", "IngressClass", "RuntimeClass", "CSIDriver", "VolumeSnapshotClass",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "FlowSchema",
    "PriorityLevelConfiguration",
}  # fmt: skip
"""Kinds whose objects live outside any namespace: on a shared cluster, other teams' too."""
NEXT = (
    "set it in [platform.cluster] of {file} or as {env}; for this machine, `inv local-cluster up` "
    "prints the four exports"
)


class TargetError(PlatformError):
    pass


@dataclass(frozen=True)
class Target:
    """The cluster a run uses, resolved once from e2e.toml and the environment."""

    kubeconfig: Path
    context: str
    registry: str
    insecure: bool
    namespace: str  # an existing one, or "" for one per run
    mirror_third_party: bool
    cluster_scoped: str

    def line(self) -> str:
        return f"context {self.context} ({self.kubeconfig}), registry {self.registry}" + (
            " (plain HTTP)" if self.insecure else ""
        )


def _flag(value: str, name: str) -> bool:
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise TargetError(f"{name}={value!r}: use true or false")


def target(config: Config, env: dict[str, str] | None = None) -> Target:
    """The target, or an error naming what is missing and where to set it: before anything starts."""
    env = dict(os.environ if env is None else env)
    cfg = config.platform.cluster
    file = config.source_file

    def pick(key: str, configured: str) -> str:
        value = env.get(ENV[key], "") or configured
        if not value:
            raise TargetError(f"--platform cluster needs a {key}; " + NEXT.format(file=file, env=ENV[key]))
        return value

    kubeconfig = Path(pick("kubeconfig", str(config.path(cfg.kubeconfig)) if cfg.kubeconfig else ""))
    if not kubeconfig.is_file():
        raise TargetError(
            f"kubeconfig {kubeconfig} not found; " + NEXT.format(file=file, env=ENV["kubeconfig"])
        )
    context = pick("context", cfg.context)
    registry = pick("registry", cfg.registry)
    try:
        check_registry(registry)
    except InvalidName as err:
        raise TargetError(str(err)) from None
    insecure_env = env.get(ENV["insecure_registry"])
    insecure = _flag(insecure_env, ENV["insecure_registry"]) if insecure_env else cfg.insecure_registry
    _check_context(kubeconfig, context)
    return Target(
        kubeconfig, context, registry, insecure, cfg.namespace, cfg.mirror_third_party, cfg.cluster_scoped
    )


def _check_context(kubeconfig: Path, context: str) -> None:
    import yaml

    try:
        data = yaml.safe_load(kubeconfig.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise TargetError(f"kubeconfig {kubeconfig} cannot be read: {err}") from None
    names = [c.get("name") for c in data.get("contexts") or []]
    if context not in names:
        raise TargetError(
            f"context {context!r} is not in kubeconfig {kubeconfig} "
            f"(it has: {', '.join(map(str, names)) or 'none'}); next: set E2E_CONTEXT to one of them"
        )


def refusals(target_: Target, rendered: Rendered) -> list[str]:
    """What this cluster cannot take from the manifests, before anything starts."""
    if target_.cluster_scoped == "allow":
        return []
    return [
        f"{d['kind']}/{d['metadata']['name']} is cluster-scoped: on a shared cluster it would touch "
        'other teams\' objects; next: remove it from the manifests, or set cluster_scoped = "allow" '
        "in [platform.cluster]"
        for d in rendered.docs
        if d.get("kind") in CLUSTER_SCOPED
    ]


class ClusterPlatform(KubePlatform):
    name = "cluster"
    images_step = "push"
    coverage_via = "pull"
    on_this_machine = False

    def __init__(
        self,
        ctx: Context,
        api_factory: Callable[[Path, str], KubeApi] = RealKubeApi,
        target_: Target | None = None,
    ) -> None:
        self.target = target_ or target(ctx.config)
        namespace = self.target.namespace or resource_name(ctx.run_id, ctx.config.platform.namespace)
        t = self.target
        super().__init__(ctx, check_dns_label("namespace", namespace), t.kubeconfig,
                         lambda: api_factory(t.kubeconfig, t.context))  # fmt: skip
        self.own_namespace = not self.target.namespace
        self.brings_third_party = self.target.mirror_third_party  # else the nodes pull them
        self.server = ""
        self.applied: list[dict[str, Any]] = []  # in an existing namespace: what teardown deletes
        self.forwarder: forwards.Forwarder | None = None
        self._streams: KubeApi | None = None
        self._drained: set[str] = set()  # pods whose keeper handed over and was let go
        self._opening = threading.Lock()

    def open_stream(self, pod: str, port: int) -> Any:
        """A socket to a pod's port through the API server. Its own client, one opening at a time: the
        kubernetes client opens a stream by swapping its client's call_api for a moment, so another
        call through the same client meanwhile would take the stream's path."""
        with self._opening:
            if self._streams is None:
                self._streams = self._api_factory()
            return self._streams.open_port(pod, self.namespace, port)

    @classmethod
    def refusals(cls, request: Request) -> list[str]:
        cfg, problems = request.config, []
        if request.reuse:
            problems.append("--reuse names a kind cluster; --platform cluster never creates one to reuse")
        if request.coverage:  # pulled over HTTP from the listener the flush file adds: it must be there
            if not coverflush.enabled(cfg):
                problems.append(
                    "--coverage on --platform cluster pulls counters over HTTP, which "
                    f'coverage.flush_signal = "off" in {cfg.source_file} turns off with the flush '
                    "file; next: remove that line"
                )
            problems += [
                f"--coverage on --platform cluster: service {s.name} is built from its own Containerfile, to "
                "which the harness cannot add the listener it pulls counters from; next: drop --coverage, or "
                "run it on --platform kind (its counters come from the graceful stop there)"
                for s in cfg.services
                if s.containerfile is not None
            ]
        if request.keeps_stack:
            problems.append(
                "`up` on --platform cluster: its endpoints are port-forwards that end with the command; "
                "next: `nox -s e2e -- --platform cluster` (add --keep to keep the namespace)"
            )
        try:
            t = target(cfg)
        except TargetError as err:
            return [*problems, str(err)]
        say(f"cluster target: {t.line()}")
        try:
            rendered = Rendered(request.docs())
        except ManifestError as err:
            return [*problems, str(err)]
        return problems + refusals(t, rendered)

    @classmethod
    def clean(cls, config: Config, runner: Runner, podman: Podman, what: Sweep) -> Swept:
        return clean(config, older_than=what.older_than, dry_run=what.dry_run)

    @classmethod
    def doctor(cls, config: Config, runner: Runner, podman: Podman, *, cached: bool) -> list[Check]:
        return [] if cached else doctor(config, podman)  # a run asks the API server in its cluster phase

    def where(self) -> str:
        return f"{self.target.context} ({self.server or self.target.kubeconfig})"

    # -- lifecycle -------------------------------------------------------------
    def create(self) -> None:
        try:
            version = self.api.version()
        except Exception as err:  # noqa: BLE001 - any failure here means the cluster is not reachable
            said = " ".join(str(err).split())[:300]
            raise PlatformError(
                f"the API server of context {self.target.context} did not answer: {said}; next: check "
                f"that the cluster is up and reachable from here (`{self.kubectl()} version`)"
            ) from None
        self.server = self.api.server()
        say(f"cluster: context {self.target.context}, server {self.server}, Kubernetes {version}")
        if self.own_namespace:
            labels = {
                LABEL: "true",
                RUN_LABEL: self.ctx.run_id,
                OWNER_LABEL: _owner(),
                CREATED_LABEL: str(int(time.time())),
            }
            self.api.ensure_namespace(self.namespace, labels)
        elif not self.api.namespace_exists(self.namespace):
            raise PlatformError(
                f"namespace {self.namespace} (platform.cluster.namespace) does not exist in {self.where()}; "
                "next: have it created, or remove `namespace` to get one per run"
            )
        self._start_forwards()

    def _start_forwards(self) -> None:
        routes = []
        for svc in self.ctx.config.services:
            if not svc.node_port:
                continue
            for doc in self.ctx.rendered.docs:
                if doc.get("kind") != "Service":
                    continue
                for port in doc["spec"].get("ports") or []:
                    if port.get("nodePort") == svc.node_port:
                        local = self.ctx.host_ports[svc.node_port]
                        routes.append(forwards.Route(local, doc["metadata"]["name"], int(port["port"])))
        if routes:
            self.forwarder = forwards.Forwarder(self.api, self.open_stream, self.namespace, routes)
            self.forwarder.start()

    def teardown(self) -> None:
        if self.forwarder is not None:
            for line in self.forwarder.report():
                say(line)
            self.forwarder.stop()
        if self.own_namespace:
            self.api.delete_namespace(self.namespace)
            waits.poll(
                f"namespace {self.namespace} to be deleted from {self.where()}",
                lambda: waits.Observation(not self.api.namespace_exists(self.namespace), "still terminating"),
                timeout=self.ctx.config.timeouts.deploy,
                interval=0.5,
                hint=f"{self.kubectl()} get all",
            )
            return
        for doc in reversed(self.applied):
            self.api.delete(doc, self.namespace)

        def gone() -> waits.Observation[None]:  # foreground deletion: an owner goes after its pods
            left = [
                f"{d['kind']}/{d['metadata']['name']}"
                for d in self.applied
                if self.api.exists(d, self.namespace)
            ]
            return waits.Observation(not left, f"still there: {', '.join(left)}")

        waits.poll(
            f"the run's objects in namespace {self.namespace} to be deleted",
            gone,
            timeout=self.ctx.config.timeouts.deploy,
            interval=0.5,
            hint=f"{self.kubectl()} get all",
        )

    # -- images ---------------------------------------------------------------------
    def load_images(self, refs: Sequence[ImageRef]) -> None:
        """Push what the cluster cannot pull from elsewhere, then name the pushed images in the manifests."""
        cfg = self.ctx.config
        wanted = self.pushed_refs(refs)
        done = push.push(self.ctx.podman, wanted, self.target.registry, insecure=self.target.insecure,
                         timeout=cfg.timeouts.load)  # fmt: skip
        for outcome in done:
            say(outcome.line())
        self.step_seconds["push"] = sum(d.seconds for d in done)
        names = {str(d.local): str(d.remote) for d in done}
        for doc in self.ctx.rendered.docs:
            for ctr in containers(doc):
                if ctr["image"] in names:
                    ctr["image"] = names[ctr["image"]]
                    ctr["imagePullPolicy"] = "IfNotPresent"  # content tags never change what they name
        rendered_file = self.ctx.paths.artifacts / "manifests.rendered.yaml"
        if rendered_file.exists():
            rendered_file.write_text(self.ctx.rendered.yaml())

    def pushed_refs(self, refs: Sequence[ImageRef]) -> list[ImageRef]:
        """What goes to the registry: the harness's builds and stand-ins (third-party ones only with
        mirror_third_party: the nodes pull them)."""
        foreign, cfg = self.ctx.rendered.foreign, self.ctx.config  # not foreign: the services' images
        return [
            r for r in refs
            if r not in foreign or third_party.stand_in_for(cfg, r) or self.target.mirror_third_party
        ]  # fmt: skip

    def verify_images(self, rendered: Rendered) -> None:
        """The nodes pull: an image they cannot pull ends the rollout wait at once (ImagePullBackOff)."""

    # -- workloads -------------------------------------------------------------------
    def deploy(self, service: str, docs: list[Doc]) -> None:
        docs = [_cluster_ip(d) for d in docs]
        for doc in docs:
            self.applied.append({"apiVersion": doc["apiVersion"], "kind": doc["kind"],
                                 "metadata": {"name": doc["metadata"]["name"]}})  # fmt: skip
        super().deploy(service, docs)

    def kubectl(self) -> str:
        from infra.builds import rendertools

        return (
            f"{rendertools.kubectl()} --kubeconfig {self.target.kubeconfig} --context {self.target.context} "
            f"-n {self.namespace}"
        )

    def _live_hint(self, kubectl_args: str) -> str:
        keep = (
            ""
            if not self.own_namespace
            else " (the namespace stays only with --keep or E2E_KEEP_ON_FAILURE=1)"
        )
        return (
            f"the pods' events and logs are in the run's diagnostics (cluster/){keep}: "
            f"{self.kubectl()} {kubectl_args}"
        )

    def collect_diagnostics(self, into: Path) -> None:
        self.collect_api_diagnostics(into)

    # -- coverage pulled over HTTP (no node to read a hostPath on) ----------------------------------
    def flush_coverage(self, services: Sequence[str] | None = None) -> dict[str, list[str]]:
        """Pull each running process's counters (and clear them) through a port-forward to the port
        the coverage build serves them on; written into the run's covdata as a flush writes them."""
        cfg = self.ctx.config
        if self.ctx.coverage_mode is not coverflush.CoverageMode.PULL:
            return {}
        names = [s for s in (list(self.workloads) if services is None else services)
                 if coverflush.flushable(cfg, s)]  # fmt: skip
        if not names:
            return {}
        with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="pull-coverage") as pool:
            pulled = waits.map_all(pool, self._pull_service, names)
        return {s: files for s, files in zip(names, pulled, strict=True) if files}

    def _pull_service(self, service: str) -> list[str]:
        files = []
        for ident in self.workloads.get(service, []):
            for pod in self.api.pods(self.namespace, self._selector(self._get(ident).get("spec", {}))):
                if _running(pod):
                    files += self._pull(service, str(pod["metadata"]["name"]))
        return files

    def restart(self, service: str) -> None:
        """As on kind; with coverage, also until the old pods are gone, what they wrote on their way out
        handed over (a kind node's hostPath keeps it; here their keepers must be asked)."""
        if not (self.ctx.coverage_mode.flushes and coverflush.flushable(self.ctx.config, service)):
            super().restart(service)
            return
        selectors = [self._selector(self._get(i).get("spec", {})) for i in self._idents(service)]
        old = {str(p["metadata"]["uid"]) for sel in selectors for p in self.api.pods(self.namespace, sel)}
        super().restart(service)

        def old_gone() -> waits.Observation[None]:
            pods = [p for sel in selectors for p in self.api.pods(self.namespace, sel)
                    if str(p["metadata"]["uid"]) in old]  # fmt: skip
            self._drain_leaving(service, pods)
            return waits.Observation(not pods, f"old pods left: {[p['metadata']['name'] for p in pods]}")

        waits.poll(f"the old pods of {service} to be gone", old_gone,
                   timeout=self.ctx.config.timeouts.stop + 30, interval=0.3)  # fmt: skip

    def _drain_leaving(self, service: str, pods: list[dict[str, Any]]) -> None:
        """A pod whose service process ended (a Job's, or one stopped) while its keeper runs: take what
        the process wrote on its way out, then let the keeper go (the pod ends with it)."""
        if not (
            self.ctx.coverage_mode.flushes and service and coverflush.flushable(self.ctx.config, service)
        ):
            return
        for pod in pods:
            name = str(pod["metadata"]["name"])
            main = ((pod.get("spec") or {}).get("containers") or [{}])[0].get("name", "")
            if name in self._drained or _state(pod, coverflush.KEEPER) != "running":
                continue
            # a pod being deleted shows its containers running until all have ended: the keeper waits
            # for the service's listener to go (its process's end) before it hands over
            leaving = bool((pod.get("metadata") or {}).get("deletionTimestamp"))
            if _state(pod, main) != "terminated" and not leaving:
                continue
            port = self.ctx.config.coverage.pull_port + 1
            directory = self.ctx.paths.covdata / service
            directory.mkdir(parents=True, exist_ok=True)
            got: list[str] = []
            try:
                left, _ = self._get_http(name, coverflush.PULL_PATH + "files?wait=1", port)
                got = _untar_counters(left, directory)
            except Exception as err:  # noqa: BLE001 - counted as lost, said; the pod ends either way
                say(f"coverage of {service}: what pod {name} wrote on its way out is lost: {err}")
            finally:
                self._drained.add(name)
                try:  # else the keeper holds the pod (a Job would not complete) for its own deadline
                    self._get_http(name, coverflush.PULL_PATH + "done", port)
                except Exception as err:  # noqa: BLE001 - the keeper ends itself once the pod is stopped
                    log.info("coverage keeper of pod %s not told it is done: %s", name, err)
            log.info(
                "coverage of %s: pod %s handed over %d counters file(s) on its way out",
                service,
                name,
                len(got),
            )

    def _get_http(self, pod: str, path: str, port: int = 0) -> tuple[bytes, str]:
        port = port or self.ctx.config.coverage.pull_port
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=self.ctx.config.coverage.flush_timeout)
        conn.sock = self.open_stream(pod, port)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise PlatformError(f"HTTP {resp.status}: {body[:200]!r}")
            return body, str(resp.getheader(coverflush.PID_HEADER) or "0")
        finally:
            conn.close()

    def _pull(self, service: str, pod: str) -> list[str]:
        directory = self.ctx.paths.covdata / service
        directory.mkdir(parents=True, exist_ok=True)
        try:
            metas = sorted(directory.glob("covmeta.*"))
            if metas:
                meta_hash = metas[0].name.split(".", 1)[1]
            else:
                meta, _ = self._get_http(pod, coverflush.PULL_PATH + "meta")
                meta_hash = coverflush.meta_hash(meta)
                (directory / f"covmeta.{meta_hash}").write_bytes(meta)
            counters, pid = self._get_http(pod, coverflush.PULL_PATH + "counters?clear=1")
            left, _ = self._get_http(pod, coverflush.PULL_PATH + "files")  # exec probes' exits
        except Exception as err:  # noqa: BLE001 - one line naming the pod, the port and the fix
            raise PlatformError(
                f"coverage of {service}: pod {pod} did not serve its counters on port "
                f"{self.ctx.config.coverage.pull_port} ({' '.join(str(err).split())[:300]}); next: check "
                "that its image is the harness's -cover build, and its logs for 'e2e-harness coverage'"
            ) from None
        name = f"covcounters.{meta_hash}.{int(pid) or 1}.{time.time_ns()}"
        (directory / name).write_bytes(counters)
        return [name, *_untar_counters(left, directory)]

    def state(self) -> dict[str, object]:
        t = self.target
        return {
            "context": t.context,
            "server": self.server,
            "registry": t.registry,
            "insecure_registry": t.insecure,
            "existing_namespace": t.namespace,
            "applied": self.applied,
            **self.kube_state(),
        }

    @classmethod
    def from_state(cls, ctx: Context, state: dict[str, Any]) -> ClusterPlatform:
        """As the run resolved it: `inv down` from another shell needs none of the E2E_* variables."""
        cfg = ctx.config.platform.cluster
        t = Target(
            Path(state["kubeconfig"]), str(state["context"]), str(state["registry"]),
            bool(state.get("insecure_registry")), str(state.get("existing_namespace", "")),
            cfg.mirror_third_party, cfg.cluster_scoped,
        )  # fmt: skip
        plat = cls(ctx, target_=t)
        plat.restore(state)
        plat.server = str(state.get("server", ""))
        plat.applied = list(state.get("applied", []))
        return plat


NEEDS = [
    # (verb, resource, group): what a run does in its namespace
    ("create", "deployments", "apps"), ("patch", "deployments", "apps"), ("create", "statefulsets", "apps"),
    ("create", "daemonsets", "apps"), ("create", "jobs", "batch"), ("create", "services", ""),
    ("create", "configmaps", ""), ("create", "secrets", ""), ("create", "persistentvolumeclaims", ""),
    ("list", "pods", ""), ("get", "pods/log", ""), ("create", "pods/portforward", ""), ("list", "events", ""),
    ("delete", "deployments", "apps"), ("delete", "services", ""),
]  # fmt: skip
DOCTOR_PULL_SECONDS = 60.0


def doctor(
    config: Config, podman: Podman, *, api_factory: Callable[[Path, str], KubeApi] = RealKubeApi
) -> list[Check]:
    """`inv doctor --platform cluster`: the target, the API server, the run's permissions (each verb
    missing named), and the registry: a push, then a node's pull of what was pushed."""
    try:
        t = target(config)
    except TargetError as err:
        return [Check("cluster target", False, str(err), "see `inv local-cluster up` for the exports")]
    found = [Check("cluster target", True, t.line())]
    api = api_factory(t.kubeconfig, t.context)
    try:
        found.append(Check("API server", True, f"{api.server()}: Kubernetes {api.version()}"))
    except Exception as err:  # noqa: BLE001 - unreachable or refused: said, and nothing more is asked
        said = " ".join(str(err).split())[:300]
        return [
            *found,
            Check("API server", False, said, "check that the cluster is up and reachable from here"),
        ]
    namespace = t.namespace or "default"
    where = f"namespace {namespace}" if t.namespace else "a namespace of its own (asked in default)"
    missing = []
    if not t.namespace:
        allowed, _ = api.can_i("create", "namespaces", "")
        missing += [] if allowed else ["create namespaces"]
    for verb, resource, group in NEEDS:
        allowed, _ = api.can_i(verb, resource, namespace, group)
        if not allowed:
            missing.append(f"{verb} {resource}")
    said = (
        f"missing in {where}: {', '.join(missing)}" if missing else f"a run may do what it needs in {where}"
    )
    fix = "ask for a Role with these verbs in the namespace (and `create namespaces`, or set namespace = ...)"
    found.append(Check("permissions", not missing, said, fix))
    found += _registry_findings(t, api, podman, namespace, can_pull=not missing)
    return found


def _registry_findings(
    t: Target, api: KubeApi, podman: Podman, namespace: str, *, can_pull: bool
) -> list[Check]:
    probe = ImageRef.parse("e2e-harness/doctor-probe:v1")  # one tag, pushed again: none pile up
    with tempfile.TemporaryDirectory(prefix="e2eh-doctor-") as tmp:
        archive = Path(tmp) / "probe.tar"
        with tarfile.open(archive, "w") as tar:
            info = tarfile.TarInfo("e2e-harness-probe")
            data = b"e2e-harness doctor\n"
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        podman.import_image(probe, archive, entrypoint=["/e2e-harness-probe"], labels={}, timeout=120)
    try:
        (done,) = push.push(podman, [probe], t.registry, insecure=t.insecure, timeout=300)
    except Exception as err:  # noqa: BLE001 - the push's own words name the registry and the fix
        podman("rmi", str(probe), check=False)
        fix = f"`podman login {t.registry.split('/')[0]}`, or insecure_registry for plain HTTP"
        return [Check("registry push", False, " ".join(str(err).split())[:400], fix)]
    podman("rmi", str(probe), check=False)
    found = [Check("registry push", True, f"pushed {done.remote} in {done.seconds:.1f}s")]
    if not can_pull:
        return [*found, Check("nodes' pull", False, "not tried: the permissions above are missing", "")]
    return [*found, _node_pull(api, namespace, str(done.remote))]


def _node_pull(api: KubeApi, namespace: str, image: str) -> Check:
    name = f"e2eh-doctor-{secrets.token_hex(3)}"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {LABEL: "true"}},
           "spec": {"restartPolicy": "Never", "containers": [{"name": "probe", "image": image,
                                                              "imagePullPolicy": "Always"}]}}  # fmt: skip
    fix = "point the nodes' container runtime at the registry (kind: `inv local-cluster up` does)"

    def pulled() -> waits.Observation[None]:
        events = [e for e in api.events(namespace) if (e.get("involvedObject") or {}).get("name") == name]
        for event in events:
            failed = event.get("reason") in ("Failed", "BackOff")
            if failed and "pull" in str(event.get("message", "")).lower():
                raise waits.Fatal(f"{image}: {event.get('message')}")
        reasons = [str(e.get("reason")) for e in events]
        return waits.Observation("Pulled" in reasons, ", ".join(reasons) or "no event yet")

    api.apply(pod, namespace)
    try:
        waits.poll(f"a node to pull {image} (pod {name})", pulled, timeout=DOCTOR_PULL_SECONDS, interval=0.5)
    except (waits.Fatal, waits.WaitTimeout) as err:
        return Check("nodes' pull", False, " ".join(str(err).split())[:400], fix)
    finally:
        api.delete(pod, namespace)
    return Check("nodes' pull", True, f"a node pulled {image}")


def clean(
    config: Config,
    *,
    older_than: float,
    dry_run: bool,
    api_factory: Callable[[Path, str], KubeApi] = RealKubeApi,
) -> tuple[list[str], list[str]]:
    """`cleanup --platform cluster`: the harness's own namespaces on the target's context, older than
    `older_than` and of no run still going on this machine; (removed, left). Nothing else is touched."""
    t = target(config)
    api = api_factory(t.kubeconfig, t.context)
    removed, left = [], []
    now = time.time()
    for ns in api.namespaces(f"{LABEL}=true,{RUN_LABEL}"):
        meta = ns["metadata"]
        labels = meta.get("labels") or {}
        name, run = str(meta["name"]), str(labels.get(RUN_LABEL, ""))
        try:
            age = now - float(labels.get(CREATED_LABEL, "0"))
        except ValueError:
            age = 0.0
        if meta.get("deletionTimestamp"):
            continue  # on its way out
        if age < older_than:
            left.append(f"namespace {name}: younger than --older-than")
            continue
        if runlock.is_alive(run):
            left.append(f"namespace {name}: its run {run} is still going")
            continue
        if runlock.is_kept(run):
            left.append(f"namespace {name}: kept on purpose; `{runlock.remove_command(run)}`")
            continue
        if not dry_run:
            api.delete_namespace(name)
        removed.append(f"namespace {name} (run {run}, owner {labels.get(OWNER_LABEL, '?')}) on {t.context}")
    return removed, left


def _untar_counters(data: bytes, into: Path) -> list[str]:
    """The counters files of a pull's tar (their names), and a meta-data file this directory lacks:
    plain names only, nothing else is written."""
    names = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            name = member.name
            counters, meta = name.startswith("covcounters."), name.startswith("covmeta.")
            if not member.isfile() or "/" in name or not (counters or meta) or (into / name).exists():
                continue
            fh = tar.extractfile(member)
            if fh is not None:
                (into / name).write_bytes(fh.read())
                names += [name] if counters else []
    return names


def _state(pod: dict[str, Any], container: str) -> str:
    """running, terminated, waiting, or "" (no status yet)."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == container:
            return next(iter(cs.get("state") or {}), "")
    return ""


def _running(pod: dict[str, Any]) -> bool:
    """Its service's process counts: running, not on its way out (not being ready still counts)."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    main = ((pod.get("spec") or {}).get("containers") or [{}])[0].get("name", "")
    return _state(pod, main) == "running"


def _cluster_ip(doc: Doc) -> Doc:
    """A NodePort Service as ClusterIP: NodePorts are cluster-wide (two runs, or two teams, would
    claim the same one) and the harness reaches the pods by port-forward."""
    if doc.get("kind") != "Service" or doc["spec"].get("type") != "NodePort":
        return doc
    doc = copy.deepcopy(doc)
    doc["spec"]["type"] = "ClusterIP"
    for port in doc["spec"].get("ports") or []:
        port.pop("nodePort", None)
    return doc


def _owner() -> str:
    """user.host as a label value can hold it."""
    raw = f"{getpass.getuser()}.{socket.gethostname()}"
    value = "".join(c if c.isalnum() or c in "-_." else "-" for c in raw)[:63].strip("-_.")
    return value or "unknown"
