"""Builders for the payloads the gateway ingests, and thin senders for them.

Every builder takes the test's namespace so parallel tests never share
dedup state; alert names and object names should be unique per test too.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import requests

ALERTMANAGER_PATH = "/api/v1/signals/alertmanager"
K8S_EVENT_PATH = "/api/v1/signals/kubernetes-event"


def unique(prefix: str) -> str:
    """A name of this call's own: prefix plus 8 hex characters."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def alert(
    alertname: str,
    namespace: str | None,
    *,
    severity: str = "warning",
    status: str = "firing",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    starts_at: str | None = None,
) -> dict[str, Any]:
    """One AlertManager alert; namespace=None leaves the namespace label out."""
    all_labels = {"alertname": alertname, "severity": severity}
    if namespace is not None:
        all_labels["namespace"] = namespace
    all_labels.update(labels or {})
    return {
        "status": status,
        "labels": all_labels,
        "annotations": annotations if annotations is not None else {"summary": f"{alertname} is firing"},
        "startsAt": starts_at or _now(),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example/graph",
    }


def webhook(*alerts: dict[str, Any], receiver: str = "e2e") -> dict[str, Any]:
    """An AlertManager webhook (version 4) carrying the given alerts."""
    common = {}
    if alerts:
        shared = set(alerts[0].get("labels", {}).items())
        for a in alerts[1:]:
            shared &= set(a.get("labels", {}).items())
        common = dict(shared)
    return {
        "version": "4",
        "groupKey": '{}:{alertname="e2e"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": receiver,
        "groupLabels": {},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example",
        "alerts": list(alerts),
    }


def k8s_event(
    namespace: str | None,
    *,
    reason: str = "BackOff",
    kind: str = "Pod",
    name: str | None = None,
    message: str = "Back-off restarting failed container",
    type_: str = "Warning",
    count: int = 1,
    metadata_namespace: str | None = None,
    involved_namespace: str | None = None,
) -> dict[str, Any]:
    """A Kubernetes Event (core/v1).

    By default both metadata.namespace and involvedObject.namespace are the
    given namespace; pass involved_namespace/metadata_namespace explicitly
    ("" to leave one out) to test which one wins.
    """
    name = name or unique("pod")
    meta_ns = namespace if metadata_namespace is None else metadata_namespace
    obj_ns = namespace if involved_namespace is None else involved_namespace
    metadata: dict[str, Any] = {"name": f"{name}.{uuid.uuid4().hex[:16]}", "uid": str(uuid.uuid4())}
    if meta_ns:
        metadata["namespace"] = meta_ns
    involved: dict[str, Any] = {"kind": kind, "name": name, "apiVersion": "v1", "uid": str(uuid.uuid4())}
    if obj_ns:
        involved["namespace"] = obj_ns
    now = _now()
    return {
        "kind": "Event",
        "apiVersion": "v1",
        "metadata": metadata,
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": count,
        "type": type_,
    }


def post_json(
    http: requests.Session,
    url: str,
    payload: Any,
    *,
    correlation_id: str | None = None,
    request_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    all_headers = {"Content-Type": "application/json"}
    if correlation_id:
        all_headers["X-Correlation-ID"] = correlation_id
    if request_id:
        all_headers["X-Request-ID"] = request_id
    all_headers.update(headers or {})
    return http.post(url, data=json.dumps(payload), headers=all_headers)


def send_alerts(http: requests.Session, gateway_url: str, payload: Any, **kw: Any) -> requests.Response:
    return post_json(http, gateway_url + ALERTMANAGER_PATH, payload, **kw)


def send_event(http: requests.Session, gateway_url: str, payload: Any, **kw: Any) -> requests.Response:
    return post_json(http, gateway_url + K8S_EVENT_PATH, payload, **kw)
