"""What the podman platform does with every object and field of a manifest.

Each is honoured (translated into `podman run`), inert (has no effect on one
podman host, and skipped with a one-line notice), or refused before anything
starts, naming the field, the object and its file, with `--platform kind` as
the way out. A field in none of the lists (a typo, or a field of a newer
Kubernetes) is refused too: nothing is dropped silently.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.platforms.manifests import POD_KINDS, Doc, ident, pod_spec

OK, INERT, REFUSED = "honoured", "inert", "refused"
Schema = Mapping[str, Any]  # field -> OK | INERT | REFUSED | Schema | [Schema] (a list of them)

META: Schema = {"name": OK, "labels": OK, "annotations": INERT, "namespace": INERT}

# the harness polls readiness itself, more often than any period: timing changes nothing
PROBE_TIMING = {
    k: OK
    for k in (
        "initialDelaySeconds",
        "periodSeconds",
        "timeoutSeconds",
        "successThreshold",
        "failureThreshold",
    )
}
PROBE_TIMING["terminationGracePeriodSeconds"] = INERT
READINESS: Schema = {
    "httpGet": {"path": OK, "port": OK, "scheme": REFUSED, "host": REFUSED, "httpHeaders": REFUSED},
    "exec": {"command": OK},  # podman exec in the container
    "tcpSocket": {"port": OK, "host": REFUSED},  # a connect to the published port
    "grpc": REFUSED,
    **PROBE_TIMING,
}
# securityContext: what `podman run` can do the same (infra.platforms.podman_security), field by field
PROFILE: Schema = {"type": OK, "localhostProfile": REFUSED}  # RuntimeDefault or Unconfined
SECURITY_CONTEXT: Schema = {
    "runAsUser": OK,  # --user
    "runAsGroup": OK,  # --user UID:GID (the image's user when no runAsUser)
    "runAsNonRoot": OK,  # checked against runAsUser or the image's user, as the kubelet does
    "readOnlyRootFilesystem": OK,  # --read-only, no tmpfs Kubernetes would not give
    "allowPrivilegeEscalation": OK,  # false: --security-opt no-new-privileges
    "capabilities": {"add": OK, "drop": OK},  # --cap-add / --cap-drop
    "privileged": OK,  # false only: true is refused below
    "procMount": OK,  # Default only
    "seccompProfile": PROFILE,  # RuntimeDefault: podman's default profile; Unconfined
    "appArmorProfile": PROFILE,
    "seLinuxOptions": REFUSED,
    "windowsOptions": INERT,  # Linux containers ignore it
}
POD_SECURITY_CONTEXT: Schema = {
    **{k: SECURITY_CONTEXT[k] for k in ("runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile",
                                         "appArmorProfile", "seLinuxOptions", "windowsOptions")},
    "fsGroup": OK,  # --group-add (the harness's volume directories are writable by every user)
    "fsGroupChangePolicy": INERT,  # nothing is chowned: the directories are open to all
    "supplementalGroups": OK,  # --group-add
    "supplementalGroupsPolicy": OK,  # Merge only
    "sysctls": [{"name": OK, "value": OK}],  # --sysctl
    "seLinuxChangePolicy": INERT,
}  # fmt: skip
CONTAINER: Schema = {
    "name": OK,
    "image": OK,
    "imagePullPolicy": OK,
    "command": OK,
    "args": OK,
    "env": [
        {
            "name": OK,
            "value": OK,
            "valueFrom": {
                "configMapKeyRef": {"name": OK, "key": OK, "optional": OK},
                "secretKeyRef": {"name": OK, "key": OK, "optional": OK},
                "fieldRef": REFUSED,
                "resourceFieldRef": REFUSED,
                "fileKeyRef": REFUSED,
            },
        }
    ],
    "envFrom": [
        {
            "configMapRef": {"name": OK, "optional": OK},
            "secretRef": {"name": OK, "optional": OK},
            "prefix": OK,
        }
    ],
    "ports": [{"containerPort": OK, "name": OK, "protocol": OK, "hostPort": REFUSED, "hostIP": REFUSED}],
    "volumeMounts": [
        {
            "name": OK,
            "mountPath": OK,
            "readOnly": OK,
            "subPath": REFUSED,
            "subPathExpr": REFUSED,
            "mountPropagation": REFUSED,
            "recursiveReadOnly": REFUSED,
        }
    ],
    "readinessProbe": READINESS,
    "startupProbe": READINESS,  # waited for before the readiness probe, as the kubelet does
    # podman never restarts a container on a probe, and does not limit what it uses
    "livenessProbe": INERT,
    "resources": INERT,
    "resizePolicy": INERT,
    "terminationMessagePath": INERT,
    "terminationMessagePolicy": INERT,
    "securityContext": SECURITY_CONTEXT,
    "lifecycle": REFUSED,
    "workingDir": REFUSED,
    "stdin": REFUSED,
    "stdinOnce": REFUSED,
    "tty": REFUSED,
    "volumeDevices": REFUSED,
    "restartPolicy": REFUSED,
    "restartPolicyRules": REFUSED,
}
KEY_TO_PATH = [{"key": OK, "path": OK, "mode": OK, "user": REFUSED}]
NO_USER: Schema = {"defaultUser": REFUSED}  # file ownership: the container's user is the image's
VOLUME: Schema = {
    "name": OK,
    "persistentVolumeClaim": {"claimName": OK, "readOnly": OK},  # the claim's named volume
    "hostPath": {"path": OK, "type": OK},  # a per-run directory, always created
    "emptyDir": {"medium": REFUSED, "sizeLimit": INERT},
    "configMap": {"name": OK, "items": KEY_TO_PATH, "defaultMode": OK, "optional": OK, **NO_USER},
    "secret": {"secretName": OK, "items": KEY_TO_PATH, "defaultMode": OK, "optional": OK, **NO_USER},
    # every other volume source
    **{
        k: REFUSED
        for k in (
            "projected", "downwardAPI", "csi", "ephemeral", "nfs",
            "image", "awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "fc", "flexVolume",
            "flocker", "gcePersistentDisk", "gitRepo", "glusterfs", "iscsi", "photonPersistentDisk",
            "portworxVolume", "quobyte", "rbd", "scaleIO", "storageos", "vsphereVolume",
        )
    },
}  # fmt: skip
# a claim is a podman named volume of the run: kept across restarts, removed at teardown
CLAIM_SPEC: Schema = {
    "accessModes": OK,  # one host: every mode is what one volume gives
    "resources": {"requests": OK, "limits": INERT},  # the request is checked against free disk
    "storageClassName": INERT,
    "volumeMode": OK,  # Filesystem only: Block is refused below
    "volumeAttributesClassName": INERT,
    **{k: REFUSED for k in ("selector", "volumeName", "dataSource", "dataSourceRef")},
}
# Kubernetes refuses these probes on an init container too
INIT_CONTAINER: Schema = {**CONTAINER, "readinessProbe": REFUSED, "startupProbe": REFUSED}
HOST_ALIAS: Schema = {"ip": OK, "hostnames": OK}
POD_SPEC: Schema = {
    "containers": [CONTAINER],
    "securityContext": POD_SECURITY_CONTEXT,
    "initContainers": [INIT_CONTAINER],  # run to completion, in order, before the containers
    "volumes": [VOLUME],
    "terminationGracePeriodSeconds": OK,
    "hostAliases": [HOST_ALIAS],  # /etc/hosts lines, as the kubelet writes them
    # scheduling and identity: one podman host, no API server
    **{
        k: INERT
        for k in (
            "serviceAccountName", "serviceAccount", "automountServiceAccountToken", "nodeSelector",
            "affinity", "tolerations", "priorityClassName", "priority", "topologySpreadConstraints",
            "schedulerName", "enableServiceLinks", "imagePullSecrets", "preemptionPolicy", "dnsPolicy",
            "runtimeClassName", "overhead", "readinessGates", "schedulingGates", "nodeName",
            "schedulingGroup", "evictionResponders",
        )
    },
    # behaviour podman would not reproduce: a run that passes there would mean nothing
    **{
        k: REFUSED
        for k in (
            "ephemeralContainers", "hostNetwork", "hostPID", "hostIPC",
            "hostUsers", "shareProcessNamespace", "hostname", "subdomain", "dnsConfig",
            "setHostnameAsFQDN", "activeDeadlineSeconds", "os", "resourceClaims", "resources",
            "restartPolicy", "hostnameOverride",
        )
    },
}  # fmt: skip
WORKLOAD_SPEC: Schema = {
    "replicas": OK,  # more than 1 is refused below: one podman container per workload
    "selector": {"matchLabels": OK, "matchExpressions": REFUSED},
    "template": {"metadata": META, "spec": POD_SPEC},
    **{
        k: INERT
        for k in (
            "strategy", "updateStrategy", "revisionHistoryLimit", "minReadySeconds",
            "progressDeadlineSeconds", "paused", "serviceName", "podManagementPolicy", "ordinals",
        )
    },
    "volumeClaimTemplates": [{"apiVersion": OK, "kind": OK, "metadata": META, "spec": CLAIM_SPEC}],
    "persistentVolumeClaimRetentionPolicy": INERT,  # the run's volumes go at teardown
}  # fmt: skip
JOB_POD_SPEC: Schema = {**POD_SPEC, "restartPolicy": OK}  # Never or OnFailure: a failed attempt is retried
JOB_SPEC: Schema = {
    "template": {"metadata": META, "spec": JOB_POD_SPEC},
    "backoffLimit": OK,  # attempts = backoffLimit + 1, one after the other
    "activeDeadlineSeconds": OK,  # the deadline of the wait
    "completions": OK,  # more than 1 is refused below
    "parallelism": OK,
    "ttlSecondsAfterFinished": INERT,
    "podReplacementPolicy": INERT,
    **{
        k: REFUSED
        for k in (
            "selector", "manualSelector", "suspend", "podFailurePolicy", "backoffLimitPerIndex",
            "maxFailedIndexes", "completionMode", "successPolicy", "managedBy", "scheduling",
        )
    },
}  # fmt: skip
TOP = {"apiVersion": OK, "kind": OK, "metadata": META}
KINDS: dict[str, Schema] = {
    "Deployment": {**TOP, "spec": WORKLOAD_SPEC, "status": INERT},
    "StatefulSet": {**TOP, "spec": WORKLOAD_SPEC, "status": INERT},
    "DaemonSet": {**TOP, "spec": WORKLOAD_SPEC, "status": INERT},
    "Job": {**TOP, "spec": JOB_SPEC, "status": INERT},
    "ConfigMap": {**TOP, "data": OK, "binaryData": REFUSED, "immutable": INERT},
    "PersistentVolumeClaim": {**TOP, "spec": CLAIM_SPEC, "status": INERT},
    "Secret": {**TOP, "data": OK, "stringData": OK, "type": OK, "immutable": INERT},
    "Service": {
        **TOP,
        "spec": {
            "type": OK,
            "selector": OK,
            "ports": [
                {
                    "name": OK,
                    "port": OK,
                    "targetPort": OK,
                    "nodePort": OK,
                    "protocol": OK,
                    "appProtocol": INERT,
                }
            ],
            **{
                k: INERT
                for k in (
                    "clusterIP",
                    "clusterIPs",
                    "sessionAffinity",
                    "ipFamilies",
                    "ipFamilyPolicy",
                    "internalTrafficPolicy",
                    "externalTrafficPolicy",
                    "publishNotReadyAddresses",
                )
            },
        },
        "status": INERT,
    },
}
INERT_KINDS = frozenset(
    {
        "ServiceAccount", "PodDisruptionBudget", "NetworkPolicy", "Role", "RoleBinding", "ClusterRole",
        "ClusterRoleBinding", "HorizontalPodAutoscaler", "Namespace", "LimitRange", "ResourceQuota",
        "PriorityClass",
    }
)  # fmt: skip
"""Objects that change nothing on one podman host: skipped with a notice."""


class PodmanRefusal(Exception):
    """Manifests the podman platform cannot honour; the message lists every field and the way out."""


@dataclass(frozen=True)
class Finding:
    policy: str
    where: str  # Deployment/gateway (manifests/gateway.yaml)
    path: str  # spec.template.spec.initContainers

    def line(self) -> str:
        if self.policy == INERT:
            return f"podman: {self.where}: {self.path} has no effect on podman (skipped)"
        return f"{self.where}: {self.path} is not supported on podman"


def _walk(value: Any, schema: Any, path: str) -> Iterator[tuple[str, str]]:
    if schema in (OK, INERT, REFUSED):
        if schema != OK:
            yield schema, path
        return
    if isinstance(schema, list):
        for i, item in enumerate(value if isinstance(value, list) else []):
            yield from _walk(item, schema[0], f"{path}[{i}]")
        return
    if not isinstance(value, dict):
        return
    for key, sub in value.items():
        where = f"{path}.{key}" if path else key
        if key not in schema:
            yield REFUSED, f"{where} (a field the harness does not know)"
        else:
            yield from _walk(sub, schema[key], where)


def findings(docs: list[Doc]) -> list[Finding]:
    out: list[Finding] = []
    for doc in docs:
        source = (doc.get("metadata", {}).get("annotations") or {}).get("e2e-harness/source", "?")
        where = f"{ident(doc)} ({source})"
        kind = doc.get("kind", "")
        if kind in INERT_KINDS:
            out.append(Finding(INERT, where, "the whole object"))
            continue
        if kind not in KINDS:
            out.append(Finding(REFUSED, where, f"kind {kind}"))
            continue
        plain = {k: v for k, v in doc.items()}
        annotations = dict(plain.get("metadata", {}).get("annotations") or {})
        annotations.pop("e2e-harness/source", None)  # the harness's own bookkeeping
        plain["metadata"] = {**plain.get("metadata", {}), "annotations": annotations}
        if not annotations:
            plain["metadata"].pop("annotations")
        out += [Finding(p, where, path) for p, path in _walk(plain, KINDS[kind], "")]
        out += [Finding(REFUSED, where, path) for path in security_values(doc) + claim_values(doc)]
        spec = doc.get("spec") or {}
        for key in ("replicas", "completions", "parallelism"):
            if kind in ("Deployment", "StatefulSet", "Job") and int(spec.get(key, 1)) > 1:
                out.append(Finding(REFUSED, where, f"spec.{key}: {spec[key]} (podman runs one pod)"))
    return out


ALLOWED_VALUES = {
    "privileged": (False,),
    "procMount": ("Default",),
    "supplementalGroupsPolicy": ("Merge",),
}
PROFILE_TYPES = ("RuntimeDefault", "Unconfined")


def security_values(doc: Doc) -> list[str]:
    """securityContext values podman cannot give as Kubernetes would: `path: value (why)`."""
    if doc.get("kind") not in POD_KINDS:
        return []
    spec = pod_spec(doc)
    out = []
    contexts = [("spec.template.spec.securityContext", spec.get("securityContext") or {})]
    for group in ("initContainers", "containers"):
        for i, ctr in enumerate(spec.get(group) or []):
            contexts.append(
                (f"spec.template.spec.{group}[{i}].securityContext", ctr.get("securityContext") or {})
            )
    pod_sc = contexts[0][1]
    for path, sc in contexts:
        for key, allowed in ALLOWED_VALUES.items():
            if key in sc and sc[key] not in allowed:
                out.append(f"{path}.{key}: {sc[key]!r} (podman honours {', '.join(map(repr, allowed))} only)")
        for key in ("seccompProfile", "appArmorProfile"):
            kind = (sc.get(key) or {}).get("type")
            if kind is not None and kind not in PROFILE_TYPES:
                out.append(f"{path}.{key}.type: {kind!r} (podman honours {' and '.join(PROFILE_TYPES)})")
    for path, sc in contexts[1:]:  # a container's, over the pod's
        user = sc.get("runAsUser", pod_sc.get("runAsUser"))
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True and user == 0:
            out.append(f"{path}: runAsNonRoot with runAsUser 0 (Kubernetes refuses to start the container)")
    return sorted(set(out))


def claim_values(doc: Doc) -> list[str]:
    """Claims podman cannot give: a block device, or more space than the volumes' disk has."""
    specs = [("spec", doc.get("spec") or {})] if doc.get("kind") == "PersistentVolumeClaim" else []
    if doc.get("kind") == "StatefulSet":
        templates = (doc.get("spec") or {}).get("volumeClaimTemplates") or []
        specs += [
            (f"spec.volumeClaimTemplates[{i}].spec", t.get("spec") or {}) for i, t in enumerate(templates)
        ]
    out = []
    for path, spec in specs:
        if spec.get("volumeMode", "Filesystem") != "Filesystem":
            out.append(f"{path}.volumeMode: {spec['volumeMode']!r} (podman volumes are filesystems)")
        wanted = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
        size = quantity_bytes(str(wanted)) if wanted is not None else 0
        free = shutil.disk_usage(VOLUME_DISK if Path(VOLUME_DISK).exists() else "/").free
        if size is None:
            out.append(f"{path}.resources.requests.storage: {wanted!r} is not a quantity")
        elif size > free:
            out.append(f"{path}.resources.requests.storage: {wanted} is more than the {free // 2**30} GiB "
                       f"free for podman's volumes ({VOLUME_DISK})")  # fmt: skip
    return out


VOLUME_DISK = "/var/lib/containers"
_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "Ki": 2**10, "Mi": 2**20,
          "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}  # fmt: skip


def quantity_bytes(text: str) -> int | None:
    """A Kubernetes quantity (`1Gi`, `500M`, `10`) in bytes; None when it is not one."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kMGTP]i?)?", text.strip())
    if not match or (match.group(2) or "") not in _UNITS:
        return None
    return int(float(match.group(1)) * _UNITS[match.group(2) or ""])


def check(docs: list[Doc]) -> list[str]:
    """Refuse what podman cannot honour; return the notices for what it skips."""
    found = findings(docs)
    refused = [f.line() for f in found if f.policy == REFUSED]
    if refused:
        raise PodmanRefusal(
            "the podman platform cannot honour these manifests:\n  "
            + "\n  ".join(refused)
            + "\nnext: run them on a real cluster with `--platform kind`, or change the manifests "
            "(README: What the podman platform honours)"
        )
    return sorted({f.line() for f in found if f.policy == INERT})
