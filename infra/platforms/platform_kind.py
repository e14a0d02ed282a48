"""The real cluster: kind (podman provider), driven by argv and the Kubernetes API.

Every kind call gets --name (and --kubeconfig where it takes one) so the
user's ~/.kube/config and other clusters are never touched. Images in the
nodes are read with `ctr -n k8s.io`, which every kind node has (crictl is not
in every node image).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from infra import waits
from infra.builds import gotool
from infra.builds.build import save_images
from infra.checks import Check, check_tool
from infra.cleanup import runlock
from infra.config import Config
from infra.console import say
from infra.gocover import coverflush
from infra.images import ImageRef, same_image_id
from infra.kind_cli import load_archive_args, run_kind
from infra.names import LABEL, RUN_LABEL, check_dns_label, resource_name
from infra.nodeimage import versions
from infra.paths import make_open_dir, scratch_dir
from infra.platforms import hostfixes, kind_config
from infra.platforms.kube import KubeApi, RealKubeApi
from infra.platforms.manifests import Rendered
from infra.platforms.platform import Context, ImageMissing, PlatformError, Request, Sweep, Swept
from infra.platforms.platform_kube import KubePlatform
from infra.podman_cli import Podman
from infra.proc import CommandError, Runner, tail

log = logging.getLogger("infra.kind")

CTR = ("ctr", "--namespace", "k8s.io")
BUSY = "device or resource busy"  # podman rm of a node, racing the unmount of its shm
DELETE_RETRY_SECONDS = 30.0
MIN_KIND = (0, 33)  # the first kind that speaks kubeadm v1beta4 to a 1.37 node


class KindPlatform(KubePlatform):
    name = "kind"
    images_step = "load"
    brings_third_party = True
    coverage_via = "signal"
    on_this_machine = True

    @classmethod
    def refusals(cls, request: Request) -> list[str]:
        if request.reuse and request.coverage:  # a reused cluster's extraMount points at its maker
            return [
                "--coverage with --reuse is not supported on kind: the cluster's /coverdata mount belongs "
                "to the run that created it. next: drop --reuse (a new cluster mounts this run)"
            ]
        if not request.reuse:
            try:
                say(f"kind config: {kind_config.base_file(request.config)[1]}")
            except kind_config.KindConfigError as err:
                return [str(err)]
        return []

    @classmethod
    def clean(cls, config: Config, runner: Runner, podman: Podman, what: Sweep) -> Swept:
        """The harness's stale kind clusters (no live run holds them, not kept); never anyone else's."""
        from infra.cleanup import cleanup

        report = cleanup.clean_stale_clusters(
            runner, podman, older_than=what.older_than, dry_run=what.dry_run, all_=what.all_,
            provider=config.platform.kind_provider, scratch=scratch_dir(config.root),
        )  # fmt: skip
        return report.removed, report.left

    @classmethod
    def doctor(cls, config: Config, runner: Runner, podman: Podman, *, cached: bool) -> list[Check]:
        choice = gotool.active()
        go = choice.command() if choice else "go"
        fix = f"{go} install sigs.k8s.io/kind@{versions.KIND} (then add ~/go/bin to PATH)"
        tool = check_tool(runner, "kind", ["kind", "version"], MIN_KIND, fix)
        return [tool, *kind_checks(config, podman)]

    def __init__(self, ctx: Context, api_factory: Callable[[Path], KubeApi] = RealKubeApi) -> None:
        super().__init__(
            ctx,
            namespace=resource_name(ctx.run_id, ctx.config.platform.namespace),
            kubeconfig=ctx.paths.kubeconfig,
            api_factory=lambda: api_factory(ctx.paths.kubeconfig),
        )
        self.cluster = check_dns_label("cluster", ctx.cluster or resource_name(ctx.run_id))
        self.provider = ctx.config.platform.kind_provider
        self.node_image = ""

    def where(self) -> str:
        return self.cluster

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

    def collect_diagnostics(self, into: Path) -> None:
        """Node logs (kind export logs), then the namespace as the API shows it: before teardown."""
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
        self.collect_api_diagnostics(into)

    def kubectl(self) -> str:
        """A kubectl that works as printed: the host's with the run's kubeconfig, else the node's."""
        if shutil.which("kubectl"):
            return f"kubectl --kubeconfig {self.kubeconfig} -n {self.namespace}"
        node = f"{self.cluster}-control-plane"
        return (
            f"{self.provider} exec {node} kubectl --kubeconfig /etc/kubernetes/admin.conf -n {self.namespace}"
        )

    def state(self) -> dict[str, object]:
        return {
            "cluster": self.cluster,
            "reuse": self.ctx.reuse,
            "node_image": self.node_image,
            **self.kube_state(),
        }

    @classmethod
    def from_state(cls, ctx: Context, state: dict[str, Any]) -> KindPlatform:
        plat = cls(ctx)  # cluster and namespace follow from ctx, as when the run made them
        plat.restore(state)
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


_CONTAINER_ID = re.compile(r"^containerd://([0-9a-f]{64})$")


def _container_id(status_id: str) -> str:
    """`containerd://<64 hex>` from a pod's containerStatuses: the task id in the node's containerd."""
    match = _CONTAINER_ID.match(status_id)
    if not match:
        raise PlatformError(
            f"container id {status_id!r} is not a containerd one: the coverage flush needs a kind node "
            "running containerd"
        )
    return match.group(1)


def kind_checks(config: Config, podman: Podman) -> list[Check]:
    """The node image, and each host condition the harness patches around (detected, not assumed)."""
    from infra.nodeimage import cache, select

    configured = config.platform.kind_node_image
    found = select.available(podman, configured)
    st = cache.status(podman)
    checks = [
        Check(
            "kind node image",
            bool(found),
            found or "none in podman's store or the cache",
            f"build the offline one: `nox -s node_image` ({cache.BUILD_COST})"
            if not configured
            else f"`podman load -i` {configured}, or leave platform.kind_node_image empty",
        ),
    ]
    if str(st.image) not in found:
        checks.append(Check("offline node image", True, f"{st.state}: {st.line()}"))
    for fix in hostfixes.detect():
        checks.append(Check(f"host fix: {fix.name}", True, f"{fix.detected} -> applied: {fix.remedy}"))
    stale = hostfixes.stale_aardvark_pid()
    if stale:
        pid_file = hostfixes.aardvark_pid_file()
        checks.append(
            Check(
                "podman DNS",
                False,
                f"{pid_file} names {stale}, not aardvark-dns: podman would signal that process and "
                "start no DNS server, so kind's nodes could not find each other by name",
                f"rm {pid_file} (a stale file: podman starts a new DNS server at the next container start)",
            )
        )
    modules = hostfixes.LIB_MODULES
    if not modules.exists():
        root = os.geteuid() == 0
        checks.append(
            Check(
                f"host fix: {modules}",
                root,
                "missing (kind mounts it into every node)"
                + ("; the harness creates an empty one" if root else ""),
                f"sudo mkdir -p {modules}",
            )
        )
    return checks
