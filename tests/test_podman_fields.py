"""Every field the podman platform could meet is honoured, inert or refused: none is dropped silently."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes import client

from infra.config import Config
from infra.platforms import podman_fields as pf
from infra.platforms.manifests import load_docs


def _keys(model: Any) -> set[str]:
    return set(model.attribute_map.values())


@pytest.mark.parametrize(
    ("schema", "model"),
    [
        (pf.POD_SPEC, client.V1PodSpec),
        (pf.CONTAINER, client.V1Container),
        (pf.VOLUME, client.V1Volume),
        (pf.READINESS, client.V1Probe),
        (pf.JOB_SPEC, client.V1JobSpec),
        (pf.VOLUME["secret"], client.V1SecretVolumeSource),
        (pf.VOLUME["configMap"], client.V1ConfigMapVolumeSource),
        (pf.KEY_TO_PATH[0], client.V1KeyToPath),
        (pf.CONTAINER["envFrom"][0], client.V1EnvFromSource),
        (pf.CONTAINER["env"][0]["valueFrom"]["secretKeyRef"], client.V1SecretKeySelector),
        (pf.READINESS["tcpSocket"], client.V1TCPSocketAction),
        (pf.POD_SPEC["hostAliases"][0], client.V1HostAlias),
        (pf.SECURITY_CONTEXT, client.V1SecurityContext),
        (pf.POD_SECURITY_CONTEXT, client.V1PodSecurityContext),
        (pf.SECURITY_CONTEXT["capabilities"], client.V1Capabilities),
        (pf.PROFILE, client.V1SeccompProfile),
        (pf.PROFILE, client.V1AppArmorProfile),
        (pf.POD_SECURITY_CONTEXT["sysctls"][0], client.V1Sysctl),
        (pf.CLAIM_SPEC, client.V1PersistentVolumeClaimSpec),
        (pf.VOLUME["persistentVolumeClaim"], client.V1PersistentVolumeClaimVolumeSource),
        (pf.WORKLOAD_SPEC["volumeClaimTemplates"][0], client.V1PersistentVolumeClaimTemplate),
    ],
    ids=[
        "PodSpec",
        "Container",
        "Volume",
        "Probe",
        "JobSpec",
        "SecretVolume",
        "ConfigMapVolume",
        "KeyToPath",
        "EnvFrom",
        "SecretKeyRef",
        "TCPSocket",
        "HostAlias",
        "SecurityContext",
        "PodSecurityContext",
        "Capabilities",
        "SeccompProfile",
        "AppArmorProfile",
        "Sysctl",
        "PersistentVolumeClaimSpec",
        "PersistentVolumeClaimVolume",
        "VolumeClaimTemplate",
    ],
)
def test_every_field_of_the_kubernetes_schema_has_a_decision(schema: pf.Schema, model: Any) -> None:
    """The kubernetes client's own field list: a new field fails here until it is placed."""
    undecided = sorted(_keys(model) - set(schema))
    assert undecided == [], f"{model.__name__} fields neither honoured, inert nor refused: {undecided}"


def test_the_example_stack_is_honoured_with_notices_only(repo_cfg: Config) -> None:
    notices = pf.check(load_docs(repo_cfg))
    assert notices and all("has no effect on podman (skipped)" in n for n in notices)
    assert any("livenessProbe" in n for n in notices)


def _stack(repo_cfg: Config) -> list[dict[str, Any]]:
    return copy.deepcopy(load_docs(repo_cfg))


def _gateway_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "gateway")
    spec: dict[str, Any] = dep["spec"]["template"]["spec"]
    return spec


CASES = {
    "a readiness probe on an init container": (
        lambda spec: spec["initContainers"][0].update(readinessProbe={"exec": {"command": ["true"]}}),
        "spec.template.spec.initContainers[0].readinessProbe",
    ),
    "a projected volume": (
        lambda spec: spec["volumes"].append({"name": "p", "projected": {"sources": []}}),
        "spec.template.spec.volumes[1].projected",
    ),
    "grpc readiness": (
        lambda spec: spec["containers"][0].update(readinessProbe={"grpc": {"port": 8080}}),
        "spec.template.spec.containers[0].readinessProbe.grpc",
    ),
    "a typo": (
        lambda spec: spec["containers"][0].update(imagePullPolicyy="Never"),
        "spec.template.spec.containers[0].imagePullPolicyy (a field the harness does not know)",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_field_podman_cannot_honour_is_refused_naming_it_the_object_and_the_file(
    repo_cfg: Config, case: str
) -> None:
    docs = _stack(repo_cfg)
    change, path = CASES[case]
    change(_gateway_pod(docs))
    with pytest.raises(pf.PodmanRefusal) as info:
        pf.check(docs)
    msg = str(info.value)
    assert f"Deployment/gateway (manifests/gateway.yaml): {path} is not supported on podman" in msg
    assert "--platform kind" in msg


def test_objects_are_refused_or_skipped_by_kind(repo_cfg: Config) -> None:
    docs = _stack(repo_cfg)
    src = {"annotations": {"e2e-harness/source": "manifests/extra.yaml"}}
    docs.append({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", **src}})
    docs.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "api", **src}})
    found = {(f.policy, f.where, f.path) for f in pf.findings(docs)}
    assert (pf.REFUSED, "CronJob/nightly (manifests/extra.yaml)", "kind CronJob") in found
    assert (pf.INERT, "ServiceAccount/api (manifests/extra.yaml)", "the whole object") in found


def test_more_than_one_replica_or_completion_is_refused(repo_cfg: Config) -> None:
    docs = _stack(repo_cfg)
    next(d for d in docs if d["metadata"]["name"] == "gateway")["spec"]["replicas"] = 3
    next(d for d in docs if d["kind"] == "Job")["spec"]["completions"] = 2
    with pytest.raises(pf.PodmanRefusal) as err:
        pf.check(docs)
    assert "Deployment/gateway (manifests/gateway.yaml): spec.replicas: 3 (podman runs one pod)" in str(
        err.value
    )
    assert "Job/datastore-migrate (manifests/datastore.yaml): spec.completions: 2" in str(err.value)


def test_a_job_may_say_how_it_restarts_and_a_deployment_may_not(repo_cfg: Config) -> None:
    docs = _stack(repo_cfg)
    assert not [f for f in pf.findings(docs) if f.policy == pf.REFUSED]  # the Job's restartPolicy: Never
    _gateway_pod(docs)["restartPolicy"] = "Always"
    refused = [f.path for f in pf.findings(docs) if f.policy == pf.REFUSED]
    assert refused == ["spec.template.spec.restartPolicy"]
