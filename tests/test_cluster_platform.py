"""--platform cluster for real: a cluster the run never creates, fed by a registry (`inv local-cluster`).

"The team's cluster" is a kind cluster from the offline node image with a registry beside it, made
once for the module by the same command users run; the runs get only the four E2E_* variables. A
repo shaped like a team's (two mains, a multi-stage Dockerfile, kustomize overlays, a Redis the
cluster takes from the registry) passes; a ServiceAccount confined to one namespace runs it in that
namespace; the failures users meet (wrong context, unreachable API server, a registry that refuses
pushes, an image the nodes cannot pull, a cluster-scoped object) each end the run fast, naming the
thing; nothing of a run is left in the cluster.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.builds import rendertools
from infra.cleanup import runlock
from infra.names import LABEL, RUN_LABEL
from infra.platforms import local_cluster, ports
from infra.platforms.kube import RealKubeApi
from infra.platforms.platform_cluster import CREATED_LABEL
from infra.podman_cli import Podman, podman_env
from infra.proc import SubprocessRunner
from tests.faultkit import HARNESS, REPO, RootFactory, harness_env
from tests.test_init_real_repo import init, make_repo, redis_at_hand
from tests.test_kind_cluster import _node_image

pytestmark = [
    pytest.mark.kind,
    pytest.mark.slow,
    pytest.mark.skipif(not _node_image(), reason="no kind or node image (`nox -s node_image`)"),
]


@pytest.fixture(scope="module")
def pair() -> Iterator[local_cluster.LocalCluster]:
    """The cluster and its registry, as `inv local-cluster up` makes them, removed after the module."""
    lc = local_cluster.LocalCluster(f"e2e-test-{secrets.token_hex(2)}", ports.free_port())
    runner, podman = SubprocessRunner(), Podman(SubprocessRunner(), podman_env(REPO / ".e2e"))
    try:
        local_cluster.up(runner, podman, lc)
        yield lc
    finally:
        gone = local_cluster.down(runner, podman, lc)
        assert any("deleted kind cluster" in line for line in gone), gone


def cluster_env(lc: local_cluster.LocalCluster, **over: str) -> dict[str, str]:
    env = {line.split("=", 1)[0].removeprefix("export "): line.split("=", 1)[1].strip("'")
           for line in lc.exports()}  # fmt: skip
    return harness_env({**env, **over})


def e2e(repo: Path, env: dict[str, str], *extra: str) -> tuple[int, str, float]:
    start = time.monotonic()
    proc = subprocess.run(
        [*HARNESS, "--config", str(repo / "e2e.toml"), "e2e", "--platform", "cluster", *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start


def api(lc: local_cluster.LocalCluster) -> RealKubeApi:
    return RealKubeApi(lc.kubeconfig, lc.context)


def run_namespaces(lc: local_cluster.LocalCluster) -> list[str]:
    return [n["metadata"]["name"] for n in api(lc).namespaces(RUN_LABEL)]


def set_cluster(repo: Path, **keys: object) -> None:
    """[platform.cluster] keys in the repo's e2e.toml (init wrote a [platform] table)."""
    text = (repo / "e2e.toml").read_text()
    lines = "".join(
        f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v).replace(chr(39), chr(34))}\n"
        for k, v in keys.items()
    )
    (repo / "e2e.toml").write_text(text + "\n[platform.cluster]\n" + lines)


def test_a_team_repo_passes_through_the_registry_and_leaves_nothing(
    pair: local_cluster.LocalCluster, roots: RootFactory
) -> None:
    repo = make_repo(roots.make("cluster-repo").path / "web")
    with redis_at_hand(repo) as redis:
        init(repo)
        set_cluster(repo, mirror_third_party=True)  # the nodes reach no registry but this one
        argv = [*HARNESS, "--config", str(repo / "e2e.toml"), "doctor", "--platform", "cluster"]
        doctor = subprocess.run(argv, cwd=REPO, env=cluster_env(pair), capture_output=True, text=True,
                                timeout=300, check=False)  # fmt: skip
        said = doctor.stdout + doctor.stderr
        for check in ("cluster target", "API server", "permissions", "registry push", "nodes' pull"):
            assert f"ok   {check}: " in said, said
        before = run_namespaces(pair)
        code, out, _ = e2e(repo, cluster_env(pair))
        assert code == 0, out
        assert "- result: passed: 1 passed" in out, out
        assert f"cluster: context {pair.context}, server https://127.0.0.1:" in out, out
        pushed = re.findall(rf"^image ({re.escape(pair.registry)}/\S+): pushed in", out, re.MULTILINE)
        assert any("/ghcr.io/team/web:" in p or "/team/web:" in p for p in pushed), out
        assert f"{pair.registry}/docker.io/library/redis:{redis.rsplit(':', 1)[1]}" in pushed, out
        assert run_namespaces(pair) == before, "the run's namespace is gone"

        again_code, again, _ = e2e(repo, cluster_env(pair))
    assert again_code == 0, again
    assert (
        len(re.findall(r": already in the registry \(same image\): push skipped$", again, re.MULTILINE)) == 2
    )


def test_credentials_confined_to_a_namespace_run_there_and_cluster_scoped_objects_are_refused(
    pair: local_cluster.LocalCluster, roots: RootFactory, tmp_path: Path
) -> None:
    namespace = f"team-{secrets.token_hex(2)}"
    kubeconfig = confined_kubeconfig(pair, namespace, tmp_path)
    repo = make_repo(roots.make("cluster-sa").path / "web")
    env = cluster_env(pair, E2E_KUBECONFIG=str(kubeconfig), E2E_CONTEXT="confined")
    try:
        with redis_at_hand(repo):
            init(repo)
            doctor = subprocess.run([*HARNESS, "--config", str(repo / "e2e.toml"), "doctor", "--platform",
                                     "cluster"], cwd=REPO, env=env, capture_output=True, text=True,
                                    timeout=300, check=False)  # fmt: skip
            said = doctor.stdout + doctor.stderr
            assert (
                "FAIL permissions: missing in a namespace of its own (asked in default): create namespaces, "
                in said
            )
            set_cluster(repo, namespace=namespace, mirror_third_party=True)
            code, out, _ = e2e(repo, env)
            assert code == 0, out
            assert "- result: passed: 1 passed" in out, out
            left = api(pair).pods(namespace, "")
            assert left == [], [p["metadata"]["name"] for p in left]

            role = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: reader}\n"
            (repo / "deploy" / "base" / "role.yaml").write_text(role)
            kust = repo / "deploy" / "base" / "kustomization.yaml"
            kust.write_text(kust.read_text().replace('"redis.yaml"]', '"redis.yaml", "role.yaml"]'))
            code, out, _ = e2e(repo, env)
        assert code == 2, out
        assert "error: ClusterRole/reader is cluster-scoped" in out and 'cluster_scoped = "allow"' in out, out
        assert "> preflight" not in out, "refused before anything started"
    finally:
        api(pair).delete_namespace(namespace)


@pytest.mark.parametrize("case", ["wrong-context", "unreachable", "registry-refuses", "cannot-pull"])
def test_each_failure_ends_fast_naming_the_thing_and_leaves_nothing(
    pair: local_cluster.LocalCluster, roots: RootFactory, tmp_path: Path, case: str
) -> None:
    repo = make_repo(roots.make(f"cluster-{case}").path / "web")
    init(repo)
    env = cluster_env(pair)
    want_code, want = 4, ""
    if case == "wrong-context":
        env["E2E_CONTEXT"] = "kind-nope"
        want_code, want = (
            2,
            f"context 'kind-nope' is not in kubeconfig {pair.kubeconfig} (it has: {pair.context})",
        )
    elif case == "unreachable":
        data = yaml.safe_load(pair.kubeconfig.read_text())
        data["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{ports.free_port()}"
        (tmp_path / "kubeconfig").write_text(yaml.safe_dump(data))
        env["E2E_KUBECONFIG"] = str(tmp_path / "kubeconfig")
        want = f"the API server of context {pair.context} did not answer"
    elif case == "registry-refuses":
        env["E2E_REGISTRY"] = f"localhost:{ports.free_port()}"  # nothing listens there
        want = f"check that registry {env['E2E_REGISTRY']} accepts pushes"
    else:  # redis is left for the nodes to pull, from a registry that does not have it
        (repo / "deploy" / "base" / "redis.yaml").write_text(redis_yaml(f"{pair.registry}/team/absent:1"))
        kust = repo / "deploy" / "base" / "kustomization.yaml"
        kust.write_text('resources: ["deployment.yaml", "service.yaml", "redis.yaml"]\n')
        want = f"(image {pair.registry}/team/absent:1)"
    before = run_namespaces(pair)
    code, out, seconds = e2e(repo, env)
    assert code == want_code, out
    assert want in out, out
    if case == "cannot-pull":
        assert re.search(r"container redis is (ErrImagePull|ImagePullBackOff): ", out), out
    assert seconds < 120, f"{seconds:.0f}s: {out}"
    assert run_namespaces(pair) == before, "nothing of the run is left in the cluster"


def redis_yaml(image: str) -> str:
    from tests.test_init_real_repo import redis_manifest

    return redis_manifest(image)


def confined_kubeconfig(lc: local_cluster.LocalCluster, namespace: str, tmp_path: Path) -> Path:
    """A ServiceAccount allowed everything in `namespace` and nothing else, as a kubeconfig."""
    admin = api(lc)
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "runner"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "all"},
         "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "runner"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "all"},
         "subjects": [{"kind": "ServiceAccount", "name": "runner", "namespace": namespace}]},
    ]  # fmt: skip
    for doc in docs:
        admin.apply(doc, "" if doc["kind"] == "Namespace" else namespace)
    kubectl = str(rendertools.kubectl())
    token = subprocess.run(
        [kubectl, "--kubeconfig", str(lc.kubeconfig), "--context", lc.context, "-n", namespace,
         "create", "token", "runner", "--duration", "1h"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    data = yaml.safe_load(lc.kubeconfig.read_text())
    cluster = data["clusters"][0]["cluster"]
    out = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "runner", "user": {"token": token}}],
        "contexts": [{"name": "confined",
                      "context": {"cluster": "c", "user": "runner", "namespace": namespace}}],
    }  # fmt: skip
    path = tmp_path / "confined.kubeconfig"
    path.write_text(yaml.safe_dump(out))
    path.chmod(0o600)
    assert base64.b64decode(cluster["certificate-authority-data"])  # the admin's CA, not its key
    assert os.environ.get("KUBECONFIG") != str(path)
    return path


KEPT_RUN = "20200101-000003-kept"


def test_cleanup_removes_the_harness_s_old_namespaces_of_dead_runs_and_nothing_else(
    pair: local_cluster.LocalCluster,
) -> None:
    admin = api(pair)
    hour_ago, now = str(int(time.time()) - 3600), str(int(time.time()))
    made = {
        f"e2eh-old-{secrets.token_hex(2)}": {
            LABEL: "true",
            RUN_LABEL: "20200101-000000-dead",
            CREATED_LABEL: hour_ago,
        },
        f"e2eh-new-{secrets.token_hex(2)}": {
            LABEL: "true",
            RUN_LABEL: "20200101-000001-dead",
            CREATED_LABEL: now,
        },
        f"theirs-{secrets.token_hex(2)}": {RUN_LABEL: "20200101-000002-dead", CREATED_LABEL: hour_ago},
        f"e2eh-kept-{secrets.token_hex(2)}": {LABEL: "true", RUN_LABEL: KEPT_RUN, CREATED_LABEL: hour_ago},
    }
    runlock.mark_kept(KEPT_RUN, f"inv down --run-id {KEPT_RUN}", elsewhere=True)
    for name, labels in made.items():
        admin.ensure_namespace(name, labels)
    old, new, theirs, kept = made
    try:
        argv = [*HARNESS, "cleanup", "--platform", "cluster", "--older-than", "30m"]
        proc = subprocess.run(argv, cwd=REPO, env=cluster_env(pair), capture_output=True, text=True,
                              timeout=120, check=False)  # fmt: skip
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out
        assert f"removed: namespace {old} (run 20200101-000000-dead" in out, out
        assert f"left: namespace {new}: younger than --older-than" in out, out
        assert theirs not in out, out
        assert f"left: namespace {kept}: kept on purpose; `inv down --run-id {KEPT_RUN}`" in out, out
        argv = [*HARNESS, "cleanup", "--keep-images"]
        podman_cleanup = subprocess.run(argv, cwd=REPO, env=cluster_env(pair), capture_output=True, text=True,
                                        timeout=300, check=False)  # fmt: skip
        assert podman_cleanup.returncode == 0, podman_cleanup.stdout + podman_cleanup.stderr
        running = local_cluster.status(
            SubprocessRunner(), Podman(SubprocessRunner(), podman_env(REPO / ".e2e")), pair
        )
        assert running == (True, True), "the pair is the user's: no cleanup of runs removes its registry"
        assert runlock.is_kept(KEPT_RUN), (
            "podman's cleanup cannot see a cluster's namespace: its marker stays"
        )
        alive = {n["metadata"]["name"]: n["metadata"].get("deletionTimestamp") for n in admin.namespaces("")}
        assert (
            alive.get(new) is None and new in alive and theirs in alive and (old not in alive or alive[old])
        )
    finally:
        runlock.unmark_kept(KEPT_RUN)
        for name in made:
            admin.delete_namespace(name)
