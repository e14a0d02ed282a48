"""The kind platform on a real cluster: one cluster for the module, made from the node image.

Skipped where kind or a node image is missing (`nox -s node_image` makes one).
What it shows for real: the run's kubeconfig (0600, never ~/.kube/config),
image load and its skip by ID, presence checks through ctr, each workload kind
through its own API, fast failures naming their cause, a reused cluster, the
diagnostics, and that nothing is left once the cluster is deleted.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from infra import config, waits
from infra.builds import image_tasks, third_party
from infra.builds.build import ImagePlan
from infra.cleanup import cleanup, runlock
from infra.gocover import coverflush, gocoverage
from infra.images import ImageRef
from infra.names import LABEL, new_run_id, resource_name
from infra.nodeimage import select
from infra.paths import RunPaths, build_dir
from infra.platforms import manifests, ports
from infra.platforms.kube import KubeApiError
from infra.platforms.manifests import Rendered
from infra.platforms.platform import Context, ImageMissing
from infra.platforms.platform_kind import KindPlatform
from infra.podman_cli import Podman, podman_env
from infra.proc import Result, SubprocessRunner
from tests.faultkit import lines_with

REPO = Path(__file__).resolve().parents[1]
PROBE = Path(__file__).resolve().parent / "kindprobe"
"""A tiny static program: logs, serves, fetches or crashes on demand (see main.go)."""


def _podman() -> Podman:
    return Podman(SubprocessRunner(), podman_env(REPO / ".e2e"))


def _node_image() -> str:
    if shutil.which("kind") is None or shutil.which("podman") is None:
        return ""
    return select.available(_podman(), "")


pytestmark = [
    pytest.mark.slow,
    pytest.mark.kind,
    pytest.mark.skipif(not _node_image(), reason="kind or a node image missing (`nox -s node_image`)"),
]


class Spy(SubprocessRunner):
    """Runs for real and remembers every argv."""

    def __init__(self) -> None:
        self.argvs: list[tuple[str, ...]] = []

    def run(self, argv: Any, **kw: Any) -> Result:
        self.argvs.append(tuple(argv))
        return super().run(argv, **kw)


def _kube_home_digest() -> str:
    path = Path.home() / ".kube" / "config"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "absent"


@pytest.fixture(scope="module")
def sleeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageRef]:
    """A tiny static image built here: logs 'started', and 'stopped' on SIGTERM."""
    work = tmp_path_factory.mktemp("sleeper")
    shutil.copytree(PROBE, work, dirs_exist_ok=True)
    rootfs = work / "rootfs"
    rootfs.mkdir()
    runner = SubprocessRunner()
    runner.run(["go", "build", "-o", str(rootfs / "sleeper"), "."], timeout=300, cwd=work,
               env={"CGO_ENABLED": "0"})  # fmt: skip
    runner.run(["tar", "-C", str(rootfs), "-cf", str(work / "rootfs.tar"), "."], timeout=60)
    ref = ImageRef("localhost/e2eh-test/sleeper", new_run_id())
    _podman()("import", "--change", 'ENTRYPOINT ["/sleeper"]', str(work / "rootfs.tar"), str(ref))
    yield ref
    _podman()("rmi", "--force", str(ref), check=False)


HOST_PORTS = dict(zip((30080, 30081), sorted({ports.free_port() for _ in range(8)})[:2], strict=True))
"""Free ones, as a run takes them: another cluster on this machine may hold any fixed pair."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KindPlatform]:
    root = tmp_path_factory.mktemp("kindrun")
    cfg = config.load(REPO / "e2e.toml")  # on two nodes: CI's kind session runs the example's four
    cfg = cfg.model_copy(update={"platform": cfg.platform.model_copy(update={"kind_workers": 1})})
    runner = Spy()
    ctx = Context(cfg, RunPaths(root, new_run_id()), runner, _podman(), coverage=True,
                  host_ports=HOST_PORTS)  # fmt: skip
    before = _kube_home_digest()
    plat = KindPlatform(ctx)
    lock = runlock.hold(ctx.run_id)  # a live run: another run's stale sweep leaves it alone
    try:
        plat.create()
        yield plat
    finally:
        plat.teardown()
        runlock.release(lock, ctx.run_id)
        assert _node_containers(plat.cluster) == []  # nothing left behind
        assert cleanup.node_volumes(_podman()).get(plat.cluster) is None
        assert not plat.kubeconfig.exists()
        assert _kube_home_digest() == before  # never ~/.kube/config


def _node_containers(cluster: str) -> list[object]:
    out = _podman()("ps", "--all", "--format", "json", "--filter",
                    f"label=io.x-k8s.kind.cluster={cluster}").stdout  # fmt: skip
    return list(json.loads(out or "[]") or [])


def _workload(kind: str, name: str, ref: ImageRef, *args: str, replicas: int | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {
                "terminationGracePeriodSeconds": 5,
                "containers": [
                    {"name": "main", "image": str(ref), "imagePullPolicy": "Never", "args": list(args)}
                ],
            },
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "labels": {"app": name}},
            "spec": spec}  # fmt: skip


def test_the_cluster_is_the_runs_own(cluster: KindPlatform) -> None:
    assert cluster.cluster == resource_name(cluster.ctx.run_id) in cluster.clusters()
    assert stat.S_IMODE(cluster.kubeconfig.stat().st_mode) == 0o600
    assert len(cluster.nodes()) == 2  # control plane + the default worker
    assert cluster.api.namespace_exists(cluster.namespace)
    create = next(a for a in cluster.ctx.runner.argvs if a[:3] == ("kind", "create", "cluster"))  # type: ignore[attr-defined]
    assert create[create.index("--kubeconfig") + 1] == str(cluster.kubeconfig)
    rendered = (cluster.ctx.paths.run_dir / "kind-config.yaml").read_text()
    assert "containerPath: /coverdata" in rendered and f"hostPort: {HOST_PORTS[30080]}" in rendered
    if not Path("/sys/fs/cgroup/cgroup.controllers").exists():
        assert "failCgroupV1: false" in rendered  # applied because this host needs it


def test_the_printed_inspect_command_works_as_printed(cluster: KindPlatform) -> None:
    """Printed after --keep and in wait hints: the host may have no kubectl (this one has none)."""
    res = subprocess.run(["bash", "-c", cluster.inspect_command()], capture_output=True, text=True,
                         timeout=60, check=False, cwd="/")  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert "No resources found" in res.stdout + res.stderr or "NAME" in res.stdout


def test_load_then_skip_by_image_id_and_verify_presence(cluster: KindPlatform, sleeper: ImageRef) -> None:
    spy: Spy = cluster.ctx.runner  # type: ignore[assignment]
    cluster.load_images([sleeper])
    assert any(a[:3] == ("kind", "load", "image-archive") for a in spy.argvs)
    spy.argvs.clear()
    cluster.load_images([sleeper])  # unchanged: every node holds the same ID
    assert not any(a[:2] in (("kind", "load"), ("podman", "save")) for a in spy.argvs)
    assert not cluster.ctx.paths.archive.exists()
    doc = _workload("Deployment", "present", sleeper)
    cluster.verify_images(Rendered([doc]))  # localhost/ kept: found in every node


def test_a_reference_that_was_not_loaded_fails_in_seconds_naming_it(
    cluster: KindPlatform, sleeper: ImageRef
) -> None:
    wrong = ImageRef(sleeper.repository, "never-loaded")
    start = time.monotonic()
    with pytest.raises(ImageMissing) as info:
        cluster.verify_images(Rendered([_workload("Deployment", "ghost", wrong)]))
    assert time.monotonic() - start < 15
    assert f"{wrong} (used by Deployment/ghost) is not in node" in str(info.value)
    stripped = _workload("Deployment", "stripped", sleeper)
    stripped["spec"]["template"]["spec"]["containers"][0]["image"] = str(sleeper).removeprefix("localhost/")
    with pytest.raises(ImageMissing, match="is not in node"):  # containerd would look on docker.io
        cluster.verify_images(Rendered([stripped]))


def test_each_workload_kind_rolls_out_stops_and_starts_through_its_own_api(
    cluster: KindPlatform, sleeper: ImageRef
) -> None:
    cluster.load_images([sleeper])
    docs = [
        _workload("Deployment", "dep", sleeper, replicas=1),
        _workload("StatefulSet", "sts", sleeper, replicas=1),
        _workload("DaemonSet", "ds", sleeper),
    ]
    cluster.deploy("workloads", docs)
    cluster.wait_ready("workloads")
    ds = cluster.api.workload("DaemonSet", "ds", cluster.namespace)
    assert ds["status"]["numberReady"] == ds["status"]["desiredNumberScheduled"] >= 1
    cluster.stop("workloads")
    for name in ("dep", "sts", "ds"):
        assert cluster.api.pods(cluster.namespace, f"app={name}") == []
    logs = cluster.logs("workloads")
    assert logs.count("stopped") >= 3  # every process ended gracefully and its last words were kept
    cluster.start("workloads")
    assert all(cluster.api.pods(cluster.namespace, f"app={n}") for n in ("dep", "sts", "ds"))
    cluster.restart("workloads")
    logs = cluster.logs("workloads")
    assert logs.count("stopped") >= 6
    # three generations of three pods; the StatefulSet's new pod has its old one's name, and counts too
    assert logs.count("started") == 9, logs


def _job(name: str, ref: ImageRef, *args: str, init: tuple[str, ...] = ()) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": str(ref), "imagePullPolicy": "Never", "args": list(args)}],
    }
    if init:
        pod["initContainers"] = [
            {"name": "first", "image": str(ref), "imagePullPolicy": "Never", "args": list(init)}
        ]
    template = {"metadata": {"labels": {"app": name}}, "spec": pod}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": template}}  # fmt: skip


def test_a_job_completes_after_its_init_container_before_the_workloads_beside_it(
    cluster: KindPlatform, sleeper: ImageRef
) -> None:
    cluster.load_images([sleeper])
    after = _workload("Deployment", "after-job", sleeper, replicas=1)
    cluster.deploy("jobs", [_job("migrate-ok", sleeper, "exit", "0", init=("exit", "0")), after])
    job = cluster.api.job("migrate-ok", cluster.namespace)
    assert job["status"]["succeeded"] == 1
    assert cluster.jobs == {"jobs": ["migrate-ok"]}
    after_job = cluster.api.workload("Deployment", "after-job", cluster.namespace)
    # the workload was applied once the Job was done
    assert str(after_job["metadata"]["creationTimestamp"]) >= str(job["status"]["completionTime"])


def test_a_failing_job_fails_in_seconds_with_its_pods_log(cluster: KindPlatform, sleeper: ImageRef) -> None:
    cluster.load_images([sleeper])
    start = time.monotonic()
    with pytest.raises(waits.Fatal) as info:
        cluster.deploy("jobs-bad", [_job("migrate-bad", sleeper, "exit", "3")])
    assert time.monotonic() - start < cluster.ctx.config.timeouts.job
    msg = str(info.value)
    assert "job migrate-bad failed (BackoffLimitExceeded" in msg, msg
    assert "exiting with 3" in msg, msg  # the pod's own last words


def test_a_crash_loop_fails_fast_with_its_last_log_lines(cluster: KindPlatform, sleeper: ImageRef) -> None:
    cluster.load_images([sleeper])
    doc = _workload("Deployment", "crasher", sleeper, "crash", replicas=1)
    # a readiness probe, as services have: without one a pod counts as available the moment it runs
    doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {
        "tcpSocket": {"port": 8080},
        "periodSeconds": 1,
    }
    cluster.deploy("crasher", [doc])
    start = time.monotonic()
    with pytest.raises(waits.Fatal) as info:
        cluster.wait_ready("crasher")
    assert time.monotonic() - start < cluster.ctx.config.timeouts.ready
    assert "CrashLoopBackOff" in str(info.value) and "crashing on purpose" in str(info.value)


def test_logs_keep_what_a_container_restarted_in_place_said(cluster: KindPlatform, sleeper: ImageRef) -> None:
    """The kubelet restarts a crashed container in the same pod: its earlier instance's log is kept."""
    cluster.load_images([sleeper])
    cluster.deploy("restarter", [_workload("Deployment", "restarter", sleeper, "crash-later", replicas=1)])

    def restarted() -> waits.Observation[None]:
        pods = cluster.api.pods(cluster.namespace, "app=restarter")
        counts = [
            cs.get("restartCount", 0)
            for p in pods
            for cs in (p.get("status") or {}).get("containerStatuses") or []
        ]
        running = [cs for p in pods for cs in (p.get("status") or {}).get("containerStatuses") or []
                   if "running" in (cs.get("state") or {})]  # fmt: skip
        return waits.Observation(bool(counts) and counts[0] >= 1 and bool(running), f"restarts {counts}")

    waits.poll(
        "the restarter's container to be restarted in place and run", restarted, timeout=90, interval=0.5
    )
    logs = cluster.logs("restarter")
    assert logs.count("instance started at") >= 2, logs  # the previous instance and the current one
    assert "crashing on purpose" in logs, logs


def test_a_docker_hub_image_written_short_is_loaded_and_found_under_the_nodes_long_name(
    cluster: KindPlatform, sleeper: ImageRef, tmp_path: Path
) -> None:
    """`docker.io/<name>:t` in a manifest: the node stores `docker.io/library/<name>:t`, and both are one."""
    written = f"docker.io/e2eh-test-redis:{sleeper.tag}"
    _podman()("tag", str(sleeper), written)
    try:
        doc = _workload("Deployment", "short-hub", ImageRef("x", "y"), replicas=1)
        doc["spec"]["template"]["spec"]["containers"][0]["image"] = written
        cfg = config.parse({"manifests": [], "services": []}, tmp_path / "e2e.toml")
        rendered = manifests.render(cfg, [doc], ImagePlan({}, False), coverage=False)
        (ref,) = rendered.foreign
        assert str(ref) == f"docker.io/library/e2eh-test-redis:{sleeper.tag}"
        cluster.load_images([ref])
        cluster.verify_images(rendered)  # found in every node: no ImageMissing
        cluster.deploy("short-hub", rendered.docs)
        cluster.wait_ready("short-hub")
    finally:
        _podman()("rmi", written, check=False)


def test_a_statefulsets_claim_binds_and_its_pod_runs_on_the_offline_node_image(
    cluster: KindPlatform, sleeper: ImageRef
) -> None:
    """The node image's default StorageClass (kind's hostPath provisioner, in kube-controller-manager)."""
    cluster.load_images([sleeper])
    doc = _workload("StatefulSet", "keeper", sleeper, replicas=1)
    doc["spec"]["volumeClaimTemplates"] = [{
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }]  # fmt: skip
    doc["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "data", "mountPath": "/data"}
    ]
    cluster.deploy("keeper", [doc])
    cluster.wait_ready("keeper")
    (pod,) = cluster.api.pods(cluster.namespace, "app=keeper")
    claim = pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert claim == "data-keeper-0", pod["spec"]["volumes"]


def test_never_ready_gives_up_at_the_deadline_saying_what_it_saw(
    cluster: KindPlatform, sleeper: ImageRef
) -> None:
    cluster.load_images([sleeper])
    doc = _workload("Deployment", "never-ready", sleeper, replicas=1)
    doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {
        "tcpSocket": {"port": 8080},
        "periodSeconds": 1,
    }
    cluster.deploy("never-ready", [doc])
    saved = cluster.ctx.config
    timeouts = saved.timeouts.model_copy(update={"ready": 8})
    cluster.ctx.config = saved.model_copy(update={"timeouts": timeouts})
    try:
        with pytest.raises(waits.WaitTimeout) as info:
            cluster.wait_ready("never-ready")
    finally:
        cluster.ctx.config = saved
    msg = str(info.value)
    assert "gave up after 8s waiting for deployment never-ready" in msg
    assert "available 0 of 1" in msg and "describe deployment never-ready" in msg
    # the pods' own words, as podman's error gives them: state, and the probe's newest failure
    assert re.search(r"pod never-ready-\S+ container main: running, not ready, restarts 0", msg), msg
    assert re.search(r"pod never-ready-\S+ newest warning: Unhealthy: Readiness probe failed: .*8080", msg), (
        msg
    )
    assert "the cluster stays up only with --keep" in msg, msg  # a command on a deleted cluster says so


def test_a_refused_object_is_one_line_naming_it_and_the_field(
    cluster: KindPlatform, sleeper: ImageRef
) -> None:
    doc = _workload("Deployment", "bad-port", sleeper, replicas=1)
    doc["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": 70000}]
    with pytest.raises(KubeApiError) as info:
        cluster.deploy("bad-port", [doc])
    msg = str(info.value)
    assert "\n" not in msg and "HTTP response" not in msg, msg
    assert msg.startswith("Kubernetes refused Deployment/bad-port (422 Invalid): "), msg
    assert "spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 70000" in msg, msg


def test_pods_on_different_nodes_reach_each_other_by_service_name(
    cluster: KindPlatform, sleeper: ImageRef
) -> None:
    """The pod network of the node image across nodes: control plane -> Service -> a worker's pod."""
    cluster.load_images([sleeper])
    nodes = cluster.nodes()
    plane = next(n for n in nodes if n.endswith("-control-plane"))
    worker = next(n for n in nodes if n != plane)
    server = _workload("Deployment", "pong", sleeper, "serve", replicas=1)
    server["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/hostname": worker}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "pong"},
        "spec": {"selector": {"app": "pong"}, "ports": [{"port": 8080, "targetPort": 8080}]},
    }
    client = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "ping", "labels": {"app": "ping"}},
        "spec": {
            "nodeName": plane,  # placed by hand: the control plane's taint keeps the scheduler away
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "ping",
                    "image": str(sleeper),
                    "imagePullPolicy": "Never",
                    "args": ["fetch", "http://pong:8080/"],
                }
            ],
        },
    }
    cluster.deploy("pong", [server, service])
    cluster.wait_ready("pong")
    cluster.deploy("ping", [client])

    def finished() -> waits.Observation[str]:
        pods = cluster.api.pods(cluster.namespace, "app=ping")
        phase = pods[0].get("status", {}).get("phase", "") if pods else "not created"
        return waits.Observation(phase in ("Succeeded", "Failed"), phase, phase)

    phase = waits.poll("pod ping to finish", finished, timeout=90, interval=0.5)
    log = cluster.api.pod_log("ping", cluster.namespace)
    assert phase == "Succeeded", log
    assert "fetched: pong from pong-" in log and plane != worker


def test_a_reused_cluster_gets_its_own_ports_and_a_fresh_namespace(cluster: KindPlatform) -> None:
    ctx = cluster.ctx
    again = Context(ctx.config, ctx.paths, ctx.runner, ctx.podman, host_ports={30080: 1, 30081: 2},
                    cluster=cluster.cluster, reuse=True)  # fmt: skip
    reused = KindPlatform(again)
    reused.create()
    assert again.host_ports == HOST_PORTS  # what the cluster publishes
    assert reused.api.namespace_exists(reused.namespace)
    assert reused.api.pods(reused.namespace, "") == []  # reset: the earlier tests' pods are gone


def test_diagnostics_are_written_before_the_cluster_goes(cluster: KindPlatform, tmp_path: Path) -> None:
    cluster.collect_diagnostics(tmp_path)
    assert (tmp_path / "events.json").exists() and (tmp_path / "pods.json").exists()
    exported = tmp_path / "kind-logs"
    assert exported.is_dir() and any(exported.rglob("kubelet.log")), os.listdir(tmp_path)


def test_coverage_is_flushed_through_the_nodes_containerd(cluster: KindPlatform, tmp_path: Path) -> None:
    """A -cover datastore on kind: SIGUSR1 through `ctr tasks kill` in its node writes its counters,
    which a SIGKILL afterwards does not lose; a restart flushes the old pod first."""
    ctx, spy = cluster.ctx, cluster.ctx.runner
    cfg = ctx.config
    plan, _ = image_tasks.build_all(
        cfg, ctx.runner, ctx.podman, coverage=True, services=["datastore"], root=ctx.paths.root
    )
    postgres = ImageRef.foreign("docker.io/library/postgres:15-bookworm")  # the datastore's database
    runlock.use_images(ctx.run_id, [str(postgres)])  # another run's teardown must leave the name be
    third_party.ensure(cfg, {postgres: ["the test"]}, podman=ctx.podman, runner=ctx.runner,
                       build_root=build_dir(ctx.paths.root), stand_ins=plan.stand_ins)  # fmt: skip
    try:
        cluster.load_images([plan.ref("datastore"), postgres])
    finally:
        third_party.remove_stand_ins(ctx.podman, [postgres])  # its kept build stays, not the name
    gocoverage.prepare_dirs(ctx.paths.covdata, ["datastore"])
    rendered = manifests.render(cfg, manifests.load_docs(cfg), plan, coverage=True)
    cluster.deploy("", [d for d in rendered.shared if d["metadata"]["name"] != "redis"])  # Secrets, postgres
    cluster.deploy("datastore", rendered.by_service["datastore"])  # its migration Job, then it
    cluster.wait_ready("datastore")
    url = f"http://127.0.0.1:{ctx.host_ports[30081]}"
    waits.wait_http(url + "/ready", timeout=60)
    assert requests.get(url + "/api/v1/events", params={"correlation_id": "x"}, timeout=10).status_code == 200

    flushed = cluster.flush_coverage(["datastore"])
    # the one signalled process (the pod's pid 1) wrote one new counters file; an exec probe that
    # exited meanwhile may have written its own (covcounters.<hash>.<pid>.<time>)
    assert len([f for f in flushed["datastore"] if f.split(".")[2] == "1"]) == 1, flushed
    assert not list((ctx.paths.covdata / "datastore").glob(coverflush.FLUSHED_PREFIX + "*"))
    pod = cluster.api.pods(cluster.namespace, "app=datastore")[0]
    node = pod["spec"]["nodeName"]
    container_id = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    kill = ("podman", "exec", node, "ctr", "--namespace", "k8s.io", "tasks", "kill", "--signal", "SIGUSR1")
    assert (*kill, container_id) in spy.argvs  # type: ignore[attr-defined]

    cluster.node_exec(
        node, "ctr", "--namespace", "k8s.io", "tasks", "kill", "--signal", "SIGKILL", container_id
    )
    report = gocoverage.build_reports(
        {"datastore": ctx.paths.covdata / "datastore"},
        tmp_path / "report",
        [REPO / "services"],
        SubprocessRunner(),
    )
    assert report.services["datastore"] > 0
    funcs = (tmp_path / "report" / "datastore.func.txt").read_text().splitlines()
    listed = [
        ln
        for ln in funcs
        if re.fullmatch(r"example\.com/e2e-services/datastore/handlers\.go:\d+:", ln.split()[0])
        and ln.split()[1] == "listEvents"
    ]
    assert listed and not listed[0].endswith(" 0.0%"), listed

    cluster.wait_ready("datastore")  # kubelet restarted the killed container
    waits.wait_http(url + "/ready", timeout=60)
    before = {p.name for p in (ctx.paths.covdata / "datastore").glob("covcounters.*")}
    cluster.restart("datastore")  # flushes the running pod before replacing it
    after = {p.name for p in (ctx.paths.covdata / "datastore").glob("covcounters.*")}
    assert len(after - before) >= 1
    cluster.stop("datastore")


def test_an_address_of_a_gone_pod_is_unreachable_not_routed_out_of_the_node(cluster: KindPlatform) -> None:
    """A Service endpoint can outlive its pod for a moment; a connection to it must fail at once.

    Through the node's default route it would reach whatever answers on the host's network
    (here: a proxy answering 404, which a client then kept in its connection pool).
    """
    plane = next(n for n in cluster.nodes() if n.endswith("-control-plane"))
    worker = next(n for n in cluster.nodes() if n != plane)
    cidr = cluster.node_exec(
        plane, "kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf", "get", "node", worker,
        "-o", "jsonpath={.spec.podCIDR}",
    ).strip()  # fmt: skip
    gone = cidr.rsplit(".", 1)[0] + ".250"  # no pod has it: the node's pods count up from .2

    def route() -> waits.Observation[str]:
        res = cluster.ctx.runner.run(
            ["podman", "exec", worker, "ip", "route", "get", gone], timeout=30,
            env=dict(cluster.ctx.podman.env), check=False,
        )  # fmt: skip
        seen = (
            res.stdout + res.stderr
        ).strip()  # the unreachable route: "RTNETLINK answers: No route to host"
        return waits.Observation(res.returncode != 0 and "No route to host" in seen, seen, seen)

    seen = waits.poll(f"the pod network to make {cidr} unreachable on {worker}", route, timeout=60)
    assert seen is not None and "via" not in seen, seen


def test_an_untranslated_service_address_is_refused_not_routed_out_of_the_node(
    cluster: KindPlatform, sleeper: ImageRef
) -> None:
    """While a Service's endpoints change, kube-proxy may not translate its address for a moment.

    Through the node's default route such a connection reached a proxy on the host's network,
    which answered 404 "for the datastore" (and the gateway kept that connection in its pool).
    """
    cluster.load_images([sleeper])
    plane = next(n for n in cluster.nodes() if n.endswith("-control-plane"))
    worker = next(n for n in cluster.nodes() if n != plane)
    kubectl = ("kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf")
    cidrs = cluster.node_exec(
        plane, *kubectl, "get", "servicecidrs", "-o", "jsonpath={.items[*].spec.cidrs[*]}"
    )
    taken = set(cluster.node_exec(plane, *kubectl, "get", "services", "-A", "-o",
                                  "jsonpath={.items[*].spec.clusterIP}").split())  # fmt: skip
    network = ipaddress.ip_network(cidrs.split()[0])
    last = network.broadcast_address
    address = next(str(last - k) for k in range(1, 64) if str(last - k) not in taken)  # no Service has it

    def refused_on_node() -> waits.Observation[str]:
        rules = cluster.node_exec(worker, "iptables", "-S", "E2EH-PODNET-SVC", check=False)
        return waits.Observation(str(network) in rules, rules or "no chain E2EH-PODNET-SVC yet", rules)

    waits.poll(f"the pod network to refuse untranslated traffic to {network} on {worker}", refused_on_node,
               timeout=60)  # fmt: skip
    client = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "untranslated", "labels": {"app": "untranslated"}},
        "spec": {
            "nodeName": worker,
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": str(sleeper),
                    "imagePullPolicy": "Never",
                    "args": ["fetch-once", f"http://{address}:8080/"],
                }
            ],
        },
    }
    cluster.deploy("untranslated", [client])

    def finished() -> waits.Observation[str]:
        pods = cluster.api.pods(cluster.namespace, "app=untranslated")
        phase = pods[0].get("status", {}).get("phase", "") if pods else "not created"
        return waits.Observation(phase in ("Succeeded", "Failed"), phase, phase)

    waits.poll("pod untranslated to finish", finished, timeout=90, interval=0.5)
    log = cluster.api.pod_log("untranslated", cluster.namespace)
    assert "connection refused" in log and "fetched" not in log, log


@pytest.mark.exclusive  # the global cleanup runs: another test's unlocked objects would go with it
def test_cleanup_during_the_run_leaves_its_cluster_and_the_images_alone(
    cluster: KindPlatform, sleeper: ImageRef, roots: Any, tmp_path: Path
) -> None:
    """The nodes inherit the managed label from the harness's node image, and carry no run label;
    images carry no run at all. Neither may go while a run holds its lock."""
    podman = _podman()
    managed = ImageRef("localhost/e2eh-test/managed", new_run_id())  # labelled as the harness labels
    (tmp_path / "Containerfile").write_text(f"FROM {sleeper}\n")
    podman("build", "--label", f"{LABEL}=true", "--tag", str(managed), str(tmp_path), timeout=120)
    nodes = sorted(cluster.nodes())
    try:
        out = roots.make("cleanup-kind").harness("cleanup", timeout=300)

        assert out.code == 0, str(out)
        assert sorted(cluster.nodes()) == nodes, str(out)
        assert all(_running(node) for node in nodes), str(out)
        assert cluster.api.namespace_exists(cluster.namespace), str(out)
        left = lines_with(out.output, f"left: kind cluster {cluster.cluster}", "its run is still going")
        assert left, str(out)
        removed = [
            ln for ln in out.output.splitlines() if ln.startswith("removed:") and cluster.cluster in ln
        ]
        assert not removed, str(out)
        assert lines_with(out.output, "left: images", cluster.ctx.run_id, "still going"), str(out)
        assert podman.image_exists(managed), str(out)
    finally:
        podman("rmi", "--force", str(managed), check=False)


def _running(node: str) -> bool:
    return _podman()("inspect", "--format", "{{.State.Running}}", node).stdout.strip() == "true"
