"""infra.platforms.manifests: refs substituted by repository (localhost/ kept), coverage added."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.builds.build import ImagePlan
from infra.config import Config
from infra.config import parse as parse_config
from infra.gocover import coverflush
from infra.images import ImageRef
from infra.platforms import manifests
from infra.platforms.manifests import COVERAGE_VOLUME, ManifestError, load_docs, render

DS = ImageRef("localhost/e2e-harness/datastore", "cov-1111111111111111")
GW = ImageRef("localhost/e2e-harness/gateway", "cov-2222222222222222")
PLAN = ImagePlan({"datastore": DS, "gateway": GW}, coverage=True)


def by_ident(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {manifests.ident(d): d for d in docs}


def container(doc: dict[str, Any]) -> dict[str, Any]:
    ctrs: list[dict[str, Any]] = doc["spec"]["template"]["spec"]["containers"]
    assert len(ctrs) == 1
    return ctrs[0]


def test_load_docs_reads_every_manifest_and_notes_its_source(repo_cfg: Config) -> None:
    docs = load_docs(repo_cfg)
    assert [manifests.ident(d) for d in docs] == [
        "Secret/postgres-credentials",
        "StatefulSet/postgres",
        "Service/postgres",
        "Deployment/redis",
        "Service/redis",
        "ConfigMap/datastore-config",
        "Secret/datastore-token",
        "Job/datastore-migrate",
        "StatefulSet/datastore",
        "Service/datastore",
        "ConfigMap/gateway-config",
        "Deployment/gateway",
        "Service/gateway",
    ]
    sources = {manifests.ident(d): d["metadata"]["annotations"]["e2e-harness/source"] for d in docs}
    assert sources["StatefulSet/postgres"] == "manifests/postgres.yaml"
    assert sources["Job/datastore-migrate"] == "manifests/datastore.yaml"


def test_render_substitutes_the_runs_refs_and_keeps_localhost(repo_cfg: Config) -> None:
    docs = load_docs(repo_cfg)
    original = copy.deepcopy(docs)
    rendered = render(repo_cfg, docs, PLAN, coverage=False)
    assert docs == original  # the loaded docs are not mutated
    d = by_ident(rendered.docs)
    for ident, ref in (
        ("Job/datastore-migrate", DS),
        ("StatefulSet/datastore", DS),
        ("Deployment/gateway", GW),
    ):
        ctr = container(d[ident])
        assert ctr["image"] == str(ref)
        assert ctr["image"].startswith("localhost/e2e-harness/")
        assert ctr["imagePullPolicy"] == "Never"
        assert "GOCOVERDIR" not in [e["name"] for e in ctr.get("env", [])]
        assert COVERAGE_VOLUME not in [
            v["name"] for v in d[ident]["spec"]["template"]["spec"].get("volumes", [])
        ]
    waitfor = "registry.example.com/e2e-harness/waitfor:1.0"
    postgres, redis = "docker.io/library/postgres:15-bookworm", "docker.io/library/redis:7.0-bookworm"
    assert rendered.image_refs() == {
        str(DS): "StatefulSet/datastore",  # the Job's too: one image, one entry
        str(GW): "Deployment/gateway",
        waitfor: "Deployment/gateway",
        postgres: "StatefulSet/postgres",
        redis: "Deployment/redis",
    }
    assert rendered.foreign == {
        ImageRef.foreign(waitfor): ["Deployment/gateway (manifests/gateway.yaml)"],
        ImageRef.foreign(postgres): ["StatefulSet/postgres (manifests/postgres.yaml)"],
        ImageRef.foreign(redis): ["Deployment/redis (manifests/redis.yaml)"],
    }
    init = d["Deployment/gateway"]["spec"]["template"]["spec"]["initContainers"][0]
    assert (init["image"], init["imagePullPolicy"]) == (waitfor, "IfNotPresent")  # as is: no localhost/
    assert f"image: {DS}" in rendered.yaml()


def test_render_with_coverage_adds_gocoverdir_and_the_hostpath_volume(repo_cfg: Config) -> None:
    rendered = render(repo_cfg, load_docs(repo_cfg), PLAN, coverage=True)
    d = by_ident(rendered.docs)
    for name, ident in (("datastore", "Job/datastore-migrate"), ("datastore", "StatefulSet/datastore"),
                        ("gateway", "Deployment/gateway")):  # fmt: skip
        spec = d[ident]["spec"]["template"]["spec"]
        ctr = container(d[ident])
        assert {"name": "GOCOVERDIR", "value": f"/coverdata/{name}"} in ctr["env"]
        assert {"name": COVERAGE_VOLUME, "mountPath": "/coverdata"} in ctr["volumeMounts"]
        assert {
            "name": COVERAGE_VOLUME,
            "hostPath": {"path": "/coverdata", "type": "DirectoryOrCreate"},
        } in spec["volumes"]
    gw_spec = d["Deployment/gateway"]["spec"]["template"]["spec"]
    assert [v["name"] for v in gw_spec["volumes"]] == ["datastore-token", COVERAGE_VOLUME]  # existing kept
    assert [m["name"] for m in container(d["Deployment/gateway"])["volumeMounts"]] == [
        "datastore-token",
        COVERAGE_VOLUME,
    ]
    assert "volumes" not in d["StatefulSet/postgres"]["spec"]["template"]["spec"]  # not built here: as is
    # rendering twice does not duplicate the coverage additions
    again = render(repo_cfg, rendered.docs, PLAN, coverage=True)
    ctr = container(by_ident(again.docs)["Deployment/gateway"])
    assert [e["name"] for e in ctr["env"]].count("GOCOVERDIR") == 1
    assert [m["name"] for m in ctr["volumeMounts"]].count(COVERAGE_VOLUME) == 1


def test_pulled_coverage_serves_counters_and_keeps_what_a_process_writes_on_its_way_out(
    repo_cfg: Config,
) -> None:
    """--platform cluster: no node to read; an emptyDir, a listener, and a keeper beside each service."""
    port = repo_cfg.coverage.pull_port
    rendered = render(repo_cfg, load_docs(repo_cfg), PLAN, coverage=True, pull_port=port)
    d = by_ident(rendered.docs)
    for ident in ("Job/datastore-migrate", "StatefulSet/datastore", "Deployment/gateway"):
        spec = d[ident]["spec"]["template"]["spec"]
        main, keeper = spec["containers"][0], spec["containers"][-1]
        assert {"name": "GOCOVERDIR", "value": "/coverdata"} in main["env"]
        assert {"name": coverflush.ADDR_ENV, "value": f":{port}"} in main["env"]
        assert keeper["name"] == coverflush.KEEPER and keeper["image"] == main["image"], keeper
        assert {"name": coverflush.KEEPER_ENV, "value": f":{port + 1}"} in keeper["env"]
        assert keeper.get("command") == main.get("command") and keeper.get("args") == main.get("args")
        assert {"name": COVERAGE_VOLUME, "emptyDir": {}} in spec["volumes"]
        assert not any("hostPath" in v for v in spec["volumes"])
    assert len(d["StatefulSet/postgres"]["spec"]["template"]["spec"]["containers"]) == 1  # not built here
    again = by_ident(render(repo_cfg, rendered.docs, PLAN, coverage=True, pull_port=port).docs)
    names = [c["name"] for c in again["Deployment/gateway"]["spec"]["template"]["spec"]["containers"]]
    assert names.count(coverflush.KEEPER) == 1, names


def test_render_groups_documents_per_service(repo_cfg: Config) -> None:
    rendered = render(repo_cfg, load_docs(repo_cfg), PLAN, coverage=False)
    groups = {svc: [manifests.ident(d) for d in docs] for svc, docs in rendered.by_service.items()}
    assert groups == {  # in apply order: the migration Job before the StatefulSet
        "datastore": ["ConfigMap/datastore-config", "Job/datastore-migrate", "StatefulSet/datastore",
                      "Service/datastore"],
        "gateway": ["ConfigMap/gateway-config", "Deployment/gateway", "Service/gateway"],
    }  # fmt: skip
    # the token Secret feeds both services, the database's Secret the datastore and PostgreSQL: applied
    # first, shared with the workloads no service owns (handled by their own names)
    assert [manifests.ident(d) for d in rendered.shared] == [
        "Secret/postgres-credentials", "Secret/datastore-token", "StatefulSet/postgres", "Deployment/redis",
        "Service/postgres", "Service/redis",
    ]  # fmt: skip
    assert rendered.shared_workloads() == ["postgres", "redis"]
    assert len(rendered.workloads()) == 5


STACK = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: common}
data: {A: "1"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      initContainers:
        - {name: migrate, image: "team/api:dev"}
      containers:
        - name: api
          image: "team/api:dev"
          imagePullPolicy: Always
          envFrom: [{configMapRef: {name: common}}]
        - name: sidecar
          image: docker.io/library/busybox:1.36
          imagePullPolicy: IfNotPresent
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: worker}
spec:
  selector: {matchLabels: {app: worker}}
  template:
    metadata: {labels: {app: worker}}
    spec:
      containers:
        - name: worker
          image: localhost/team/worker@sha256:0123
          env:
            - name: A
              valueFrom: {configMapKeyRef: {name: common, key: A}}
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec: {selector: {app: api}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: external}
spec: {type: ExternalName, externalName: example.invalid}
"""


def team_config(tmp_path: Path, text: str = STACK, *, api: str = "api", **sections: Any) -> Config:
    """The STACK's team: services `api` (named so, unless api= says otherwise) and `worker`."""
    (tmp_path / "stack.yaml").write_text(text)
    data = {
        "manifests": ["stack.yaml"],
        "services": [
            {"name": api, "source": ".", "image": "team/api"},
            {"name": "worker", "source": ".", "image": "localhost/team/worker"},
        ],
        **sections,
    }
    return parse_config(data, tmp_path / "e2e.toml")


def test_render_by_repository_with_or_without_localhost_and_leaves_others(tmp_path: Path) -> None:
    cfg = team_config(tmp_path)
    plan = ImagePlan(
        {"api": ImageRef.parse("team/api:t1"), "worker": ImageRef.parse("team/worker:t2")}, False
    )
    rendered = render(cfg, load_docs(cfg), plan, coverage=True)
    d = by_ident(rendered.docs)
    spec = d["Deployment/api"]["spec"]["template"]["spec"]
    assert spec["initContainers"][0]["image"] == "localhost/team/api:t1"
    api, sidecar = spec["containers"]
    assert (api["image"], api["imagePullPolicy"]) == ("localhost/team/api:t1", "Never")
    assert {"name": "GOCOVERDIR", "value": "/coverdata/api"} in api["env"]
    # a third-party image is kept as is, and never pulled by the cluster (the harness brings it)
    assert sidecar == {
        "name": "sidecar",
        "image": "docker.io/library/busybox:1.36",
        "imagePullPolicy": "IfNotPresent",
    }
    assert rendered.foreign == {ImageRef.foreign("busybox:1.36"): ["Deployment/api (stack.yaml)"]}
    assert container(d["Deployment/worker"])["image"] == "localhost/team/worker:t2"  # digest replaced
    groups = {svc: sorted(manifests.ident(x) for x in docs) for svc, docs in rendered.by_service.items()}
    assert groups == {"api": ["Deployment/api", "Service/api"], "worker": ["Deployment/worker"]}
    # a ConfigMap used by two services and an unowned Service are shared
    assert sorted(manifests.ident(x) for x in rendered.shared) == ["ConfigMap/common", "Service/external"]


def test_services_without_documents_still_get_an_empty_group(tmp_path: Path) -> None:
    cfg = team_config(tmp_path, STACK.split("---")[0])
    plan = ImagePlan(
        {"api": ImageRef.parse("team/api:t1"), "worker": ImageRef.parse("team/worker:t2")}, False
    )
    rendered = render(cfg, load_docs(cfg), plan, coverage=False)
    assert rendered.by_service == {"api": [], "worker": []}
    assert [manifests.ident(x) for x in rendered.shared] == ["ConfigMap/common"]


def test_load_docs_errors_name_the_manifest(tmp_path: Path) -> None:
    cfg = team_config(tmp_path)
    (tmp_path / "stack.yaml").unlink()
    with pytest.raises(ManifestError, match=r"manifest .*stack\.yaml not found \(listed in .*e2e\.toml\)"):
        load_docs(cfg)
    (tmp_path / "stack.yaml").write_text("kind: [unclosed\n")
    with pytest.raises(ManifestError, match=r"stack\.yaml is not valid YAML"):
        load_docs(cfg)
    (tmp_path / "stack.yaml").write_text("apiVersion: v1\ndata: {}\n")
    with pytest.raises(ManifestError, match="every document needs kind and metadata"):
        load_docs(cfg)


def test_write(tmp_path: Path, repo_cfg: Config) -> None:
    rendered = render(repo_cfg, load_docs(repo_cfg), PLAN, coverage=False)
    out = manifests.write(rendered, tmp_path / "a" / "rendered.yaml")
    assert list(yaml.safe_load_all(out.read_text())) == rendered.docs


def _check(cfg: Config) -> str:
    with pytest.raises(ManifestError) as err:
        manifests.check(cfg, load_docs(cfg), coverage=False)
    return str(err.value)


def test_check_refuses_a_third_party_digest_and_an_unused_stand_in_before_anything_runs(
    tmp_path: Path,
) -> None:
    text = STACK.replace("image: docker.io/library/busybox:1.36", "image: busybox@sha256:" + "a" * 64)
    cfg = team_config(
        tmp_path, text, images={"stand_in": [{"image": "quay.io/team/mock:1", "source": "mock"}]}
    )
    msg = _check(cfg)
    assert "Deployment/api (stack.yaml): image 'busybox@sha256:" in msg and "by a tag" in msg
    assert "images.stand_in 'quay.io/team/mock:1': no container in the manifests uses it" in msg
    assert "is not a Go module" in msg


def test_the_example_stack_passes_the_check(repo_cfg: Config) -> None:
    manifests.check(repo_cfg, load_docs(repo_cfg), coverage=True)


def test_the_example_stack_gives_no_notice(repo_cfg: Config) -> None:
    assert manifests.check(repo_cfg, load_docs(repo_cfg), coverage=False) == []


def test_a_service_no_object_is_named_like_gets_a_notice_naming_where_its_image_runs(tmp_path: Path) -> None:
    cfg = team_config(tmp_path, api="orders")
    (tmp_path / "go.mod").write_text("module x\n")
    notices = manifests.check(cfg, load_docs(cfg), coverage=False)
    assert notices == [
        f"notice: service 'orders' of {tmp_path / 'e2e.toml'}: no manifest object is named 'orders'; its "
        "image runs in Deployment/api, which platform.restart('orders') and the logs act on"
    ]


def test_references_probes_and_node_ports_are_checked_against_the_manifests() -> None:
    docs = list(yaml.safe_load_all(STACK))
    assert manifests.references(docs) == [] and manifests.probe_ports(docs) == []
    worker = next(d for d in docs if d["metadata"]["name"] == "worker")
    env = worker["spec"]["template"]["spec"]["containers"][0]["env"]
    env.append({"name": "B", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "b"}}})
    env.append({"name": "C", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "c", "optional": True}}})
    env[0]["valueFrom"]["configMapKeyRef"]["key"] = "Z"
    found = manifests.references(docs)
    assert len(found) == 2, found
    assert "env 'A' (configMapKeyRef): ConfigMap 'common' has no key 'Z'" in found[0]
    assert "env 'B' (secretKeyRef): Secret 'nope' is defined by no manifest" in found[1]
    worker["spec"]["template"]["spec"]["containers"][0]["livenessProbe"] = {"httpGet": {"port": "metrics"}}
    assert "the liveness probe (httpGet) uses port 'metrics'" in manifests.probe_ports(docs)[0]
    services = [d for d in docs if d["kind"] == "Service"]
    services[0]["spec"]["ports"][0]["nodePort"] = 30001
    assert manifests.node_port_clashes(docs) == []
    services[1]["spec"]["ports"] = [{"port": 1, "nodePort": 30001}]
    assert manifests.node_port_clashes(docs) == [
        "nodePort 30001 is used by Service/api (?) and Service/external (?): Kubernetes allows one "
        "Service per nodePort; next: give one of them another"
    ]


def test_a_program_the_built_image_does_not_hold_is_refused_naming_what_runs_it(repo_cfg: Config) -> None:
    docs = copy.deepcopy(load_docs(repo_cfg))
    assert manifests.programs(repo_cfg, docs) == []  # /app, its exec probe /app probe /ready, the stand-in
    by = by_ident(docs)
    ctr = by["StatefulSet/datastore"]["spec"]["template"]["spec"]["containers"][0]
    ctr["command"] = ["./podinfo"]
    ctr["readinessProbe"] = {"exec": {"command": ["podcli", "check", "http"]}}
    gateway = by["Deployment/gateway"]
    gateway["spec"]["template"]["spec"]["initContainers"][0]["command"] = ["/bin/sh", "-c", "sleep 1"]
    found = manifests.programs(repo_cfg, docs)
    assert len(found) == 3, found
    assert (
        "container 'datastore': its command runs './podinfo', which the image the harness builds for "
        "service 'datastore' does not hold (it holds /app)" in found[0]
    )
    assert "its readiness probe (exec) runs 'podcli'" in found[1]
    assert (
        "runs '/bin/sh', which the image the harness builds for the stand-in for "
        "registry.example.com/e2e-harness/waitfor:1.0" in found[2]
    )
