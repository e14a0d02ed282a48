"""The real cluster: kind (podman provider), driven by argv and the Kubernetes API.

Every kind call gets --name (and --kubeconfig where it takes one) so the
user's ~/.kube/config and other clusters are never touched. Images in the
nodes are read with `ctr -n k8s.io`, which every kind node has (crictl is not
in every node image).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from infra import waits
from infra.builds.build import save_images
from infra.cleanup import runlock
from infra.console import say
from infra.gocover import coverflush
from infra.images import ImageRef, same_image_id
from infra.kind_cli import load_archive_args, run_kind
from infra.names import LABEL, RUN_LABEL, check_dns_label, resource_name
from infra.paths import make_open_dir, scratch_dir
from infra.platforms import hostfixes, kind_config
from infra.platforms.kube import KubeApi, RealKubeApi
from infra.platforms.manifests import JOB_KINDS, WORKLOAD_KINDS, Doc, Rendered
from infra.platforms.platform import Context, ImageMissing, PlatformError
from infra.proc import CommandError, tail

log = logging.getLogger("infra.kind")

# Waiting reasons after which more waiting cannot help: report them at once.
FATAL_REASONS = {
    "ErrImageNeverPull",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}
CTR = ("ctr", "--namespace", "k8s.io")
KIND_PROVISIONER, KIND_PROVISIONER_NAMESPACE = "rancher.io/local-path", "local-path-storage"
"""kind's default storage: its StorageClass is made even where its provisioner's image cannot be pulled."""
STOPPED_LABEL = "io.e2e-harness/stopped"
"""A DaemonSet cannot scale to 0: a nodeSelector no node matches stops its pods gracefully."""
SCALABLE = ("Deployment", "StatefulSet")
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
BUSY = "device or resource busy"  # podman rm of a node, racing the unmount of its shm
DELETE_RETRY_SECONDS = 30.0


def workload_id(kind: str, name: str) -> str:
    return f"{kind}/{name}"


def split_id(ident: str) -> tuple[str, str]:
    kind, name = ident.split("/", 1)
    return kind, name


def rollout(obj: dict[str, Any]) -> tuple[bool, str]:
    """Whether a Deployment, StatefulSet or DaemonSet is rolled out, and what was seen."""
    kind, spec, status = obj.get("kind", ""), obj.get("spec", {}), obj.get("status") or {}
    observed = status.get("observedGeneration", 0) >= obj.get("metadata", {}).get("generation", 0)
    if kind == "DaemonSet":
        want = status.get("desiredNumberScheduled", 0)
        ready, updated = status.get("numberReady", 0), status.get("updatedNumberScheduled", 0)
        available = status.get("numberAvailable", 0)
        seen = f"scheduled {want}, updated {updated}, ready {ready}, available {available}"
        return observed and want > 0 and ready == updated == available == want, seen
    want = int(spec.get("replicas", 1))
    replicas, updated = status.get("replicas", 0), status.get("updatedReplicas", 0)
    ready_key = "readyReplicas" if kind == "StatefulSet" else "availableReplicas"
    ready = status.get(ready_key, 0)
    word = "ready" if kind == "StatefulSet" else "available"
    seen = f"replicas {replicas}, updated {updated}, {word} {ready} of {want}"
    return observed and replicas == updated == ready == want, seen


class KindPlatform:
    name = "kind"

    def __init__(self, ctx: Context, api_factory: Callable[[Path], KubeApi] = RealKubeApi) -> None:
        self.ctx = ctx
        self.cluster = check_dns_label("cluster", ctx.cluster or resource_name(ctx.run_id))
        self.namespace = resource_name(ctx.run_id, ctx.config.platform.namespace)
        self.provider = ctx.config.platform.kind_provider
        self.kubeconfig = ctx.paths.kubeconfig
        self.workloads: dict[str, list[str]] = {}  # service -> ["Deployment/name", ...]
        self.replicas: dict[str, int] = {}  # "Deployment/name" -> replicas as deployed
        self.jobs: dict[str, list[str]] = {}  # service -> its Jobs, completed during deploy
        self.node_image = ""
        self.step_seconds: dict[str, float] = {}  # parts of a phase, for the bench
        self.past_logs: dict[str, list[str]] = {}  # service -> logs of pods a restart/stop ended
        self._ended_pods: set[str] = set()  # by uid: a StatefulSet's new pod has the old one's name
        self._instance_logs: dict[str, dict[int, str]] = {}  # pod uid -> restart number -> its log
        self._storage_class: str | None = None  # the default StorageClass, once asked
        self._api_factory = api_factory
        self._api: KubeApi | None = None

    # -- commands ------------------------------------------------------------
    def kind(self, *args: str, timeout: float | None = None, check: bool = True, hint: str = "") -> str:
        timeout = timeout or self.ctx.config.timeouts.command
        ctx = self.ctx
        return run_kind(
            ctx.runner, ctx.podman, self.provider, *args, timeout=timeout, check=check, hint=hint
        ).stdout

    def node_exec(self, node: str, *args: str, check: bool = True) -> str:
        res = self.ctx.runner.run(
            [self.provider, "exec", node, *args],
            timeout=self.ctx.config.timeouts.command,
            env=dict(self.ctx.podman.env),
            check=check,
        )
        return res.stdout

    @property
    def api(self) -> KubeApi:
        if self._api is None:
            self._api = self._api_factory(self.kubeconfig)
        return self._api

    def clusters(self) -> list[str]:
        return self.kind("get", "clusters").split()

    def nodes(self) -> list[str]:
        return self.kind("get", "nodes", "--name", self.cluster).split()

    # -- lifecycle -------------------------------------------------------------
    def config_doc(self, fixes: Sequence[hostfixes.HostFix]) -> dict[str, Any]:
        cfg = self.ctx.config
        mounts = {self.ctx.paths.covdata.resolve(): cfg.coverage.mount} if self.ctx.coverage else {}
        return kind_config.render(
            kind_config.load_base(kind_config.base_file(cfg)[0]),
            workers=cfg.platform.kind_workers,
            host_ports=self.ctx.host_ports,
            mounts=mounts,
            kubeadm_patches=[f.kubeadm_patch for f in fixes if f.kubeadm_patch],
            containerd_patches=[f.containerd_patch for f in fixes if f.containerd_patch],
        )

    def create(self) -> None:
        self.ctx.paths.run_dir.mkdir(parents=True, exist_ok=True)
        if self.ctx.reuse:
            self._reuse()
        else:
            self._create_cluster()
        if self.kubeconfig.exists():
            self.kubeconfig.chmod(0o600)
        self.api.ensure_namespace(self.namespace, {LABEL: "true", RUN_LABEL: self.ctx.run_id})

    def _create_cluster(self) -> None:
        if self.cluster in self.clusters():
            raise PlatformError(
                f"kind cluster {self.cluster} already exists (node(s) of an earlier run); "
                "next: `inv clean-stale-clusters --older-than 0s`"
            )
        from infra.nodeimage import select

        self._remove_dead_runs_clusters()
        note = hostfixes.ensure_lib_modules()
        if note:
            say(f"host fix: {note}")
        fixes = hostfixes.detect()
        for fix in fixes:
            say(f"host fix: {fix.name} ({fix.detected}) -> {fix.remedy}")
        choice = select.node_image(self.ctx.runner, self.ctx.podman, self.ctx.config.platform.kind_node_image)
        self.node_image = choice.image
        say(f"kind node image: {choice.image} ({choice.reason})")
        if self.ctx.coverage:  # kind refuses an extraMount whose host directory is missing
            make_open_dir(self.ctx.paths.covdata)
        cfg_file = kind_config.dump(self.config_doc(fixes), self.ctx.paths.run_dir / "kind-config.yaml")
        self.kind(
            "create", "cluster", "--name", self.cluster, "--config", str(cfg_file),
            "--kubeconfig", str(self.kubeconfig), "--image", choice.image, "--wait", "120s",
            timeout=self.ctx.config.timeouts.cluster,
            hint=f"read {self.ctx.paths.diagnostics / self.name / 'kind-logs'} (each node's journal, "
            "kubelet and containers, exported before the teardown); a leftover? `inv clean-stale-clusters`",
        )  # fmt: skip

    def _remove_dead_runs_clusters(self) -> None:
        """Clusters of the harness's own interrupted runs (no live lock, not kept); never anyone else's."""
        from infra.cleanup import cleanup

        report = cleanup.clean_stale_clusters(
            self.ctx.runner, self.ctx.podman, older_than=0, dry_run=False, all_=False,
            provider=self.provider, scratch=scratch_dir(self.ctx.paths.root),
        )  # fmt: skip
        for line in report.removed:
            say(f"removed a leftover of an interrupted run: {line}")

    def _reuse(self) -> None:
        """An existing cluster: its own port mappings, this run's namespace made afresh."""
        if self.cluster not in self.clusters():
            raise PlatformError(f"--reuse {self.cluster}: no such kind cluster; next: `kind get clusters`")
        self.kind("export", "kubeconfig", "--name", self.cluster, "--kubeconfig", str(self.kubeconfig))
        self.ctx.host_ports = self._mapped_ports()
        # reset: the stack an earlier run left holds the same NodePorts; a live run's is refused
        stale = []
        for ns in self.api.namespaces(f"{LABEL}=true"):
            name, run = ns["metadata"]["name"], (ns["metadata"].get("labels") or {}).get(RUN_LABEL, "")
            if name != self.namespace and run and runlock.is_alive(run):
                raise PlatformError(
                    f"--reuse {self.cluster}: run {run} is using it (namespace {name}) and the same "
                    "NodePorts; next: wait for that run, or give this one a cluster of its own"
                )
            stale.append(name)
        for name in stale:
            self.api.delete_namespace(name)
            if name != self.namespace:
                say(f"--reuse {self.cluster}: removed namespace {name} of an earlier run (reset)")
        if stale:
            waits.poll(
                f"namespace(s) {', '.join(stale)} of cluster {self.cluster} to be deleted (reset)",
                lambda: waits.Observation(
                    not any(self.api.namespace_exists(n) for n in stale), "still terminating"
                ),
                timeout=self.ctx.config.timeouts.deploy,
                interval=0.5,
            )

    def _mapped_ports(self) -> dict[int, int]:
        """NodePort -> 127.0.0.1 port, as the reused cluster's control-plane container publishes them."""
        node = f"{self.cluster}-control-plane"
        out = self.ctx.podman("port", node, check=False).stdout
        found = {
            int(m.group(1)): int(m.group(2))
            for m in re.finditer(r"^(\d+)/tcp -> 127\.0\.0\.1:(\d+)$", out, re.MULTILINE)
        }
        wanted = {s.node_port for s in self.ctx.config.services if s.node_port}
        missing = sorted(wanted - set(found))
        if missing:
            raise PlatformError(
                f"--reuse {self.cluster}: NodePort(s) {missing} are not published on 127.0.0.1 by {node}; "
                "next: make the cluster with the harness (`inv up --platform kind`), or add "
                "extraPortMappings for them"
            )
        return {port: found[port] for port in wanted}

    # -- images ---------------------------------------------------------------------
    def node_refs(self, node: str) -> dict[str, str]:
        """Image reference -> manifest digest, as the node's containerd lists them."""
        out = self.node_exec(node, *CTR, "images", "list")
        refs = {}
        for line in out.splitlines()[1:]:
            cols = line.split()
            if len(cols) >= 3 and cols[2].startswith("sha256:"):
                refs[cols[0]] = cols[2]
        return refs

    def config_digest(self, node: str, digest: str) -> str:
        """The image ID (config digest) behind a manifest or index digest in a node."""
        for _ in range(3):  # index -> manifest -> config
            doc = json.loads(self.node_exec(node, *CTR, "content", "get", digest, check=False) or "{}")
            if "config" in doc:
                return str(doc["config"]["digest"])
            manifests = [
                m
                for m in doc.get("manifests", [])
                if m.get("platform", {}).get("architecture") in (None, "amd64")
            ]
            if not manifests:
                return ""
            digest = manifests[0]["digest"]
        return ""

    def load_images(self, refs: Sequence[ImageRef]) -> None:
        """podman save + kind load image-archive, skipping images every node holds by ID."""
        start = time.monotonic()
        nodes = self.nodes()
        if not nodes:
            raise PlatformError(f"kind cluster {self.cluster} has no nodes; next: `kind get clusters`")
        held = {node: self.node_refs(node) for node in nodes}
        missing = []
        for ref in refs:
            local = self.ctx.podman.image_id(ref)
            ids = [self.config_digest(n, held[n][str(ref)]) if str(ref) in held[n] else "" for n in nodes]
            if not all(same_image_id(local, i) for i in ids):
                missing.append(ref)
        self.step_seconds["load_check"] = time.monotonic() - start
        if not missing:
            log.info("all %d images already in the nodes of %s: load skipped", len(refs), self.cluster)
            say(f"images: all {len(refs)} already in every node of {self.cluster} (same IDs): load skipped")
            return
        archive, timeout = self.ctx.paths.archive, self.ctx.config.timeouts.load
        try:
            start = time.monotonic()
            save_images(self.ctx.podman, missing, archive, timeout)
            self.step_seconds["image_save"] = time.monotonic() - start
            start = time.monotonic()
            self.kind(*load_archive_args(archive, self.cluster), timeout=timeout)
            self.step_seconds["kind_load"] = time.monotonic() - start
        finally:
            archive.unlink(missing_ok=True)
        say(f"images: loaded {', '.join(map(str, missing))} into {', '.join(nodes)}")

    def verify_images(self, rendered: Rendered) -> None:
        """Every referenced image must be in every node before anything waits on it."""
        wanted = rendered.image_refs()
        if not wanted:
            return
        problems = []
        for node in self.nodes():
            have = set(self.node_exec(node, *CTR, "images", "list", "--quiet").split())
            problems += [
                f"{ref} (used by {who}) is not in node {node}"
                for ref, who in sorted(wanted.items())
                if ref not in have
            ]
        if problems:
            raise ImageMissing(
                "; ".join(problems) + ". next: an image the harness builds is referenced as "
                "localhost/<name>:<tag> exactly as built (see `inv images`) and loaded with "
                "`inv load-image`; a third-party one is loaded with them by its full name "
                "(see the images:third-party, images:stand-ins and images:go-stand-ins phases)"
            )

    # -- workloads -------------------------------------------------------------------
    def deploy(self, service: str, docs: list[Doc]) -> None:
        self._claims_can_bind(docs)
        for doc in docs:  # in apply order: a Job (a migration) completes before the workloads start
            self.api.apply(doc, self.namespace)
            if doc["kind"] in WORKLOAD_KINDS:
                ident = workload_id(doc["kind"], doc["metadata"]["name"])
                # a shared workload (postgres) is handled by its own name
                self.workloads.setdefault(service or doc["metadata"]["name"], []).append(ident)
                self.replicas[ident] = int(doc["spec"].get("replicas", 1))
            elif doc["kind"] in JOB_KINDS:
                self.jobs.setdefault(service, []).append(doc["metadata"]["name"])
                self._wait_job(doc["metadata"]["name"])

    def _claims_can_bind(self, docs: list[Doc]) -> None:
        """A claim with no StorageClass binds only where a default one provisions volumes: without it
        its pods would wait the whole readiness timeout, Pending."""
        claims = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
        claims += [d for d in docs if d["kind"] == "StatefulSet" and d["spec"].get("volumeClaimTemplates")]
        if not claims or self._storage_class is not None:
            return
        found = self.api.default_storage_class()
        why = "has no default StorageClass to provision them"
        if found.get("provisioner") == KIND_PROVISIONER:  # kind's own: its pod must be running to provision
            pods = self.api.pods(KIND_PROVISIONER_NAMESPACE, "")
            ready = [p for p in pods if all(c.get("ready") for c in _statuses(p) or [{}])]
            if not ready:
                why = f"has StorageClass {found['name']}, whose provisioner ({KIND_PROVISIONER}) does not run"
                found = {}
        if not found:
            names = ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in claims)
            raise PlatformError(
                f"{names}: persistent volume claims, and cluster {self.cluster} {why}; next: run this stack "
                "on podman, or on a cluster whose default StorageClass provisions volumes (the harness's "
                "node image does: kind's hostPath provisioner)"
            )
        self._storage_class = found["name"]

    def _wait_job(self, name: str) -> None:
        """Until the Job completes; its Failed condition or a pod that cannot start ends the wait at once."""
        selector = {"selector": {"matchLabels": {JOB_NAME_LABEL: name}}}

        def probe() -> waits.Observation[None]:
            status = self.api.job(name, self.namespace).get("status") or {}
            true = {c["type"]: c for c in status.get("conditions") or [] if c.get("status") == "True"}
            failed = int(status.get("failed") or 0)
            active, succeeded = status.get("active") or 0, status.get("succeeded") or 0
            seen = f"active {active}, succeeded {succeeded}, failed {failed}"
            if "Complete" in true:
                return waits.Observation(True, seen)
            if "Failed" in true:
                cond = true["Failed"]
                raise waits.Fatal(
                    f"job {name} failed ({cond.get('reason')}: {cond.get('message')}); {seen}"
                    f"{self._last_job_log(name)}\nnext: {self._live_hint(f'logs job/{name}')}"
                )
            self._raise_if_stuck(workload_id("Job", name), selector)
            return waits.Observation(False, seen + (self._last_job_log(name) if failed else ""))

        waits.poll(
            f"job {name} in namespace {self.namespace} to complete",
            probe,
            timeout=self.ctx.config.timeouts.job,
            interval=0.5,
            hint=self._live_hint(f"describe job {name}"),
        )

    def _last_job_log(self, name: str) -> str:
        """The log of the Job's newest failed pod: why the attempt failed."""
        pods = [
            p
            for p in self.api.pods(self.namespace, f"{JOB_NAME_LABEL}={name}")
            if (p.get("status") or {}).get("phase") == "Failed"
        ]
        if not pods:
            return ""
        newest = max(pods, key=lambda p: str(p["metadata"].get("creationTimestamp", "")))
        pod = newest["metadata"]["name"]
        try:
            text = self.api.pod_log(pod, self.namespace, tail=20, container=_main_container(newest))
        except Exception as err:  # noqa: BLE001 - the failure is reported either way
            text = f"(log unavailable: {err})"
        return f"; last log lines of pod {pod}:\n{tail(text, 20)}"

    def _get(self, ident: str) -> dict[str, Any]:
        kind, name = split_id(ident)
        obj = self.api.workload(kind, name, self.namespace)
        obj.setdefault("kind", kind)
        return obj

    def wait_ready(self, service: str) -> None:
        for ident in self.workloads.get(service, []):
            kind, name = split_id(ident)
            try:
                waits.poll(
                    f"{kind.lower()} {name} in namespace {self.namespace} to roll out",
                    lambda i=ident: self._rollout(i),  # type: ignore[misc]
                    timeout=self.ctx.config.timeouts.ready,
                    interval=0.5,
                )
            except waits.WaitTimeout as err:  # the pods' own words: their state and newest probe event
                report = self._pod_report(ident)
                raise waits.WaitTimeout(
                    err.what,
                    err.timeout,
                    err.last + ("\n" + report if report else ""),
                    hint=self._live_hint(f"describe {kind.lower()} {name}"),
                ) from None

    def _live_hint(self, kubectl_args: str) -> str:
        """The teardown deletes the cluster: a command on it works only for a run kept with --keep."""
        return (
            "the pods' events and logs are in the run's diagnostics (kind/); the cluster stays up only "
            f"with --keep (or E2E_KEEP_ON_FAILURE=1), then: {self.kubectl()} {kubectl_args}"
        )

    def _pod_report(self, ident: str) -> str:
        """Each pod of a workload: every container's state, restarts, last exit, and the pod's newest
        warning event (a readiness probe's `HTTP probe failed with statuscode: 503`, an exec not found)."""
        try:
            pods = self.api.pods(self.namespace, self._selector(self._get(ident).get("spec", {})))
            events = self.api.events(self.namespace)
        except Exception as err:  # noqa: BLE001 - the timeout is the error; this only adds to it
            return f"(pods not readable: {err})"
        lines = []
        for pod in pods:
            name = pod["metadata"]["name"]
            status = pod.get("status") or {}
            for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
                lines.append(f"  pod {name} container {cs.get('name')}: {container_state(cs)}")
            claims = [
                v["persistentVolumeClaim"]["claimName"]
                for v in (pod.get("spec") or {}).get("volumes") or []
                if v.get("persistentVolumeClaim")
            ]  # a claim that is not provisioned says why on itself, not on the pending pod
            for what, who in [("pod", name), *(("claim", c) for c in claims)]:
                newest = _newest_warning(events, who)
                if newest:
                    lines.append(f"  {what} {who} newest warning: {newest}")
        return "\n".join(lines)

    def _rollout(self, ident: str) -> waits.Observation[None]:
        obj = self._get(ident)
        done, seen = rollout(obj)
        if not done:
            self._raise_if_stuck(ident, obj.get("spec", {}))
        return waits.Observation(done, seen)

    def _selector(self, spec: dict[str, Any]) -> str:
        labels = spec.get("selector", {}).get("matchLabels", {})
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))

    def _raise_if_stuck(self, ident: str, spec: dict[str, Any]) -> None:
        kind, name = split_id(ident)
        for pod in self.api.pods(self.namespace, self._selector(spec)):
            pod_name = pod["metadata"]["name"]
            status = pod.get("status", {})
            for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
                waiting = (cs.get("state") or {}).get("waiting") or {}
                reason = waiting.get("reason", "")
                if reason not in FATAL_REASONS:
                    continue
                msg = (
                    f"{kind.lower()} {name}: pod {pod_name} container {cs.get('name')} is {reason}: "
                    f"{waiting.get('message', '')} (image {cs.get('image')})"
                )
                if reason == "CrashLoopBackOff":
                    logs = self.api.pod_log(
                        pod_name, self.namespace, previous=True, tail=20, container=cs.get("name")
                    )
                    msg += f"\nlast log lines:\n{tail(logs, 20)}"
                if reason == "ErrImageNeverPull":
                    msg += "\nnext: the image is not in the node; was it loaded, with its localhost/ prefix?"
                raise waits.Fatal(msg)

    def teardown(self) -> None:
        if self.ctx.reuse:
            if self.kubeconfig.exists():  # else setup stopped before it exported one: nothing is ours
                self.api.delete_namespace(self.namespace)
            return
        from infra.cleanup.cleanup import remove_node_volumes

        argv = ("delete", "cluster", "--name", self.cluster, "--kubeconfig", str(self.kubeconfig))

        def delete() -> waits.Observation[None]:
            try:
                self.kind(*argv, timeout=self.ctx.config.timeouts.cluster)
            except CommandError as err:  # podman under load: a node's shm still mounted a moment
                if BUSY not in str(err):
                    raise
                return waits.Observation(False, tail(str(err), 2))
            return waits.Observation(True, "deleted")

        # its own cancel event: an interrupted run's teardown still deletes what it made
        waits.poll(f"kind to delete cluster {self.cluster}", delete, timeout=DELETE_RETRY_SECONDS,
                   interval=1.0, cancel=threading.Event(), hint="nox -s cleanup")  # fmt: skip
        remove_node_volumes(self.ctx.podman, self.cluster)  # left by a create that failed half-way
        self.kubeconfig.unlink(missing_ok=True)

    # -- the handle the E2E suite uses -----------------------------------------
    def _idents(self, service: str) -> list[str]:
        if service not in self.workloads:
            raise PlatformError(f"no service {service!r} in this run; known: {sorted(self.workloads)}")
        return self.workloads[service]

    @contextmanager
    def _keeping_logs(self, service: str) -> Iterator[None]:
        """Follow the logs of the pods a restart or stop is about to end, to their last line.

        On podman a restarted container keeps its log; a replaced pod's log is
        gone with the pod, so `logs()` would lose what the old process said.
        """
        found = [
            p
            for ident in self._idents(service)
            for p in self.api.pods(self.namespace, self._selector(self._get(ident).get("spec", {})))
        ]
        pods = [p["metadata"]["name"] for p in found]
        main = {p["metadata"]["name"]: _main_container(p) for p in found}
        texts: dict[str, str] = {}
        timeout = self.ctx.config.timeouts.stop + 30

        def follow(pod: str) -> None:
            try:
                texts[pod] = self.api.follow_log(pod, self.namespace, timeout=timeout, container=main[pod])
            except Exception as err:  # noqa: BLE001 - a log we could not read is said, not fatal
                texts[pod] = f"(log of {pod} unavailable: {err})\n"

        threads = [threading.Thread(target=follow, args=(p,), daemon=True) for p in pods]
        for t in threads:
            t.start()
        yield
        for t in threads:
            t.join(timeout)
        self.past_logs.setdefault(service, []).extend(texts.get(p, "") for p in pods)
        self._ended_pods.update(_uid(p) for p in found)

    def restart(self, service: str) -> None:
        self._flush_before_end(service)
        with self._keeping_logs(service):
            for ident in self._idents(service):
                kind, name = split_id(ident)
                self.api.restart(kind, name, self.namespace)
            self.wait_ready(service)
        self.ctx.wait_served(service)

    def _stop_one(self, ident: str) -> None:
        kind, name = split_id(ident)
        if kind in SCALABLE:
            self.api.scale(kind, name, self.namespace, 0)
        else:
            self.api.patch(kind, name, self.namespace, _node_selector("true"))

    def stop(self, service: str) -> None:
        self._flush_before_end(service)
        with self._keeping_logs(service):
            for ident in self._idents(service):
                self._stop_one(ident)
                self._wait_pods_gone(ident)

    def start(self, service: str) -> None:
        for ident in self._idents(service):
            kind, name = split_id(ident)
            if kind in SCALABLE:
                self.api.scale(kind, name, self.namespace, self.replicas.get(ident, 1))
            else:
                self.api.patch(kind, name, self.namespace, _node_selector(None))
        self.wait_ready(service)
        self.ctx.wait_served(service)

    def logs(self, service: str) -> str:
        """Everything the service's processes logged in this run, oldest pods first; a container the
        kubelet restarted in place keeps its earlier instances' logs (each read once as `previous`)."""
        out = list(self.past_logs.get(service, []))
        for ident in self._idents(service):
            for pod in self.api.pods(self.namespace, self._selector(self._get(ident).get("spec", {}))):
                if _uid(pod) in self._ended_pods:
                    continue
                name, main = pod["metadata"]["name"], _main_container(pod)
                statuses = (pod.get("status") or {}).get("containerStatuses") or []
                restarts = next(
                    (int(cs.get("restartCount") or 0) for cs in statuses if cs.get("name") == main), 0
                )
                kept = self._instance_logs.setdefault(_uid(pod), {})
                if restarts and restarts - 1 not in kept:  # the kubelet keeps the one before the current
                    try:
                        kept[restarts - 1] = self.api.pod_log(
                            name, self.namespace, previous=True, container=main
                        )
                    except Exception as err:  # noqa: BLE001 - said in the log text, not fatal
                        kept[restarts - 1] = f"(previous log of {name} unavailable: {err})\n"
                out += [kept[i] for i in sorted(kept)]
                out.append(self.api.pod_log(name, self.namespace, container=main))
        return "".join(out)

    def _wait_pods_gone(self, ident: str) -> None:
        selector = self._selector(self._get(ident).get("spec", {}))

        def probe() -> waits.Observation[None]:
            pods = self.api.pods(self.namespace, selector)
            return waits.Observation(
                not pods, f"{len(pods)} pod(s) left: {[p['metadata']['name'] for p in pods]}"
            )

        kind, name = split_id(ident)
        waits.poll(
            f"pods of {kind.lower()} {name} to be gone",
            probe,
            timeout=self.ctx.config.timeouts.stop + 30,
            interval=0.5,
        )

    def stop_gracefully(self) -> dict[str, str]:
        """Scale every workload to 0 (DaemonSets: no node matches) and wait until its pods are gone."""
        done = {}
        for service, idents in self.workloads.items():
            for ident in idents:
                self._stop_one(ident)
            for ident in idents:
                self._wait_pods_gone(ident)
            done[service] = f"stopped {', '.join(idents)}; pods gone"
        return done

    def collect_diagnostics(self, into: Path) -> None:
        """Pods (describe-equivalent), events, current and previous logs, node logs: before teardown."""
        into.mkdir(parents=True, exist_ok=True)
        try:
            self.kind(
                "export",
                "logs",
                str(into / "kind-logs"),
                "--name",
                self.cluster,
                timeout=self.ctx.config.timeouts.cluster,
            )
        except CommandError as err:
            (into / "kind-export-logs.error.txt").write_text(str(err))
        pods = self.api.pods(self.namespace, "")
        (into / "pods.json").write_text(json.dumps(pods, indent=2, default=str))
        (into / "events.json").write_text(json.dumps(self.api.events(self.namespace), indent=2, default=str))
        workloads: dict[str, Any] = {}
        for ident in (i for idents in self.workloads.values() for i in idents):
            try:
                workloads[ident] = self._get(ident)
            except Exception as err:  # noqa: BLE001 - a missing object is itself a finding
                workloads[ident] = f"(cannot read: {err})"
        (into / "workloads.json").write_text(json.dumps(workloads, indent=2, default=str))
        for pod in pods:
            name, main = pod["metadata"]["name"], _main_container(pod)
            spec = pod.get("spec") or {}
            for ctr in [
                c["name"] for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])
            ]:
                for previous in (False, True):
                    try:
                        text = self.api.pod_log(name, self.namespace, previous=previous, container=ctr)
                    except Exception as err:  # noqa: BLE001 - no previous container is normal
                        text = f"(no log: {err})"
                    stem = name if ctr == main else f"{name}.{ctr}"  # the main container's log: <pod>.log
                    (into / f"{stem}{'.previous' if previous else ''}.log").write_text(text)

    def kubectl(self) -> str:
        """A kubectl that works as printed: the host's with the run's kubeconfig, else the node's."""
        if shutil.which("kubectl"):
            return f"kubectl --kubeconfig {self.kubeconfig} -n {self.namespace}"
        node = f"{self.cluster}-control-plane"
        return (
            f"{self.provider} exec {node} kubectl --kubeconfig /etc/kubernetes/admin.conf -n {self.namespace}"
        )

    def inspect_command(self) -> str:
        return f"{self.kubectl()} get pods"

    def state(self) -> dict[str, object]:
        return {
            "cluster": self.cluster,
            "reuse": self.ctx.reuse,
            "namespace": self.namespace,
            "kubeconfig": str(self.kubeconfig),
            "node_image": self.node_image,
            "workloads": self.workloads,
            "replicas": self.replicas,
            "jobs": self.jobs,
        }

    @classmethod
    def from_state(cls, ctx: Context, state: dict[str, Any]) -> KindPlatform:
        plat = cls(ctx)  # cluster and namespace follow from ctx, as when the run made them
        plat.workloads = {k: list(v) for k, v in state.get("workloads", {}).items()}
        plat.replicas = {k: int(v) for k, v in state.get("replicas", {}).items()}
        plat.jobs = {k: list(v) for k, v in state.get("jobs", {}).items()}
        plat.node_image = str(state.get("node_image", ""))
        return plat

    # -- coverage flush (coverflush) ------------------------------------------
    def flush_coverage(self, services: Sequence[str] | None = None) -> dict[str, list[str]]:
        names = list(self.workloads) if services is None else list(services)
        return coverflush.flush(self.ctx, names, self._signal_running)

    def _signal_running(self, service: str, signame: str) -> list[str]:
        """The node's containerd signals each running container that writes coverage (GOCOVERDIR).

        `ctr tasks kill` through `podman exec <node>`: nothing is needed in the image.
        """
        done = []
        for ident in self.workloads.get(service, []):
            for pod in self.api.pods(self.namespace, self._selector(self._get(ident).get("spec", {}))):
                meta, spec = pod.get("metadata", {}), pod.get("spec", {})
                if meta.get("deletionTimestamp"):
                    continue  # terminating: its exit writes what is left
                covering = {
                    c["name"]
                    for c in spec.get("containers", [])
                    if any(e.get("name") == "GOCOVERDIR" for e in c.get("env") or [])
                }
                node = check_dns_label("node", str(spec.get("nodeName", "")))
                for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                    if cs.get("name") not in covering or not (cs.get("state") or {}).get("running"):
                        continue
                    container_id = _container_id(str(cs.get("containerID", "")))
                    try:
                        self.node_exec(node, *CTR, "tasks", "kill", "--signal", signame, container_id)
                    except CommandError as err:  # ended between the listing and the signal
                        log.info("coverage flush: %s/%s not signalled: %s", meta.get("name"), cs["name"], err)
                        continue
                    done.append(f"{meta.get('name')}/{cs['name']}")
        return done

    def _flush_before_end(self, service: str) -> None:
        """What the old pods counted survives a restart or stop that kills them at the grace period."""
        if self.ctx.coverage and coverflush.flushable(self.ctx.config, service):
            self.flush_coverage([service])


def _newest_warning(events: list[dict[str, Any]], name: str) -> str:
    """The newest Warning event about the object named `name`: `Reason: message (xN)`, or ""."""
    about = [e for e in events if (e.get("involvedObject") or {}).get("name") == name]
    warned = sorted((e for e in about if e.get("type") == "Warning"), key=_event_time)
    if not warned:
        return ""
    newest = warned[-1]
    count = f" (x{newest['count']})" if (newest.get("count") or 1) > 1 else ""
    return f"{newest.get('reason')}: {' '.join(str(newest.get('message', '')).split())}{count}"


_CONTAINER_ID = re.compile(r"^containerd://([0-9a-f]{64})$")


def _statuses(pod: dict[str, Any]) -> list[dict[str, Any]]:
    statuses: list[dict[str, Any]] = (pod.get("status") or {}).get("containerStatuses") or []
    return statuses


def container_state(cs: dict[str, Any]) -> str:
    """One container status as a human reads it: state, ready, restarts, last exit."""
    state = cs.get("state") or {}
    if "waiting" in state:
        w = state["waiting"] or {}
        now = f"waiting ({w.get('reason', '?')}{': ' + w['message'] if w.get('message') else ''})"
    elif "terminated" in state:
        t = state["terminated"] or {}
        now = f"terminated (exit {t.get('exitCode')}, {t.get('reason', '')})"
    else:
        now = "running"
    parts = [now, "ready" if cs.get("ready") else "not ready", f"restarts {cs.get('restartCount', 0)}"]
    last = (cs.get("lastState") or {}).get("terminated")
    if last:
        parts.append(f"last exit {last.get('exitCode')} ({last.get('reason', '')})")
    return ", ".join(parts)


def _event_time(event: dict[str, Any]) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def _container_id(status_id: str) -> str:
    """`containerd://<64 hex>` from a pod's containerStatuses: the task id in the node's containerd."""
    match = _CONTAINER_ID.match(status_id)
    if not match:
        raise PlatformError(
            f"container id {status_id!r} is not a containerd one: the coverage flush needs a kind node "
            "running containerd"
        )
    return match.group(1)


def _uid(pod: dict[str, Any]) -> str:
    meta = pod["metadata"]
    return str(meta.get("uid") or meta["name"])


def _main_container(pod: dict[str, Any]) -> str | None:
    ctrs = (pod.get("spec") or {}).get("containers") or []
    return str(ctrs[0]["name"]) if ctrs else None


def _node_selector(value: str | None) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"nodeSelector": {STOPPED_LABEL: value}}}}}
