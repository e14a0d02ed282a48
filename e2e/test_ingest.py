"""Core ingestion: AlertManager webhooks and Kubernetes Events become signals."""

from __future__ import annotations

import json

from checks import HEX32, HEX64, describe, expect_status
from signals import alert, k8s_event, send_alerts, send_event, unique, webhook


def only_signal(resp, status: int = 201) -> dict:
    body = expect_status(resp, status)
    assert isinstance(body, dict) and isinstance(body.get("signals"), list), (
        f"expected a body {{'signals': [...]}}, got {describe(resp)}"
    )
    assert len(body["signals"]) == 1, f"expected exactly one signal, got {describe(resp)}"
    return body["signals"][0]


def test_alertmanager_webhook_creates_signal_with_its_fields(http, gateway_url, namespace, correlation_id):
    name = unique("HighLatency")
    payload = webhook(alert(name, namespace, severity="critical", labels={"service": "checkout"}))
    resp = send_alerts(http, gateway_url, payload, correlation_id=correlation_id)

    body = expect_status(resp, 201)
    assert resp.headers.get("Content-Type", "").startswith("application/json"), describe(resp)
    sig = body["signals"][0]
    assert len(body["signals"]) == 1, f"expected one signal, got {describe(resp)}"
    assert HEX64.match(sig.get("fingerprint", "")), f"expected a 64-hex fingerprint, got {describe(resp)}"
    expected = {
        "status": "created",
        "occurrences": 1,
        "namespace": namespace,
        "source": "alertmanager",
        "correlation_id": correlation_id,
        "alertname": name,
        "severity": "critical",
        "labels": {"alertname": name, "namespace": namespace, "severity": "critical", "service": "checkout"},
    }
    actual = {k: sig.get(k) for k in expected}
    assert actual == expected, f"expected signal fields {expected}, got {describe(resp)}"
    assert resp.headers.get("X-Correlation-ID") == correlation_id, (
        f"expected X-Correlation-ID {correlation_id!r} echoed, got {dict(resp.headers)}"
    )


def test_webhook_with_several_alerts_yields_one_signal_each(http, gateway_url, namespace):
    names = [unique(f"Multi{i}") for i in range(3)]
    resp = send_alerts(http, gateway_url, webhook(*(alert(n, namespace) for n in names)))

    body = expect_status(resp, 201)
    sigs = body["signals"]
    assert [s.get("alertname") for s in sigs] == names, (
        f"expected signals for {names} in request order, got {describe(resp)}"
    )
    assert all(s["status"] == "created" and s["occurrences"] == 1 for s in sigs), describe(resp)
    assert len({s["fingerprint"] for s in sigs}) == 3, (
        f"expected 3 distinct fingerprints, got {describe(resp)}"
    )
    corr = {s["correlation_id"] for s in sigs}
    assert corr == {resp.headers.get("X-Correlation-ID")}, (
        f"expected all signals to share the response's X-Correlation-ID, got {corr} / {describe(resp)}"
    )


def test_kubernetes_event_creates_signal_with_its_fields(http, gateway_url, namespace, correlation_id):
    pod = unique("web")
    event = k8s_event(
        namespace,
        reason="FailedScheduling",
        kind="Pod",
        name=pod,
        message="0/3 nodes are available",
        type_="Warning",
    )
    resp = send_event(http, gateway_url, event, correlation_id=correlation_id)

    sig = only_signal(resp)
    assert HEX64.match(sig.get("fingerprint", "")), f"expected a 64-hex fingerprint, got {describe(resp)}"
    expected = {
        "status": "created",
        "occurrences": 1,
        "namespace": namespace,
        "source": "kubernetes-event",
        "correlation_id": correlation_id,
        "reason": "FailedScheduling",
        "kind": "Pod",
        "name": pod,
        "type": "Warning",
        "message": "0/3 nodes are available",
    }
    actual = {k: sig.get(k) for k in expected}
    assert actual == expected, f"expected signal fields {expected}, got {describe(resp)}"


def test_kubernetes_event_namespace_prefers_involved_object(http, gateway_url, namespace):
    other = namespace + "-meta"
    event = k8s_event(None, involved_namespace=namespace, metadata_namespace=other)
    sig = only_signal(send_event(http, gateway_url, event))
    assert sig["namespace"] == namespace, (
        f"expected involvedObject.namespace {namespace!r} to win over metadata.namespace {other!r}, got {sig}"
    )


def test_kubernetes_event_namespace_falls_back_to_metadata(http, gateway_url, namespace):
    event = k8s_event(None, involved_namespace="", metadata_namespace=namespace)
    sig = only_signal(send_event(http, gateway_url, event))
    assert sig["namespace"] == namespace, (
        f"expected metadata.namespace {namespace!r} when involvedObject has none, got {sig}"
    )


def test_signal_without_namespace_goes_to_default(http, gateway_url, namespace):
    # the alert name carries the test's namespace value, so the shared
    # "default" namespace still gives this test a fingerprint of its own
    resp = send_alerts(http, gateway_url, webhook(alert(f"NoNamespace-{namespace}", None)))
    sig = only_signal(resp)
    assert sig["namespace"] == "default", f"expected namespace 'default' without a namespace label, got {sig}"

    event = k8s_event(None, involved_namespace="", metadata_namespace="", name=f"pod-{namespace}")
    sig = only_signal(send_event(http, gateway_url, event))
    assert sig["namespace"] == "default", (
        f"expected namespace 'default' for an event without namespaces, got {sig}"
    )


def test_content_type_with_charset_is_accepted(http, gateway_url, namespace):
    resp = send_alerts(
        http,
        gateway_url,
        webhook(alert(unique("Charset"), namespace)),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    expect_status(resp, 201)


def test_generated_correlation_id_is_echoed_and_shared(http, gateway_url, namespace):
    resp = send_alerts(http, gateway_url, webhook(alert(unique("NoCorr"), namespace)))
    body = expect_status(resp, 201)
    corr = resp.headers.get("X-Correlation-ID", "")
    assert HEX32.match(corr), f"expected a generated 32-hex X-Correlation-ID, got {corr!r}: {describe(resp)}"
    assert body["signals"][0]["correlation_id"] == corr, describe(resp)


def test_invalid_correlation_id_is_replaced(http, gateway_url, namespace):
    bad = "not valid; has spaces"
    resp = send_alerts(http, gateway_url, webhook(alert(unique("BadCorr"), namespace)), correlation_id=bad)
    body = expect_status(resp, 201)
    corr = resp.headers.get("X-Correlation-ID", "")
    assert HEX32.match(corr), (
        f"expected {bad!r} to be replaced by a 32-hex id, got {corr!r}: {describe(resp)}"
    )
    assert body["signals"][0]["correlation_id"] == corr, describe(resp)


def test_body_just_under_the_limit_is_accepted(http, gateway_url, namespace):
    # MAX_BODY_BYTES is 65536 in the E2E stack; a large annotation keeps it valid
    payload = webhook(alert(unique("Big"), namespace, annotations={"description": ""}))
    base = len(json.dumps(payload))
    payload["alerts"][0]["annotations"]["description"] = "x" * (65536 - base - 16)
    size = len(json.dumps(payload))
    assert size <= 65536
    resp = send_alerts(http, gateway_url, payload)
    assert resp.status_code == 201, (
        f"expected a {size}-byte body (limit 65536) to be accepted, got {describe(resp)}"
    )
