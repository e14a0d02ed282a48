"""The real cluster: kind (podman provider), driven by argv and the Kubernetes API.

Every kind call gets --name (and --kubeconfig where it takes one) so the
user's ~/.kube/config and other clusters are never touched.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from infra import kind_config, waits
from infra.build import save_images
from infra.images import ImageRef, same_image_id
from infra.kind_cli import load_archive_args, run_kind
from infra.kube import KubeApi, RealKubeApi
from infra.manifests import WORKLOAD_KINDS, Doc, Rendered
from infra.names import LABEL, RUN_LABEL, check_dns_label, resource_name
from infra.platform import Context, ImageMissing, PlatformError
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


class KindPlatform:
    name = "kind"

    def __init__(self, ctx: Context, api_factory: Callable[[Path], KubeApi] = RealKubeApi) -> None:
        self.ctx = ctx
        self.cluster = check_dns_label("cluster", ctx.cluster or resource_name(ctx.run_id))
        self.namespace = resource_name(ctx.run_id, ctx.config.platform.namespace)
        self.provider = ctx.config.platform.kind_provider
        self.kubeconfig = ctx.paths.kubeconfig
        self.deployments: dict[str, list[str]] = {}
        self.replicas: dict[str, int] = {}
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
    def config_doc(self) -> dict[str, Any]:
        cfg = self.ctx.config
        mounts = {self.ctx.paths.covdata.resolve(): cfg.coverage.mount} if self.ctx.coverage else {}
        return kind_config.render(
            kind_config.load_base(cfg.path(cfg.platform.kind_config)),
            workers=cfg.platform.kind_workers,
            host_ports=self.ctx.host_ports,
            mounts=mounts,
        )

    def create(self) -> None:
        self.ctx.paths.run_dir.mkdir(parents=True, exist_ok=True)
        if self.ctx.reuse:
            if self.cluster not in self.clusters():
                raise PlatformError(
                    f"--reuse {self.cluster}: no such kind cluster; next: `kind get clusters`"
                )
            self.kind("export", "kubeconfig", "--name", self.cluster, "--kubeconfig", str(self.kubeconfig))
        else:
            if self.cluster in self.clusters():
                raise PlatformError(
                    f"kind cluster {self.cluster} already exists (node(s) of an earlier run); "
                    "next: `inv clean-stale-clusters --older-than 0s`"
                )
            cfg_file = kind_config.dump(self.config_doc(), self.ctx.paths.run_dir / "kind-config.yaml")
            argv = [
                "create",
                "cluster",
                "--name",
                self.cluster,
                "--config",
                str(cfg_file),
                "--kubeconfig",
                str(self.kubeconfig),
                "--wait",
                "120s",
            ]
            if self.ctx.config.platform.kind_node_image:
                argv += ["--image", self.ctx.config.platform.kind_node_image]
            self.kind(
                *argv,
                timeout=self.ctx.config.timeouts.cluster,
                hint=f"see `kind export logs --name {self.cluster}`; a leftover? `inv clean-stale-clusters`",
            )
        if self.kubeconfig.exists():
            self.kubeconfig.chmod(0o600)
        self.api.ensure_namespace(self.namespace, {LABEL: "true", RUN_LABEL: self.ctx.run_id})

    def node_image_id(self, node: str, ref: str) -> str:
        out = self.node_exec(node, "crictl", "inspecti", "-o", "json", ref, check=False)
        try:
            return str(json.loads(out)["status"]["id"])
        except (ValueError, KeyError, TypeError):
            return ""

    def load_images(self, refs: Sequence[ImageRef]) -> None:
        """podman save + kind load image-archive, skipping images every node holds."""
        nodes = self.nodes()
        if not nodes:
            raise PlatformError(f"kind cluster {self.cluster} has no nodes; next: `kind get clusters`")
        missing = []
        for ref in refs:
            local = self.ctx.podman.image_id(ref)
            if not all(same_image_id(local, self.node_image_id(n, str(ref))) for n in nodes):
                missing.append(ref)
        if not missing:
            log.info("all %d images already in the nodes of %s: load skipped", len(refs), self.cluster)
            return
        archive, timeout = self.ctx.paths.archive, self.ctx.config.timeouts.load
        try:
            save_images(self.ctx.podman, missing, archive, timeout)
            self.kind(*load_archive_args(archive, self.cluster), timeout=timeout)
        finally:
            archive.unlink(missing_ok=True)

    def verify_images(self, rendered: Rendered) -> None:
        """Every referenced image must be in every node before anything waits on it."""
        wanted = rendered.image_refs()
        if not wanted:
            return
        problems = []
        for node in self.nodes():
            listing = json.loads(self.node_exec(node, "crictl", "images", "-o", "json") or "{}")
            have = {t for img in listing.get("images", []) for t in img.get("repoTags") or []}
            problems += [
                f"{ref} (used by {who}) is not in node {node}"
                for ref, who in sorted(wanted.items())
                if ref not in have
            ]
        if problems:
            raise ImageMissing(
                "; ".join(problems) + ". next: images must be referenced as localhost/<name>:<tag> "
                "exactly as built (see `inv images`) and loaded with `inv load-image`"
            )

    def deploy(self, service: str, docs: list[Doc]) -> None:
        for doc in docs:
            self.api.apply(doc, self.namespace)
            if doc["kind"] in WORKLOAD_KINDS:
                self.deployments.setdefault(service, []).append(doc["metadata"]["name"])
                self.replicas[doc["metadata"]["name"]] = int(doc["spec"].get("replicas", 1))

    def wait_ready(self, service: str) -> None:
        for name in self.deployments.get(service, []):
            waits.poll(
                f"deployment {name} in namespace {self.namespace} to roll out",
                lambda n=name: self._rollout(n),  # type: ignore[misc]
                timeout=self.ctx.config.timeouts.ready,
                interval=0.5,
                hint=f"kubectl --kubeconfig {self.kubeconfig} -n {self.namespace} describe deployment {name}",
            )

    def _rollout(self, name: str) -> waits.Observation[None]:
        dep = self.api.deployment(name, self.namespace)
        spec, status = dep.get("spec", {}), dep.get("status", {})
        want = int(spec.get("replicas", 1))
        seen = (
            f"replicas {status.get('replicas', 0)}, updated {status.get('updatedReplicas', 0)}, "
            f"available {status.get('availableReplicas', 0)} of {want}"
        )
        done = (
            status.get("observedGeneration", 0) >= dep.get("metadata", {}).get("generation", 0)
            and status.get("updatedReplicas", 0) == want
            and status.get("availableReplicas", 0) == want
            and status.get("replicas", 0) == want
        )
        if not done:
            self._raise_if_stuck(name, spec)
        return waits.Observation(done, seen)

    def _selector(self, spec: dict[str, Any]) -> str:
        labels = spec.get("selector", {}).get("matchLabels", {})
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))

    def _raise_if_stuck(self, name: str, spec: dict[str, Any]) -> None:
        for pod in self.api.pods(self.namespace, self._selector(spec)):
            pod_name = pod["metadata"]["name"]
            for cs in pod.get("status", {}).get("containerStatuses") or []:
                waiting = (cs.get("state") or {}).get("waiting") or {}
                reason = waiting.get("reason", "")
                if reason not in FATAL_REASONS:
                    continue
                msg = (
                    f"deployment {name}: pod {pod_name} container {cs.get('name')} is {reason}: "
                    f"{waiting.get('message', '')} (image {cs.get('image')})"
                )
                if reason == "CrashLoopBackOff":
                    logs = self.api.pod_log(pod_name, self.namespace, previous=True, tail=20)
                    msg += f"\nlast log lines:\n{tail(logs, 20)}"
                if reason == "ErrImageNeverPull":
                    msg += "\nnext: the image is not in the node; was it loaded, with its localhost/ prefix?"
                raise waits.Fatal(msg)

    def teardown(self) -> None:
        if self.ctx.reuse:
            self.api.delete_namespace(self.namespace)
            return
        self.kind(
            "delete",
            "cluster",
            "--name",
            self.cluster,
            "--kubeconfig",
            str(self.kubeconfig),
            timeout=self.ctx.config.timeouts.cluster,
        )
        self.kubeconfig.unlink(missing_ok=True)

    # -- the handle the E2E suite uses -----------------------------------------
    def _names(self, service: str) -> list[str]:
        if service not in self.deployments:
            raise PlatformError(f"no service {service!r} in this run; known: {sorted(self.deployments)}")
        return self.deployments[service]

    def restart(self, service: str) -> None:
        for name in self._names(service):
            self.api.restart(name, self.namespace)
        self.wait_ready(service)

    def stop(self, service: str) -> None:
        for name in self._names(service):
            self.api.scale(name, self.namespace, 0)
            self._wait_pods_gone(name)

    def start(self, service: str) -> None:
        for name in self._names(service):
            self.api.scale(name, self.namespace, self.replicas.get(name, 1))
        self.wait_ready(service)

    def logs(self, service: str) -> str:
        out = []
        for name in self._names(service):
            spec = self.api.deployment(name, self.namespace).get("spec", {})
            for pod in self.api.pods(self.namespace, self._selector(spec)):
                out.append(self.api.pod_log(pod["metadata"]["name"], self.namespace))
        return "".join(out)

    def _wait_pods_gone(self, name: str) -> None:
        spec = self.api.deployment(name, self.namespace).get("spec", {})
        selector = self._selector(spec)

        def probe() -> waits.Observation[None]:
            pods = self.api.pods(self.namespace, selector)
            return waits.Observation(
                not pods, f"{len(pods)} pod(s) left: {[p['metadata']['name'] for p in pods]}"
            )

        waits.poll(
            f"pods of deployment {name} to be gone",
            probe,
            timeout=self.ctx.config.timeouts.stop + 30,
            interval=0.5,
        )

    def stop_gracefully(self) -> dict[str, str]:
        """Scale every deployment to 0 and wait until its pods are gone (counters flush)."""
        done = {}
        for service, names in self.deployments.items():
            for name in names:
                self.api.scale(name, self.namespace, 0)
            for name in names:
                self._wait_pods_gone(name)
            done[service] = f"scaled {', '.join(names)} to 0; pods gone"
        return done

    def collect_diagnostics(self, into: Path) -> None:
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
        for pod in pods:
            name = pod["metadata"]["name"]
            for previous in (False, True):
                try:
                    text = self.api.pod_log(name, self.namespace, previous=previous)
                except Exception as err:  # noqa: BLE001 - no previous container is normal
                    text = f"(no log: {err})"
                path = into / f"{name}{'.previous' if previous else ''}.log"
                path.write_text(text)

    def inspect_command(self) -> str:
        return f"kubectl --kubeconfig {self.kubeconfig} -n {self.namespace} get pods"

    def state(self) -> dict[str, object]:
        return {
            "cluster": self.cluster,
            "reuse": self.ctx.reuse,
            "namespace": self.namespace,
            "kubeconfig": str(self.kubeconfig),
            "deployments": self.deployments,
            "replicas": self.replicas,
        }

    @classmethod
    def from_state(cls, ctx: Context, state: dict[str, Any]) -> KindPlatform:
        plat = cls(ctx)  # cluster and namespace follow from ctx, as when the run made them
        plat.deployments = {k: list(v) for k, v in state.get("deployments", {}).items()}
        plat.replicas = {k: int(v) for k, v in state.get("replicas", {}).items()}
        return plat
