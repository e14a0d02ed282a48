"""The Kubernetes API calls the kind platform makes (no kubectl shell-outs).

One small adapter so the kind platform can be tested with a recording fake:
the real one talks to the run's own kubeconfig, never ~/.kube/config.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

FIELD_MANAGER = "e2e-harness"
API_NAME = {"Deployment": "deployment", "StatefulSet": "stateful_set", "DaemonSet": "daemon_set"}
"""Each workload kind through its own apps/v1 API (a StatefulSet is not a Deployment)."""


class KubeApiError(Exception):
    """The API server refused a call: one line naming the object, the fields and the API's own words."""

    def __init__(self, what: str, status: int, reason: str, message: str) -> None:
        self.status, self.reason = status, reason
        super().__init__(f"Kubernetes refused {what} ({status} {reason}): {message}")


def api_error(err: BaseException, what: str) -> KubeApiError:
    """The ApiException's JSON Status, read: its message (which names the fields), not its dump."""
    status, reason = int(getattr(err, "status", 0) or 0), str(getattr(err, "reason", "") or "")
    body = getattr(err, "body", None)
    try:
        data = json.loads(body) if body else {}
    except (TypeError, ValueError):
        data = {}
    message = str(data.get("message") or "") if isinstance(data, dict) else ""
    causes = ((data.get("details") or {}).get("causes") or []) if isinstance(data, dict) else []
    if not message:
        message = (
            "; ".join(f"{c.get('field', '')}: {c.get('message', '')}" for c in causes)
            or str(body or reason or err).splitlines()[0]
        )
    reason = str(data.get("reason") or reason) if isinstance(data, dict) else reason
    return KubeApiError(what, status, reason, " ".join(message.split()))


@contextmanager
def refusals(what: str) -> Iterator[None]:
    """An ApiException inside becomes a KubeApiError about `what`."""
    from kubernetes.client.exceptions import ApiException

    try:
        yield
    except ApiException as err:
        raise api_error(err, what) from None


class KubeApi(Protocol):
    def ensure_namespace(self, name: str, labels: dict[str, str]) -> None: ...
    def delete_namespace(self, name: str) -> None: ...
    def namespace_exists(self, name: str) -> bool: ...
    def namespaces(self, selector: str) -> list[dict[str, Any]]: ...
    def apply(self, doc: dict[str, Any], namespace: str) -> None: ...
    def workload(self, kind: str, name: str, namespace: str) -> dict[str, Any]: ...
    def job(self, name: str, namespace: str) -> dict[str, Any]: ...
    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]: ...
    def pod_log(
        self,
        name: str,
        namespace: str,
        *,
        previous: bool = False,
        tail: int | None = None,
        container: str | None = None,
    ) -> str: ...
    def follow_log(
        self, name: str, namespace: str, *, timeout: float, container: str | None = None
    ) -> str: ...
    def scale(self, kind: str, name: str, namespace: str, replicas: int) -> None: ...
    def restart(self, kind: str, name: str, namespace: str) -> None: ...
    def patch(self, kind: str, name: str, namespace: str, body: dict[str, Any]) -> None: ...
    def events(self, namespace: str) -> list[dict[str, Any]]: ...
    def default_storage_class(self) -> dict[str, str]: ...
    def server(self) -> str: ...
    def version(self) -> str: ...
    def service(self, name: str, namespace: str) -> dict[str, Any]: ...
    def open_port(self, pod: str, namespace: str, port: int) -> Any: ...
    def delete(self, doc: dict[str, Any], namespace: str) -> None: ...
    def exists(self, doc: dict[str, Any], namespace: str) -> bool: ...
    def can_i(self, verb: str, resource: str, namespace: str, group: str = "") -> tuple[bool, str]: ...


class RealKubeApi:
    def __init__(self, kubeconfig: Path, context: str | None = None) -> None:
        from kubernetes import client, config, dynamic

        self._api = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig), context=context or None, persist_config=False
        )
        self._core = client.CoreV1Api(self._api)
        self._apps = client.AppsV1Api(self._api)
        self._batch = client.BatchV1Api(self._api)
        self._dyn = dynamic.DynamicClient(self._api)  # type: ignore[no-untyped-call]

    def _dict(self, obj: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._api.sanitize_for_serialization(obj)
        return result

    def ensure_namespace(self, name: str, labels: dict[str, str]) -> None:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
        self.apply(body, "")

    def delete_namespace(self, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self._core.delete_namespace(name)
        except ApiException as err:
            if err.status != 404:
                raise

    def namespace_exists(self, name: str) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            self._core.read_namespace(name)
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True

    def namespaces(self, selector: str) -> list[dict[str, Any]]:
        return [self._dict(n) for n in self._core.list_namespace(label_selector=selector).items]

    def _apps_call(self, verb: str, kind: str, suffix: str = "") -> Any:
        if kind not in API_NAME:
            raise ValueError(f"{kind} is not a workload kind the harness manages: {sorted(API_NAME)}")
        return getattr(self._apps, f"{verb}_namespaced_{API_NAME[kind]}{suffix}")

    def apply(self, doc: dict[str, Any], namespace: str) -> None:
        source = ((doc.get("metadata") or {}).get("annotations") or {}).get("e2e-harness/source")
        what = f"{doc['kind']}/{doc['metadata']['name']}" + (f" ({source})" if source else "")
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        with refusals(what):
            try:
                res = self._dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
            except ResourceNotFoundError:
                raise KubeApiError(
                    what,
                    404,
                    "NotFound",
                    f"the cluster serves no kind {doc['kind']} in "
                    f"apiVersion {doc['apiVersion']} (a CRD not installed?)",
                ) from None
            self._dyn.server_side_apply(  # type: ignore[no-untyped-call]
                res,
                body=doc,
                namespace=namespace or None,
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
            )

    def workload(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        obj = self._dict(self._apps_call("read", kind)(name, namespace))
        obj.setdefault("kind", kind)
        return obj

    def job(self, name: str, namespace: str) -> dict[str, Any]:
        obj = self._dict(self._batch.read_namespaced_job(name, namespace))
        obj.setdefault("kind", "Job")
        return obj

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        items = self._core.list_namespaced_pod(namespace, label_selector=selector).items
        return [self._dict(p) for p in items]

    def pod_log(
        self,
        name: str,
        namespace: str,
        *,
        previous: bool = False,
        tail: int | None = None,
        container: str | None = None,
    ) -> str:
        """A pod with init containers has several: name the one wanted."""
        kwargs: dict[str, Any] = {"previous": previous}
        if tail:
            kwargs["tail_lines"] = tail
        if container:
            kwargs["container"] = container
        return str(self._core.read_namespaced_pod_log(name, namespace, **kwargs))

    def follow_log(self, name: str, namespace: str, *, timeout: float, container: str | None = None) -> str:
        """The pod's log until its container ends (or `timeout` passes with no output)."""
        extra: dict[str, Any] = {"container": container} if container else {}
        resp: Any = self._core.read_namespaced_pod_log(
            name, namespace, follow=True, _preload_content=False, _request_timeout=(5, timeout), **extra
        )
        chunks: list[bytes] = []
        try:
            for chunk in resp.stream(4096):
                chunks.append(chunk)
        except Exception as err:  # noqa: BLE001 - keep what came; say why it stopped
            chunks.append(f"\n(log stream ended: {err})\n".encode())
        finally:
            resp.release_conn()
        return b"".join(chunks).decode(errors="replace")

    def scale(self, kind: str, name: str, namespace: str, replicas: int) -> None:
        if kind == "DaemonSet":
            raise ValueError(f"DaemonSet {name} cannot be scaled; the kind platform patches its nodeSelector")
        with refusals(f"scaling {kind}/{name} to {replicas}"):
            self._apps_call("patch", kind, "_scale")(name, namespace, {"spec": {"replicas": replicas}})

    def restart(self, kind: str, name: str, namespace: str) -> None:
        now = dt.datetime.now(dt.UTC).isoformat()
        patch = {
            "spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now}}}}
        }
        self.patch(kind, name, namespace, patch)

    def patch(self, kind: str, name: str, namespace: str, body: dict[str, Any]) -> None:
        with refusals(f"a patch of {kind}/{name}"):
            self._apps_call("patch", kind)(name, namespace, body)

    def events(self, namespace: str) -> list[dict[str, Any]]:
        return [self._dict(e) for e in self._core.list_namespaced_event(namespace).items]

    def default_storage_class(self) -> dict[str, str]:
        """The StorageClass a claim without one gets: its name and provisioner ({} when none)."""
        from kubernetes import client

        with refusals("listing StorageClasses"):
            classes = client.StorageV1Api(self._api).list_storage_class().items
        default = "storageclass.kubernetes.io/is-default-class"
        for item in classes:
            meta = self._dict(item).get("metadata") or {}
            if (meta.get("annotations") or {}).get(default) == "true":
                return {
                    "name": str(meta.get("name", "")),
                    "provisioner": str(self._dict(item).get("provisioner")),
                }
        return {}

    def server(self) -> str:
        return str(self._api.configuration.host)

    def version(self) -> str:
        """The API server's version: the first call, so an unreachable server fails here, fast."""
        from kubernetes import client

        with refusals(f"the version of {self.server()}"):
            info = client.VersionApi(self._api).get_code(_request_timeout=10)
        return str(info.git_version)

    def service(self, name: str, namespace: str) -> dict[str, Any]:
        return self._dict(self._core.read_namespaced_service(name, namespace, _request_timeout=10))

    def open_port(self, pod: str, namespace: str, port: int) -> Any:
        """A socket to the pod's port, through the API server (what `kubectl port-forward` opens)."""
        from kubernetes.stream import portforward

        forward = portforward(
            self._core.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(port)
        )
        return forward.socket(port)

    def delete(self, doc: dict[str, Any], namespace: str) -> None:
        from kubernetes.client.exceptions import ApiException

        res = self._dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        try:
            res.delete(name=doc["metadata"]["name"], namespace=namespace or None,
                       body={"propagationPolicy": "Foreground"})  # fmt: skip
        except ApiException as err:
            if err.status != 404:
                raise api_error(err, f"deleting {doc['kind']}/{doc['metadata']['name']}") from None

    def exists(self, doc: dict[str, Any], namespace: str) -> bool:
        from kubernetes.client.exceptions import ApiException

        res = self._dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        try:
            res.get(name=doc["metadata"]["name"], namespace=namespace or None)
        except ApiException as err:
            if err.status == 404:
                return False
            raise api_error(err, f"reading {doc['kind']}/{doc['metadata']['name']}") from None
        return True

    def can_i(self, verb: str, resource: str, namespace: str, group: str = "") -> tuple[bool, str]:
        """SelfSubjectAccessReview: whether these credentials may, and the API's reason."""
        from kubernetes import client

        body: Any = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"verb": verb, "resource": resource, "group": group,
                                            "namespace": namespace}},
        }  # fmt: skip
        with refusals(f"asking whether it may {verb} {resource}"):
            out = client.AuthorizationV1Api(self._api).create_self_subject_access_review(body)
        status = self._dict(out).get("status") or {}
        return bool(status.get("allowed")), str(status.get("reason") or "")
