"""infra.platforms.platform_kind through a RecordingRunner and a fake KubeApi (no cluster)."""

from __future__ import annotations

import json
import re
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import waits
from infra.builds.build import ImagePlan
from infra.cleanup import cleanup, runlock
from infra.config import Config
from infra.gocover import coverflush
from infra.images import ImageRef
from infra.names import LABEL, RUN_LABEL
from infra.nodeimage import select
from infra.paths import RunPaths
from infra.platforms import hostfixes
from infra.platforms.manifests import Rendered, load_docs, render
from infra.platforms.platform import Context, ImageMissing, PlatformError
from infra.platforms.platform_kind import KindPlatform
from infra.podman_cli import Podman
from infra.proc import RecordingRunner, Result

RUN_ID = "20260101-000000-abcd"
CLUSTER = f"e2eh-{RUN_ID}"
NAMESPACE = f"e2eh-{RUN_ID}-e2e"
# kind runs podman itself, so it gets the containers.conf the harness uses too
PROVIDER_ENV = {"CONTAINERS_CONF": "/c.conf", "KIND_EXPERIMENTAL_PROVIDER": "podman"}
HOST_PORTS = {30080: 41080, 30081: 41081}
DS = "localhost/e2e-harness/datastore:t1"
GW = "localhost/e2e-harness/gateway:t2"


class FakeKube:
    """Records every KubeApi call; deployments/pods/logs are scripted per test."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.deployment_status: Callable[[str], dict[str, Any]] = lambda name: READY
        self.pod_list: list[dict[str, Any]] = []
        self.log_text = ""
        self.ns_set: set[str] = set()
        self.ns_labels: dict[str, dict[str, str]] = {}
        self.kinds: dict[str, str] = {}  # name -> kind, when not a Deployment
        self.job_status: Callable[[str], dict[str, Any]] = lambda name: JOB_COMPLETE

    def ensure_namespace(self, name: str, labels: dict[str, str]) -> None:
        self.calls.append(("ensure_namespace", name, labels))

    def delete_namespace(self, name: str) -> None:
        self.calls.append(("delete_namespace", name))
        self.ns_set.discard(name)

    def namespace_exists(self, name: str) -> bool:
        self.calls.append(("namespace_exists", name))
        return name in self.ns_set

    def namespaces(self, selector: str) -> list[dict[str, Any]]:
        self.calls.append(("namespaces", selector))
        return [{"metadata": {"name": n, "labels": self.ns_labels.get(n, {})}} for n in sorted(self.ns_set)]

    def apply(self, doc: dict[str, Any], namespace: str) -> None:
        self.calls.append(("apply", f"{doc['kind']}/{doc['metadata']['name']}", namespace))

    def workload(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        self.calls.append(("workload", kind, name, namespace))
        return {
            "kind": kind,
            "metadata": {"name": name, "generation": 1},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}},
            "status": self.deployment_status(name),
        }

    def job(self, name: str, namespace: str) -> dict[str, Any]:
        self.calls.append(("job", name, namespace))
        return {"kind": "Job", "metadata": {"name": name}, "status": self.job_status(name)}

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        self.calls.append(("pods", namespace, selector))
        return self.pod_list

    def pod_log(
        self,
        name: str,
        namespace: str,
        *,
        previous: bool = False,
        tail: int | None = None,
        container: str | None = None,
    ) -> str:
        self.calls.append(("pod_log", name, namespace, previous, tail))
        return self.log_text

    def follow_log(self, name: str, namespace: str, *, timeout: float, container: str | None = None) -> str:
        self.calls.append(("follow_log", name, namespace))
        return f"last words of {name}\n"

    def scale(self, kind: str, name: str, namespace: str, replicas: int) -> None:
        self.calls.append(("scale", kind, name, namespace, replicas))
        self.pod_list = []

    def restart(self, kind: str, name: str, namespace: str) -> None:
        self.calls.append(("restart", kind, name, namespace))

    def patch(self, kind: str, name: str, namespace: str, body: dict[str, Any]) -> None:
        self.calls.append(("patch", kind, name, namespace, body))
        self.pod_list = []

    storage_class: dict[str, str] = {"name": "standard", "provisioner": "kubernetes.io/host-path"}  # noqa: RUF012

    def default_storage_class(self) -> dict[str, str]:
        return self.storage_class

    def events(self, namespace: str) -> list[dict[str, Any]]:
        return []

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == kind]


READY = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}
JOB_COMPLETE = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
NOT_READY = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 0}


class Kit:
    def __init__(
        self, ctx: Context, runner: RecordingRunner, api: FakeKube, factory_args: list[Path]
    ) -> None:
        self.ctx, self.runner, self.api, self.factory_args = ctx, runner, api, factory_args
        self.plat = KindPlatform(ctx, api_factory=self._factory)

    def _factory(self, kubeconfig: Path) -> FakeKube:
        self.factory_args.append(kubeconfig)
        return self.api

    @property
    def run_dir(self) -> Path:
        return self.ctx.paths.run_dir


NODE_IMAGE = "localhost/e2e-harness/kind-node:v1.37.2-0123456789abcdef"


@pytest.fixture
def kit(
    tmp_path: Path, make_cfg: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Kit]:
    chosen: list[str] = []

    def node_image(runner: object, podman: object, configured: str) -> select.Choice:
        chosen.append(configured)
        return select.Choice(configured or NODE_IMAGE, "test")

    monkeypatch.setattr(select, "node_image", node_image)
    monkeypatch.setattr(hostfixes, "detect", lambda: [])
    monkeypatch.setattr(hostfixes, "ensure_lib_modules", lambda: "")

    def make(*, coverage: bool = False, reuse: bool = False, cluster: str = "", **sections: Any) -> Kit:
        sections.setdefault("timeouts", {"ready": 3, "stop": 1})
        cfg = make_cfg(**sections)
        runner = RecordingRunner()
        ctx = Context(
            config=cfg,
            paths=RunPaths(tmp_path, RUN_ID),
            runner=runner,
            podman=Podman(runner, env={"CONTAINERS_CONF": "/c.conf"}),
            coverage=coverage,
            host_ports=HOST_PORTS,
            cluster=cluster,
            reuse=reuse,
        )
        return Kit(ctx, runner, FakeKube(), [])

    return make


# -- create ------------------------------------------------------------------------------


def test_create_issues_get_clusters_then_create_with_run_files(kit: Callable[..., Kit]) -> None:
    k = kit()
    k.plat.create()
    cfg_file, kubeconfig = k.run_dir / "kind-config.yaml", k.run_dir / "kubeconfig"
    assert [a for a in k.runner.argvs() if a[0] == "kind"] == [
        ("kind", "get", "clusters"),
        (
            "kind",
            "create",
            "cluster",
            "--name",
            CLUSTER,
            "--config",
            str(cfg_file),
            "--kubeconfig",
            str(kubeconfig),
            "--image",
            NODE_IMAGE,
            "--wait",
            "120s",
        ),
    ]
    kind_calls = [c for c in k.runner.calls if c.argv[0] == "kind"]
    assert all(c.env == PROVIDER_ENV for c in kind_calls)
    assert kind_calls[1].timeout == k.ctx.config.timeouts.cluster
    home_kube = str(Path.home() / ".kube")
    assert not any(home_kube in arg or arg.endswith("/.kube/config") for a in k.runner.argvs() for arg in a)
    assert k.factory_args == [kubeconfig]  # the API client uses the run's kubeconfig
    assert k.api.calls == [("ensure_namespace", NAMESPACE, {LABEL: "true", RUN_LABEL: RUN_ID})]


def test_kind_config_has_workers_port_mappings_and_no_mount_without_coverage(kit: Callable[..., Kit]) -> None:
    k = kit(platform={"kind_workers": 2})
    k.plat.create()
    doc = yaml.safe_load((k.run_dir / "kind-config.yaml").read_text())
    assert doc["kind"] == "Cluster"
    assert [n["role"] for n in doc["nodes"]] == ["control-plane", "worker", "worker"]
    assert doc["nodes"][0]["extraPortMappings"] == [
        {"containerPort": 30080, "hostPort": 41080, "listenAddress": "127.0.0.1", "protocol": "TCP"},
        {"containerPort": 30081, "hostPort": 41081, "listenAddress": "127.0.0.1", "protocol": "TCP"},
    ]
    assert all(not n.get("extraMounts") for n in doc["nodes"])


def test_kind_config_mounts_the_runs_covdata_on_every_node(kit: Callable[..., Kit]) -> None:
    k = kit(coverage=True, platform={"kind_workers": 2})
    k.plat.create()
    doc = yaml.safe_load((k.run_dir / "kind-config.yaml").read_text())
    covdata = k.ctx.paths.covdata.resolve()
    assert len(doc["nodes"]) == 3
    for node in doc["nodes"]:
        assert node["extraMounts"] == [{"hostPath": str(covdata), "containerPath": "/coverdata"}]


def test_create_passes_the_node_image(kit: Callable[..., Kit]) -> None:
    k = kit(platform={"kind_node_image": "kindest/node:v1.30.0"})
    k.plat.create()
    argv = next(a for a in k.runner.argvs() if a[:3] == ("kind", "create", "cluster"))
    assert argv[argv.index("--image") + 1] == "kindest/node:v1.30.0"


def test_clusters_of_dead_harness_runs_are_removed_and_foreign_ones_left(
    kit: Callable[..., Kit], monkeypatch: pytest.MonkeyPatch
) -> None:
    k = kit()
    monkeypatch.setattr(cleanup.shutil, "which", lambda name: f"/usr/bin/{name}")  # kind "installed"
    dead, foreign = "e2eh-20250101-000000-dead", "team-dev"
    nodes = [
        {"Names": [f"{c}-control-plane"], "Labels": {"io.x-k8s.kind.cluster": c}, "Created": 1}
        for c in (dead, foreign)
    ]
    k.runner.on(["podman", "ps", "--format", "json", "--all", "--filter", "label=io.x-k8s.kind.cluster"],
                stdout=json.dumps(nodes))  # fmt: skip
    k.plat.create()
    deletes = [a for a in k.runner.argvs() if a[:3] == ("kind", "delete", "cluster")]
    assert [a[a.index("--name") + 1] for a in deletes] == [dead]  # never team-dev
    assert all(str(Path.home() / ".kube") not in " ".join(a) for a in deletes)


def test_the_kubeconfig_is_made_private(kit: Callable[..., Kit]) -> None:
    k = kit()

    def kind_writes_kubeconfig(argv: tuple[str, ...]) -> Result | None:
        if argv[:3] == ("kind", "create", "cluster"):
            kc = Path(argv[argv.index("--kubeconfig") + 1])
            kc.write_text("apiVersion: v1\n")
            kc.chmod(0o644)
        return None

    k.runner.responders.append(kind_writes_kubeconfig)
    k.plat.create()
    assert stat.S_IMODE((k.run_dir / "kubeconfig").stat().st_mode) == 0o600


def test_an_existing_cluster_of_the_same_name_is_refused(kit: Callable[..., Kit]) -> None:
    k = kit()
    k.runner.on(["kind", "get", "clusters"], stdout=f"other\n{CLUSTER}\n")
    with pytest.raises(PlatformError) as info:
        k.plat.create()
    assert CLUSTER in str(info.value)
    assert "clean-stale-clusters" in str(info.value)
    assert k.runner.argvs() == [("kind", "get", "clusters")]
    assert k.api.calls == []


def test_reuse_exports_the_kubeconfig_instead_of_creating(kit: Callable[..., Kit]) -> None:
    k = kit(reuse=True, cluster="team-dev")
    k.runner.on(["kind", "get", "clusters"], stdout="team-dev\n")
    k.runner.on(["podman", "port", "team-dev-control-plane"], stdout=PORTS)
    k.api.ns_set.add(NAMESPACE)  # left by an earlier run of the same id (state reuse)
    k.api.ns_set.add("e2eh-20250101-000000-kept-e2e")  # a kept stack on the cluster holds the NodePorts
    k.api.ns_labels["e2eh-20250101-000000-kept-e2e"] = {RUN_LABEL: "20250101-000000-kept"}
    k.plat.create()
    assert k.runner.argvs() == [
        ("kind", "get", "clusters"),
        ("kind", "export", "kubeconfig", "--name", "team-dev", "--kubeconfig", str(k.run_dir / "kubeconfig")),
        ("podman", "port", "team-dev-control-plane"),
    ]
    assert all(c.env == PROVIDER_ENV for c in k.runner.calls if c.argv[0] == "kind")
    assert [c[0] for c in k.api.calls] == [
        "namespaces",
        "delete_namespace",
        "delete_namespace",
        "namespace_exists",
        "namespace_exists",
        "ensure_namespace",
    ]  # reset: the run's own and the kept stack's namespaces deleted and gone before it is made again
    assert sorted(c[1] for c in k.api.of("delete_namespace")) == sorted(
        [NAMESPACE, "e2eh-20250101-000000-kept-e2e"]
    )
    assert k.api.of("ensure_namespace") == [
        ("ensure_namespace", NAMESPACE, {LABEL: "true", RUN_LABEL: RUN_ID})
    ]
    assert k.ctx.host_ports == {30080: 45080, 30081: 45081}  # the cluster's own mappings


def test_reuse_refuses_a_cluster_a_live_run_is_using(kit: Callable[..., Kit]) -> None:
    k = kit(reuse=True, cluster="team-dev")
    k.runner.on(["kind", "get", "clusters"], stdout="team-dev\n")
    k.runner.on(["podman", "port", "team-dev-control-plane"], stdout=PORTS)
    live = "20250101-000000-live"
    k.api.ns_set.add(f"e2eh-{live}-e2e")
    k.api.ns_labels[f"e2eh-{live}-e2e"] = {RUN_LABEL: live}
    lock = runlock.hold(live)
    try:
        with pytest.raises(PlatformError, match=f"run {live} is using it"):
            k.plat.create()
    finally:
        runlock.release(lock, live)
    assert k.api.of("delete_namespace") == []


def test_reuse_refuses_a_cluster_that_does_not_publish_a_node_port(kit: Callable[..., Kit]) -> None:
    k = kit(reuse=True, cluster="team-dev")
    k.runner.on(["kind", "get", "clusters"], stdout="team-dev\n")
    k.runner.on(["podman", "port", "team-dev-control-plane"], stdout="30080/tcp -> 127.0.0.1:45080\n")
    with pytest.raises(PlatformError, match=r"NodePort\(s\) \[30081\] are not published on 127.0.0.1"):
        k.plat.create()
    assert k.api.of("ensure_namespace") == []


def test_reuse_of_a_missing_cluster_is_refused(kit: Callable[..., Kit]) -> None:
    k = kit(reuse=True, cluster="team-dev")
    k.runner.on(["kind", "get", "clusters"], stdout="other\n")
    with pytest.raises(PlatformError, match="--reuse team-dev: no such kind cluster"):
        k.plat.create()
    assert len(k.runner.calls) == 1


PORTS = "30080/tcp -> 127.0.0.1:45080\n30081/tcp -> 127.0.0.1:45081\n6443/tcp -> 127.0.0.1:39999\n"


# -- load_images ----------------------------------------------------------------------------

NODES = ("c-control-plane", "c-worker")


CTR = ("ctr", "--namespace", "k8s.io")


def script_images(
    runner: RecordingRunner, local: dict[str, str], node: dict[tuple[str, str], str | None]
) -> None:
    """local: ref -> podman image ID; node: (node, ref) -> the config digest it holds (None: absent)."""
    runner.on(["kind", "get", "nodes", "--name", CLUSTER], stdout="\n".join(NODES) + "\n")
    for ref, image_id in local.items():
        runner.on(["podman", "image", "inspect", "--format", "{{.Id}}", ref], stdout=image_id + "\n")
    for name in NODES:
        rows = ["REF TYPE DIGEST SIZE PLATFORMS LABELS"]
        for (n, ref), config in node.items():
            if n == name and config is not None:
                manifest = f"sha256:m{abs(hash((n, ref))):x}"
                rows.append(
                    f"{ref} application/vnd.oci.image.manifest.v1+json {manifest} 1.2 MiB linux/amd64 -"
                )
                doc = {"config": {"digest": config}, "layers": []}
                runner.on(["podman", "exec", name, *CTR, "content", "get", manifest], stdout=json.dumps(doc))
        runner.on(["podman", "exec", name, *CTR, "images", "list"], stdout="\n".join(rows) + "\n")


def test_load_is_skipped_when_every_node_has_the_same_ids(kit: Callable[..., Kit]) -> None:
    k = kit()
    script_images(
        k.runner,
        {DS: "aaa", GW: "bbb"},
        {(n, DS): "sha256:aaa" for n in NODES} | {(n, GW): "sha256:bbb" for n in NODES},
    )
    k.plat.load_images([DS, GW])
    argvs = k.runner.argvs()
    assert argvs[:3] == [
        ("kind", "get", "nodes", "--name", CLUSTER),
        ("podman", "exec", NODES[0], *CTR, "images", "list"),
        ("podman", "exec", NODES[1], *CTR, "images", "list"),
    ]
    assert sum(a[:2] == ("podman", "exec") and "content" in a for a in argvs) == 4  # 2 images x 2 nodes
    assert not any(a[:2] in (("podman", "save"), ("kind", "load")) for a in argvs)
    assert k.runner.calls[1].env == {"CONTAINERS_CONF": "/c.conf"}


def test_only_missing_or_changed_images_are_saved_and_loaded(kit: Callable[..., Kit]) -> None:
    k = kit()
    other = "localhost/e2e-harness/other:t3"
    script_images(
        k.runner,
        {DS: "aaa", GW: "bbb", other: "ccc"},
        {
            (NODES[0], DS): "sha256:aaa",
            (NODES[1], DS): "sha256:aaa",  # present everywhere
            (NODES[0], GW): "sha256:bbb",
            (NODES[1], GW): "sha256:old",  # stale on the worker
            (NODES[0], other): None,
            (NODES[1], other): None,
        },  # absent
    )
    k.plat.load_images([DS, GW, other])
    archive = k.ctx.paths.archive
    loads = [
        a for a in k.runner.argvs() if (a[0] == "kind" and a[1] == "load") or a[:2] == ("podman", "save")
    ]
    assert loads == [
        ("podman", "save", "--format", "docker-archive", "-m", "-o", str(archive), GW, other),
        ("kind", "load", "image-archive", str(archive), "--name", CLUSTER),
    ]
    load_call = next(c for c in k.runner.calls if c.argv[:2] == ("kind", "load"))
    assert load_call.env == PROVIDER_ENV
    assert load_call.timeout == k.ctx.config.timeouts.load
    assert not archive.exists()


def test_one_missing_image_is_saved_without_m(kit: Callable[..., Kit]) -> None:
    k = kit()
    script_images(
        k.runner,
        {DS: "aaa", GW: "bbb"},
        {(n, DS): "sha256:aaa" for n in NODES} | {(n, GW): None for n in NODES},
    )
    k.plat.load_images([DS, GW])
    saves = [a for a in k.runner.argvs() if a[:2] == ("podman", "save")]
    assert saves == [("podman", "save", "--format", "docker-archive", "-o", str(k.ctx.paths.archive), GW)]


# -- verify_images ----------------------------------------------------------------------------


def rendered_stack(cfg: Config, coverage: bool = False) -> Rendered:
    plan = ImagePlan({"datastore": ImageRef.parse(DS), "gateway": ImageRef.parse(GW)}, coverage)
    return render(cfg, load_docs(cfg), plan, coverage=coverage)


def ctr_refs(*refs: str) -> str:
    return "".join(f"{r}\n" for r in refs)


WAITFOR = "registry.example.com/e2e-harness/waitfor:1.0"  # the example's third-party images
POSTGRES, REDIS = "docker.io/library/postgres:15-bookworm", "docker.io/library/redis:7.0-bookworm"


def test_verify_images_passes_when_every_node_has_them(kit: Callable[..., Kit]) -> None:
    k = kit()
    k.runner.on(["kind", "get", "nodes"], stdout="n1\nn2\n")
    k.runner.on(
        ["podman", "exec"], stdout=ctr_refs(DS, GW, WAITFOR, POSTGRES, REDIS, "registry.k8s.io/pause:3.9")
    )
    k.plat.verify_images(rendered_stack(k.ctx.config))
    assert k.runner.argvs()[1:] == [
        ("podman", "exec", "n1", *CTR, "images", "list", "--quiet"),
        ("podman", "exec", "n2", *CTR, "images", "list", "--quiet"),
    ]


def test_verify_images_names_the_missing_ref_and_node(kit: Callable[..., Kit]) -> None:
    k = kit()
    k.runner.on(["kind", "get", "nodes"], stdout="n1\nn2\n")
    k.runner.on(["podman", "exec", "n1"], stdout=ctr_refs(DS, GW, WAITFOR, POSTGRES, REDIS))
    k.runner.on(["podman", "exec", "n2"], stdout=ctr_refs(DS, POSTGRES, REDIS))
    with pytest.raises(ImageMissing) as info:
        k.plat.verify_images(rendered_stack(k.ctx.config))
    msg = str(info.value)
    assert f"{GW} (used by Deployment/gateway) is not in node n2" in msg
    assert f"{WAITFOR} (used by Deployment/gateway) is not in node n2" in msg
    assert "node n1" not in msg
    assert DS + " " not in msg


def test_verify_images_does_not_accept_a_ref_without_localhost(kit: Callable[..., Kit]) -> None:
    k = kit()
    k.runner.on(["kind", "get", "nodes"], stdout="n1\n")
    k.runner.on(
        ["podman", "exec", "n1"], stdout=ctr_refs(DS, WAITFOR, POSTGRES, REDIS, GW.removeprefix("localhost/"))
    )
    with pytest.raises(ImageMissing, match=f"{GW} \\(used by Deployment/gateway\\) is not in node n1"):
        k.plat.verify_images(rendered_stack(k.ctx.config))


# -- deploy / wait_ready ---------------------------------------------------------------


def deployed(k: Kit, service: str) -> None:
    k.plat.deploy(service, rendered_stack(k.ctx.config).by_service[service])


def test_deploy_applies_through_the_api_in_the_runs_namespace(kit: Callable[..., Kit]) -> None:
    k = kit()
    deployed(k, "datastore")
    deployed(k, "gateway")
    applies = k.api.of("apply")
    assert {a[2] for a in applies} == {NAMESPACE}
    assert [a[1] for a in applies] == [  # in apply order: the migration Job before the StatefulSet
        "ConfigMap/datastore-config",
        "Job/datastore-migrate",
        "StatefulSet/datastore",
        "Service/datastore",
        "ConfigMap/gateway-config",
        "Deployment/gateway",
        "Service/gateway",
    ]
    assert k.plat.workloads == {"datastore": ["StatefulSet/datastore"], "gateway": ["Deployment/gateway"]}
    assert k.plat.jobs == {"datastore": ["datastore-migrate"]}
    # the Job was waited for before the StatefulSet was applied
    order = [c[0] if c[0] != "apply" else c[1] for c in k.api.calls]
    assert order.index("job") < order.index("StatefulSet/datastore")
    assert k.runner.calls == []  # no kubectl shell-outs


CLAIM = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"}, "spec": {}}


@pytest.mark.parametrize(
    ("storage_class", "pods", "said"),
    [
        ({}, [], "has no default StorageClass to provision them"),
        ({"name": "standard", "provisioner": "rancher.io/local-path"}, [],
         "has StorageClass standard, whose provisioner (rancher.io/local-path) does not run"),
    ],
)  # fmt: skip
def test_claims_no_provisioner_can_bind_are_refused_before_anything_is_applied(
    kit: Callable[..., Kit], storage_class: dict[str, str], pods: list[dict[str, Any]], said: str
) -> None:
    k = kit()
    k.api.storage_class, k.api.pod_list = storage_class, pods
    with pytest.raises(PlatformError, match=re.escape(said)):
        k.plat.deploy("data", [CLAIM])
    assert k.api.of("apply") == []
    k.api.storage_class = {"name": "standard", "provisioner": "kubernetes.io/host-path"}
    k.plat.deploy("data", [CLAIM])  # a class whose provisioner runs in the control plane: applied
    assert [a[1] for a in k.api.of("apply")] == ["PersistentVolumeClaim/data"]


def test_wait_ready_returns_when_rolled_out(kit: Callable[..., Kit]) -> None:
    k = kit()
    deployed(k, "gateway")
    k.plat.wait_ready("gateway")
    assert k.api.of("workload") == [("workload", "Deployment", "gateway", NAMESPACE)]


def pod(reason: str, message: str = "") -> dict[str, Any]:
    return {
        "metadata": {"name": "gateway-7c9f-abcde"},
        "status": {
            "containerStatuses": [
                {
                    "name": "gateway",
                    "image": GW,
                    "state": {"waiting": {"reason": reason, "message": message}},
                }
            ]
        },
    }


def test_wait_ready_fails_at_once_on_err_image_never_pull(kit: Callable[..., Kit]) -> None:
    k = kit()
    deployed(k, "gateway")
    k.api.deployment_status = lambda name: NOT_READY
    k.api.pod_list = [
        pod("ErrImageNeverPull", f'Container image "{GW}" is not present with pull policy of Never')
    ]
    start = time.monotonic()
    with pytest.raises(waits.Fatal) as info:
        k.plat.wait_ready("gateway")
    assert time.monotonic() - start < 2  # not the ready timeout
    msg = str(info.value)
    assert (
        "deployment gateway: pod gateway-7c9f-abcde (on no node yet) container gateway is ErrImageNeverPull"
        in msg
    )
    assert f"(image {GW})" in msg
    assert "localhost/ prefix" in msg
    assert len(k.api.of("workload")) == 1
    assert k.api.of("pods") == [("pods", NAMESPACE, "app=gateway")]


def test_crash_loop_includes_the_last_log_lines(kit: Callable[..., Kit]) -> None:
    k = kit()
    deployed(k, "gateway")
    k.api.deployment_status = lambda name: NOT_READY
    k.api.pod_list = [pod("CrashLoopBackOff", "back-off 10s restarting failed container")]
    k.api.log_text = "\n".join(f"log line {i}" for i in range(1, 31)) + "\n"
    with pytest.raises(waits.Fatal) as info:
        k.plat.wait_ready("gateway")
    msg = str(info.value)
    assert "is CrashLoopBackOff: back-off 10s restarting failed container" in msg
    assert msg.split("last log lines:\n", 1)[1].splitlines() == [f"log line {i}" for i in range(11, 31)]
    assert k.api.of("pod_log") == [("pod_log", "gateway-7c9f-abcde", NAMESPACE, True, 20)]


def test_a_non_fatal_wait_reason_keeps_waiting(kit: Callable[..., Kit]) -> None:
    k = kit()
    deployed(k, "gateway")
    answers = iter([NOT_READY, READY])
    k.api.deployment_status = lambda name: next(answers)
    k.api.pod_list = [pod("ContainerCreating")]
    k.plat.wait_ready("gateway")
    assert len(k.api.of("workload")) == 2


def test_wait_ready_timeout_says_what_it_saw(kit: Callable[..., Kit]) -> None:
    k = kit(timeouts={"ready": 0.01})
    deployed(k, "gateway")
    k.api.deployment_status = lambda name: NOT_READY
    with pytest.raises(waits.WaitTimeout) as info:
        k.plat.wait_ready("gateway")
    msg = str(info.value)
    assert f"waiting for deployment gateway in namespace {NAMESPACE} to roll out" in msg
    assert "describe deployment gateway" in msg
    assert "last seen: replicas 1, updated 1, available 0 of 1" in msg


def test_a_pod_waiting_for_its_claim_is_reported_with_the_claims_warning(kit: Callable[..., Kit]) -> None:
    """A claim the provisioner cannot make says why on the claim, not on the pending pod: both are shown."""
    k = kit(timeouts={"ready": 0.01})
    deployed(k, "gateway")
    k.api.deployment_status = lambda name: NOT_READY
    pending = pod("ContainerCreating")
    pending["spec"] = {
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-gateway-0"}}]
    }
    k.api.pod_list = [pending]
    said = 'failed to provision volume with StorageClass "standard": serviceaccount "x" not found'
    warning = {"type": "Warning", "reason": "ProvisioningFailed", "message": said, "count": 3,
               "involvedObject": {"kind": "PersistentVolumeClaim", "name": "data-gateway-0"}}  # fmt: skip
    k.api.events = lambda namespace: [warning]  # type: ignore[method-assign]
    with pytest.raises(waits.WaitTimeout) as info:
        k.plat.wait_ready("gateway")
    assert f"claim data-gateway-0 newest warning: ProvisioningFailed: {said} (x3)" in str(info.value)


# -- stop / teardown ----------------------------------------------------------------------


def test_stop_gracefully_scales_to_zero_and_waits_for_pods(kit: Callable[..., Kit]) -> None:
    k = kit()
    deployed(k, "gateway")
    assert k.plat.stop_gracefully() == {"gateway": "stopped Deployment/gateway; pods gone"}
    assert k.api.of("scale") == [("scale", "Deployment", "gateway", NAMESPACE, 0)]
    assert k.api.of("pods") == [("pods", NAMESPACE, "app=gateway")]


def test_teardown_deletes_the_cluster_with_its_kubeconfig(kit: Callable[..., Kit]) -> None:
    k = kit()
    kubeconfig = k.run_dir / "kubeconfig"
    kubeconfig.parent.mkdir(parents=True)
    kubeconfig.write_text("x")
    k.plat.teardown()
    assert k.runner.argvs() == [
        ("kind", "delete", "cluster", "--name", CLUSTER, "--kubeconfig", str(kubeconfig)),
        ("podman", "volume", "ls", "--format", "json"),  # what a half-made create left
    ]
    assert k.runner.calls[0].env == PROVIDER_ENV
    assert not kubeconfig.exists()
    assert k.api.calls == []


def test_reuse_teardown_deletes_only_the_namespace(kit: Callable[..., Kit]) -> None:
    k = kit(reuse=True, cluster="team-dev")
    k.run_dir.mkdir(parents=True, exist_ok=True)
    (k.run_dir / "kubeconfig").write_text("exported by create")
    k.plat.teardown()
    assert k.runner.calls == []
    assert k.api.calls == [("delete_namespace", NAMESPACE)]


def test_reuse_teardown_after_a_setup_that_never_reached_the_cluster_does_nothing(
    kit: Callable[..., Kit],
) -> None:
    """Preflight failed: no kubeconfig was exported, and "teardown failed" would send the user to cleanup."""
    k = kit(reuse=True, cluster="team-dev")
    k.plat.teardown()
    assert k.runner.calls == [] and k.api.calls == []


def test_state_round_trip(kit: Callable[..., Kit], monkeypatch: pytest.MonkeyPatch) -> None:
    k = kit()
    deployed(k, "gateway")
    state = json.loads(json.dumps(k.plat.state()))
    assert state["cluster"] == CLUSTER and state["namespace"] == NAMESPACE
    assert state["kubeconfig"] == str(k.run_dir / "kubeconfig")
    again = KindPlatform.from_state(k.ctx, state)
    assert (again.cluster, again.namespace, again.workloads, again.replicas) == (
        CLUSTER,
        NAMESPACE,
        {"gateway": ["Deployment/gateway"]},
        {"Deployment/gateway": 1},
    )


def test_unknown_service_is_named(kit: Callable[..., Kit]) -> None:
    k = kit()
    deployed(k, "gateway")
    with pytest.raises(PlatformError, match=r"no service 'nope' in this run; known: \['gateway'\]"):
        k.plat.stop("nope")


# -- Jobs ----------------------------------------------------------------------------------


def failed_job_pod() -> dict[str, Any]:
    return {
        "metadata": {"name": "datastore-migrate-x1", "creationTimestamp": "2026-12-01T00:00:01Z"},
        "spec": {"containers": [{"name": "migrate"}]},
        "status": {"phase": "Failed"},
    }


def test_a_failed_job_fails_the_deploy_at_once_with_its_pods_log(kit: Callable[..., Kit]) -> None:
    k = kit()
    reason = {"reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}
    failed = {"failed": 3, "conditions": [{"type": "Failed", "status": "True", **reason}]}
    k.api.job_status = lambda name: failed
    k.api.pod_list = [failed_job_pod()]
    k.api.log_text = "migrate failed: disk full\n"
    with pytest.raises(waits.Fatal) as info:
        deployed(k, "datastore")
    msg = str(info.value)
    assert (
        "job datastore-migrate failed (BackoffLimitExceeded: Job has reached the specified backoff limit)"
        in msg
    )
    assert "last log lines of pod datastore-migrate-x1:\nmigrate failed: disk full" in msg
    assert "logs job/datastore-migrate" in msg
    assert "StatefulSet/datastore" not in [c[1] for c in k.api.of("apply")]  # nothing after the Job
    assert ("pods", NAMESPACE, "batch.kubernetes.io/job-name=datastore-migrate") in k.api.calls


def test_a_job_that_never_completes_says_what_it_saw(kit: Callable[..., Kit]) -> None:
    k = kit(timeouts={"job": 0.01})
    k.api.job_status = lambda name: {"active": 1, "failed": 1}
    k.api.pod_list = [failed_job_pod()]
    k.api.log_text = "attempt 1: no schema lock\n"
    with pytest.raises(waits.WaitTimeout) as info:
        deployed(k, "datastore")
    msg = str(info.value)
    assert f"waiting for job datastore-migrate in namespace {NAMESPACE} to complete" in msg
    assert "last seen: active 1, succeeded 0, failed 1; last log lines of pod datastore-migrate-x1" in msg
    assert "describe job datastore-migrate" in msg


# -- coverage flush ------------------------------------------------------------------------------


def _pod(name: str, container_id: str, *, running: bool = True, terminating: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    state = {"running": {"startedAt": "x"}} if running else {"waiting": {"reason": "CrashLoopBackOff"}}
    return {
        "metadata": meta,
        "spec": {
            "nodeName": f"{CLUSTER}-worker",
            "containers": [
                {"name": "datastore", "env": [{"name": "GOCOVERDIR", "value": "/coverdata/datastore"}]},
                {"name": "sidecar", "env": []},  # writes no coverage: never signalled
            ],
        },
        "status": {
            "containerStatuses": [
                {"name": "datastore", "containerID": f"containerd://{container_id}", "state": state},
                {"name": "sidecar", "containerID": "containerd://" + "f" * 64, "state": state},
            ]
        },
    }


def test_flush_signals_each_running_coverage_container_through_its_nodes_containerd(
    kit: Callable[..., Kit],
) -> None:
    k = kit(coverage=True)
    k.plat.workloads = {"datastore": ["Deployment/datastore"]}
    covdata = k.ctx.paths.covdata / "datastore"
    covdata.mkdir(parents=True)
    k.api.pod_list = [
        _pod("ds-1", "a" * 64),
        _pod("ds-old", "b" * 64, terminating=True),  # its exit writes what is left
        _pod("ds-2", "c" * 64, running=False),
    ]

    def writes_counters(argv: tuple[str, ...]) -> None:
        if "tasks" in argv:  # what the flush package does on the signal: counters, then its marker
            (covdata / f"covcounters.x.1.{argv[-1][:4]}").write_text("c")
            (covdata / f"{coverflush.FLUSHED_PREFIX}1.{argv[-1][:4]}").touch()

    k.runner.responders.insert(0, writes_counters)
    flushed = k.plat.flush_coverage(["datastore"])
    assert not list(covdata.glob(coverflush.FLUSHED_PREFIX + "*"))  # the markers are the harness's own
    kills = [a for a in k.runner.argvs() if "tasks" in a]
    assert kills == [
        ("podman", "exec", f"{CLUSTER}-worker", "ctr", "--namespace", "k8s.io", "tasks", "kill", "--signal",
         "SIGUSR1", "a" * 64)
    ]  # fmt: skip
    assert flushed == {"datastore": ["covcounters.x.1.aaaa"]}


def test_a_flush_waits_for_the_signalled_process_not_for_any_counters_file(kit: Callable[..., Kit]) -> None:
    """An exec probe of a -cover image writes a counters file when it exits: not the flush's."""
    k = kit(coverage=True)
    k.plat.workloads = {"datastore": ["Deployment/datastore"]}
    covdata = k.ctx.paths.covdata / "datastore"
    covdata.mkdir(parents=True)
    k.api.pod_list = [_pod("ds-1", "a" * 64)]
    late: list[threading.Thread] = []

    def probe_exits_then_the_flush_lands(argv: tuple[str, ...]) -> None:
        if "tasks" not in argv:
            return
        (covdata / "covcounters.x.25.1").write_text("c")  # the probe process (pid 25), at once

        def flush() -> None:
            time.sleep(0.3)  # the signalled process takes a moment: the probe's file comes first
            (covdata / "covcounters.x.1.2").write_text("c")
            (covdata / f"{coverflush.FLUSHED_PREFIX}1.2").touch()

        late.append(threading.Thread(target=flush))
        late[-1].start()

    k.runner.responders.insert(0, probe_exits_then_the_flush_lands)
    flushed = k.plat.flush_coverage(["datastore"])
    for thread in late:
        thread.join()
    assert flushed == {"datastore": ["covcounters.x.1.2", "covcounters.x.25.1"]}


def test_a_container_id_that_is_not_containerds_is_refused_before_any_command(
    kit: Callable[..., Kit],
) -> None:
    k = kit(coverage=True)
    k.plat.workloads = {"datastore": ["Deployment/datastore"]}
    k.api.pod_list = [_pod("ds-1", "a" * 64)]
    k.api.pod_list[0]["status"]["containerStatuses"][0]["containerID"] = "docker://" + "a" * 64
    with pytest.raises(PlatformError, match="not a containerd one"):
        k.plat.flush_coverage(["datastore"])
    assert not [a for a in k.runner.argvs() if "tasks" in a]
