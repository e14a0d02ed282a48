"""The Kubernetes layer the cluster providers share (kind, cluster): apply, rollout and Job waits,
restart/stop/start, logs and the API's diagnostics, all in one namespace of the run's, through the
Kubernetes API (no kubectl shell-outs). A provider adds its cluster's lifecycle, how images reach
the nodes, and how coverage leaves the pods.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from infra import waits
from infra.gocover import coverflush
from infra.platforms.kube import KubeApi, KubeApiError
from infra.platforms.manifests import JOB_KINDS, WORKLOAD_KINDS, Doc
from infra.platforms.platform import Context, PlatformError
from infra.proc import tail

log = logging.getLogger("infra.kube")

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
KIND_PROVISIONER, KIND_PROVISIONER_NAMESPACE = "rancher.io/local-path", "local-path-storage"
"""kind's default storage: its StorageClass is made even where its provisioner's image cannot be pulled."""
STOPPED_LABEL = "io.e2e-harness/stopped"
"""A DaemonSet cannot scale to 0: a nodeSelector no node matches stops its pods gracefully."""
SCALABLE = ("Deployment", "StatefulSet")
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


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


class KubePlatform:
    """What kind and cluster share; a provider sets `name` and adds create, images and teardown."""

    name = "kube"
    images_step = ""
    brings_third_party = True
    coverage_via = "signal"
    on_this_machine = True

    def __init__(
        self, ctx: Context, namespace: str, kubeconfig: Path, api_factory: Callable[[], KubeApi]
    ) -> None:
        self.ctx = ctx
        self.namespace = namespace
        self.kubeconfig = kubeconfig
        self.workloads: dict[str, list[str]] = {}  # service -> ["Deployment/name", ...]
        self.replicas: dict[str, int] = {}  # "Deployment/name" -> replicas as deployed
        self.jobs: dict[str, list[str]] = {}  # service -> its Jobs, completed during deploy
        self.step_seconds: dict[str, float] = {}  # parts of a phase, for the bench
        self.past_logs: dict[str, list[str]] = {}  # service -> logs of pods a restart/stop ended
        self._ended_pods: set[str] = set()  # by uid: a StatefulSet's new pod has the old one's name
        self._instance_logs: dict[str, dict[int, str]] = {}  # pod uid -> restart number -> its log
        self._storage_class: str | None = None  # the default StorageClass, once asked
        self._api_factory = api_factory
        self._api: KubeApi | None = None

    def where(self) -> str:
        """The cluster, as messages name it."""
        raise NotImplementedError

    def kubectl(self) -> str:
        raise NotImplementedError

    def inspect_command(self) -> str:
        return f"{self.kubectl()} get pods"

    def flush_coverage(self, services: Sequence[str] | None = None) -> dict[str, list[str]]:
        raise NotImplementedError

    def kube_state(self) -> dict[str, object]:
        return {
            "namespace": self.namespace,
            "kubeconfig": str(self.kubeconfig),
            "workloads": self.workloads,
            "replicas": self.replicas,
            "jobs": self.jobs,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.workloads = {k: list(v) for k, v in state.get("workloads", {}).items()}
        self.replicas = {k: int(v) for k, v in state.get("replicas", {}).items()}
        self.jobs = {k: list(v) for k, v in state.get("jobs", {}).items()}

    @property
    def api(self) -> KubeApi:
        if self._api is None:
            self._api = self._api_factory()
        return self._api

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
                self._wait_job(doc["metadata"]["name"], service)

    def _claims_can_bind(self, docs: list[Doc]) -> None:
        """A claim with no StorageClass binds only where a default one provisions volumes: without it
        its pods would wait the whole readiness timeout, Pending."""
        claims = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
        claims += [d for d in docs if d["kind"] == "StatefulSet" and d["spec"].get("volumeClaimTemplates")]
        if not claims or self._storage_class is not None:
            return
        try:
            found = self.api.default_storage_class()
        except KubeApiError as err:
            if err.status != 403:
                raise
            # credentials confined to a namespace: the claims' own events say it if none binds
            log.info("StorageClasses not readable (%s): the claims' binding is not checked first", err)
            self._storage_class = ""
            return
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
                f"{names}: persistent volume claims, and cluster {self.where()} {why}; next: run this stack "
                "on podman, or on a cluster whose default StorageClass provisions volumes (the harness's "
                "node image does: kind's hostPath provisioner)"
            )
        self._storage_class = found["name"]

    def _drain_leaving(self, service: str, pods: list[dict[str, Any]]) -> None:
        """What pods on their way out still hold, taken before they go (cluster: coverage keepers)."""

    def _wait_job(self, name: str, service: str = "") -> None:
        """Until the Job completes; its Failed condition or a pod that cannot start ends the wait at once."""
        selector = {"selector": {"matchLabels": {JOB_NAME_LABEL: name}}}

        def probe() -> waits.Observation[None]:
            self._drain_leaving(service, self.api.pods(self.namespace, f"{JOB_NAME_LABEL}={name}"))
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
                node = (pod.get("spec") or {}).get("nodeName") or "no node yet"
                msg = (
                    f"{kind.lower()} {name}: pod {pod_name} (on {node}) container {cs.get('name')} is "
                    f"{reason}: {waiting.get('message', '')} (image {cs.get('image')})"
                )
                if reason == "CrashLoopBackOff":
                    logs = self.api.pod_log(
                        pod_name, self.namespace, previous=True, tail=20, container=cs.get("name")
                    )
                    msg += f"\nlast log lines:\n{tail(logs, 20)}"
                if reason == "ErrImageNeverPull":
                    msg += "\nnext: the image is not in the node; was it loaded, with its localhost/ prefix?"
                raise waits.Fatal(msg)

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
        service = next((s for s, idents in self.workloads.items() if ident in idents), "")

        def probe() -> waits.Observation[None]:
            pods = self.api.pods(self.namespace, selector)
            self._drain_leaving(service, pods)
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

    def _flush_before_end(self, service: str) -> None:
        """What the old pods counted survives a restart or stop that kills them at the grace period."""
        if self.ctx.coverage_mode.flushes and coverflush.flushable(self.ctx.config, service):
            self.flush_coverage([service])

    def collect_api_diagnostics(self, into: Path) -> None:
        """The run's namespace as the API shows it: pods (describe-equivalent), events, workloads, and
        every container's current and previous log."""
        into.mkdir(parents=True, exist_ok=True)
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


def _newest_warning(events: list[dict[str, Any]], name: str) -> str:
    """The newest Warning event about the object named `name`: `Reason: message (xN)`, or ""."""
    about = [e for e in events if (e.get("involvedObject") or {}).get("name") == name]
    warned = sorted((e for e in about if e.get("type") == "Warning"), key=_event_time)
    if not warned:
        return ""
    newest = warned[-1]
    count = f" (x{newest['count']})" if (newest.get("count") or 1) > 1 else ""
    return f"{newest.get('reason')}: {' '.join(str(newest.get('message', '')).split())}{count}"


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


def _uid(pod: dict[str, Any]) -> str:
    meta = pod["metadata"]
    return str(meta.get("uid") or meta["name"])


def _main_container(pod: dict[str, Any]) -> str | None:
    ctrs = (pod.get("spec") or {}).get("containers") or []
    return str(ctrs[0]["name"]) if ctrs else None


def _node_selector(value: str | None) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"nodeSelector": {STOPPED_LABEL: value}}}}}
