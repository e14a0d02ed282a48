"""Validation and errors: every rejection has its status and an RFC 7807 body."""

from __future__ import annotations

import json

import pytest
from checks import assert_problem, describe, expect_status, wait_for_audit
from signals import (
    ALERTMANAGER_PATH,
    K8S_EVENT_PATH,
    alert,
    k8s_event,
    send_alerts,
    send_event,
    unique,
    webhook,
)

MAX_BODY_BYTES = 65536  # manifests/gateway.yaml


def post_raw(http, url, data, content_type="application/json"):
    headers = {} if content_type is None else {"Content-Type": content_type}
    return http.post(url, data=data, headers=headers)


@pytest.mark.parametrize("path", [ALERTMANAGER_PATH, K8S_EVENT_PATH])
@pytest.mark.parametrize(
    ("case", "body", "detail"),
    [
        ("malformed", b'{"alerts": [', "malformed JSON"),
        ("not-json", b"this is not json", "malformed JSON"),
        ("empty", b"", "empty"),
        ("whitespace", b"  \n ", "empty"),
    ],
)
def test_unparseable_body_is_400(http, gateway_url, path, case, body, detail):
    resp = post_raw(http, gateway_url + path, body)
    assert_problem(resp, 400, detail_contains=detail)


@pytest.mark.parametrize(
    ("case", "payload", "detail"),
    [
        ("no-alerts-key", {"version": "4", "status": "firing", "receiver": "e2e"}, "alerts"),
        ("empty-alerts", {"version": "4", "status": "firing", "receiver": "e2e", "alerts": []}, "alerts"),
        ("missing-alertname", "MISSING_ALERTNAME", "alerts[1].labels.alertname is required"),
        ("empty-alertname", "EMPTY_ALERTNAME", "alerts[0].labels.alertname is required"),
    ],
)
def test_invalid_webhook_is_400_naming_the_field(http, gateway_url, namespace, case, payload, detail):
    if payload == "MISSING_ALERTNAME":
        bad = alert("ignored", namespace)
        del bad["labels"]["alertname"]
        payload = webhook(alert(unique("Ok"), namespace), bad)
    elif payload == "EMPTY_ALERTNAME":
        payload = webhook(alert("", namespace))
    resp = send_alerts(http, gateway_url, payload)
    assert_problem(resp, 400, detail_contains=detail)


@pytest.mark.parametrize(
    ("field", "detail"),
    [
        ("reason", "reason is required"),
        ("involvedObject.kind", "involvedObject.kind is required"),
        ("involvedObject.name", "involvedObject.name is required"),
    ],
)
def test_invalid_kubernetes_event_is_400_naming_the_field(http, gateway_url, namespace, field, detail):
    event = k8s_event(namespace)
    if field == "reason":
        del event["reason"]
    else:
        del event["involvedObject"][field.split(".")[1]]
    resp = send_event(http, gateway_url, event)
    assert_problem(resp, 400, detail_contains=detail)


def test_rejected_webhook_accepts_none_of_its_alerts(
    http, gateway_url, datastore_url, namespace, correlation_id
):
    good = alert(unique("Good"), namespace)
    bad = alert("x", namespace)
    del bad["labels"]["alertname"]
    resp = send_alerts(http, gateway_url, webhook(good, bad), correlation_id=correlation_id)
    assert_problem(resp, 400, detail_contains="alerts[1].labels.alertname")

    # the valid alert of the rejected request left no dedup state behind ...
    resp = send_alerts(http, gateway_url, webhook(good), correlation_id=correlation_id)
    body = expect_status(resp, 201)
    assert body["signals"][0]["occurrences"] == 1, f"expected a fresh signal, got {describe(resp)}"
    # ... and no audit event: the outbox delivers in order, so once the valid
    # request's event is there, one from the rejected request would be too
    events = wait_for_audit(http, datastore_url, correlation_id, 1)
    assert events[0]["event_type"] == "signal.created", events


@pytest.mark.parametrize("path", [ALERTMANAGER_PATH, K8S_EVENT_PATH])
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_is_415(http, gateway_url, namespace, path, content_type):
    payload = webhook(alert(unique("Ct"), namespace)) if path == ALERTMANAGER_PATH else k8s_event(namespace)
    resp = post_raw(http, gateway_url + path, json.dumps(payload).encode(), content_type=content_type)
    assert_problem(resp, 415, detail_contains="application/json")


@pytest.mark.parametrize("path", [ALERTMANAGER_PATH, K8S_EVENT_PATH])
def test_oversized_body_is_413(http, gateway_url, namespace, path):
    payload = webhook(
        alert(unique("Huge"), namespace, annotations={"description": "x" * (MAX_BODY_BYTES + 10)})
    )
    data = json.dumps(payload).encode()
    assert len(data) > MAX_BODY_BYTES
    resp = post_raw(http, gateway_url + path, data)
    assert_problem(resp, 413, detail_contains=str(MAX_BODY_BYTES))


@pytest.mark.parametrize("service", ["gateway", "datastore"])
@pytest.mark.parametrize("path", ["/nope", "/api/v1/signals", "/api/v1/signals/alertmanager/extra"])
def test_unknown_path_is_404(http, endpoints, service, path):
    resp = http.get(endpoints[service] + path)
    assert_problem(resp, 404)


@pytest.mark.parametrize(
    ("service", "method", "path", "allow"),
    [
        ("gateway", "GET", ALERTMANAGER_PATH, {"POST"}),
        ("gateway", "PUT", K8S_EVENT_PATH, {"POST"}),
        ("gateway", "POST", "/health", {"GET"}),
        ("gateway", "DELETE", "/metrics", {"GET"}),
        ("datastore", "DELETE", "/api/v1/events", {"GET", "POST"}),
        ("datastore", "POST", "/ready", {"GET"}),
    ],
)
def test_wrong_method_is_405_with_allow(http, endpoints, service, method, path, allow):
    resp = http.request(method, endpoints[service] + path)
    assert_problem(resp, 405)
    got = {m.strip() for m in resp.headers.get("Allow", "").split(",") if m.strip()}
    assert got == allow, (
        f"expected Allow: {sorted(allow)}, got {resp.headers.get('Allow')!r}: {describe(resp)}"
    )
