"""Audit trail: every accepted signal shows up in the datastore under its correlation id."""

from __future__ import annotations

import uuid
from datetime import datetime

from checks import assert_problem, describe, expect_status, wait_for_audit
from signals import alert, k8s_event, post_json, send_alerts, send_event, unique, webhook


def test_created_alert_is_audited(http, gateway_url, datastore_url, namespace, correlation_id):
    name = unique("Audited")
    resp = send_alerts(
        http, gateway_url, webhook(alert(name, namespace, severity="critical")), correlation_id=correlation_id
    )
    sig = expect_status(resp, 201)["signals"][0]

    [ev] = wait_for_audit(http, datastore_url, correlation_id, 1)
    expected = {
        "correlation_id": correlation_id,
        "event_type": "signal.created",
        "source": "alertmanager",
        "namespace": namespace,
        "fingerprint": sig["fingerprint"],
    }
    actual = {k: ev.get(k) for k in expected}
    assert actual == expected, f"expected audit event {expected}, got {ev}"
    assert ev.get("id") and ev.get("event_id") == ev["id"], f"expected id == event_id, got {ev}"
    datetime.fromisoformat(ev["received_at"].replace("Z", "+00:00"))  # RFC 3339
    payload = ev.get("payload", {})
    for key in ("alertname", "severity", "occurrences", "status", "labels"):
        assert payload.get(key) == sig[key], (
            f"payload.{key}: expected {sig[key]!r}, got {payload.get(key)!r} in {ev}"
        )


def test_duplicates_are_audited_in_order(http, gateway_url, datastore_url, namespace, correlation_id):
    payload = webhook(alert(unique("AudDup"), namespace))
    codes = [
        send_alerts(http, gateway_url, payload, correlation_id=correlation_id).status_code for _ in range(3)
    ]
    assert codes == [201, 202, 202], f"expected 201, 202, 202, got {codes}"

    events = wait_for_audit(http, datastore_url, correlation_id, 3)
    seen = [(e["event_type"], e["payload"].get("occurrences")) for e in events]
    expected = [("signal.created", 1), ("signal.duplicate", 2), ("signal.duplicate", 3)]
    assert seen == expected, f"expected events in arrival order {expected}, got {seen}"
    assert len({e["event_id"] for e in events}) == 3, f"event ids must be unique: {events}"
    assert len({e["fingerprint"] for e in events}) == 1, f"one signal, one fingerprint: {events}"


def test_every_alert_of_a_webhook_is_audited(http, gateway_url, datastore_url, namespace, correlation_id):
    names = [unique(f"Batch{i}") for i in range(5)]
    resp = send_alerts(
        http, gateway_url, webhook(*(alert(n, namespace) for n in names)), correlation_id=correlation_id
    )
    sigs = expect_status(resp, 201)["signals"]
    events = wait_for_audit(http, datastore_url, correlation_id, 5)
    assert sorted(e["fingerprint"] for e in events) == sorted(s["fingerprint"] for s in sigs), (
        f"expected one audit event per signal {[s['fingerprint'] for s in sigs]}, got {events}"
    )
    assert sorted(e["payload"]["alertname"] for e in events) == sorted(names), events


def test_kubernetes_event_is_audited(http, gateway_url, datastore_url, namespace, correlation_id):
    pod = unique("worker")
    resp = send_event(
        http, gateway_url, k8s_event(namespace, name=pod, reason="OOMKilling"), correlation_id=correlation_id
    )
    sig = expect_status(resp, 201)["signals"][0]
    [ev] = wait_for_audit(http, datastore_url, correlation_id, 1)
    assert (ev["event_type"], ev["source"], ev["namespace"], ev["fingerprint"]) == (
        "signal.created",
        "kubernetes-event",
        namespace,
        sig["fingerprint"],
    ), f"unexpected audit event {ev}"
    assert (ev["payload"].get("reason"), ev["payload"].get("name"), ev["payload"].get("kind")) == (
        "OOMKilling",
        pod,
        "Pod",
    ), f"unexpected payload {ev['payload']}"


def test_generated_correlation_id_finds_the_audit_events(http, gateway_url, datastore_url, namespace):
    resp = send_alerts(http, gateway_url, webhook(alert(unique("GenCorr"), namespace)))
    expect_status(resp, 201)
    corr = resp.headers.get("X-Correlation-ID")
    assert corr, f"expected a generated X-Correlation-ID, got {describe(resp)}"
    [ev] = wait_for_audit(http, datastore_url, corr, 1)
    assert ev["namespace"] == namespace, ev


def test_unknown_correlation_id_has_no_events(http, datastore_url):
    corr = f"never-used-{uuid.uuid4().hex}"
    resp = http.get(f"{datastore_url}/api/v1/events", params={"correlation_id": corr})
    body = expect_status(resp, 200)
    assert body == {"correlation_id": corr, "count": 0, "events": []}, (
        f"expected no events, got {describe(resp)}"
    )


def test_datastore_requires_correlation_id_query(http, datastore_url):
    assert_problem(http.get(f"{datastore_url}/api/v1/events"), 400, detail_contains="correlation_id")


def test_datastore_rejects_invalid_events(datastore_writer, datastore_url, correlation_id):
    http = datastore_writer
    url = f"{datastore_url}/api/v1/events"
    assert_problem(post_json(http, url, {"event_type": "x"}), 400, detail_contains="correlation_id")
    assert_problem(
        post_json(http, url, {"correlation_id": correlation_id}), 400, detail_contains="event_type"
    )
    assert_problem(
        post_json(http, url, {"correlation_id": correlation_id, "event_type": "x", "payload": [1]}),
        400,
        detail_contains="payload",
    )
    assert_problem(http.post(url, data=b"{", headers={"Content-Type": "application/json"}), 400)
    assert_problem(http.post(url, data=b"{}", headers={"Content-Type": "text/plain"}), 415)
    big = b'{"correlation_id": "x", "event_type": "x", "payload": {"a": "' + b"x" * (1 << 20) + b'"}}'
    assert_problem(http.post(url, data=big, headers={"Content-Type": "application/json"}), 413)
    resp = http.get(url, params={"correlation_id": correlation_id})
    assert expect_status(resp, 200)["count"] == 0, f"rejected events must not be stored: {describe(resp)}"


def test_datastore_event_id_is_idempotent(datastore_writer, datastore_url, namespace, correlation_id):
    http = datastore_writer
    url = f"{datastore_url}/api/v1/events"
    event = {
        "event_id": f"ev-{uuid.uuid4().hex}",
        "correlation_id": correlation_id,
        "event_type": "test.direct",
        "source": "e2e",
        "namespace": namespace,
        "fingerprint": "f" * 64,
        "payload": {"n": 1},
    }
    first = post_json(http, url, event)
    stored = expect_status(first, 201)
    assert stored["id"] == event["event_id"] and stored["payload"] == {"n": 1}, describe(first)

    retry = post_json(http, url, {**event, "payload": {"n": 2}})
    again = expect_status(retry, 200)
    assert again == stored, (
        f"a retry with the same event_id must return the stored event {stored}, got {describe(retry)}"
    )
    events = wait_for_audit(http, datastore_url, correlation_id, 1)
    assert events[0]["payload"] == {"n": 1}, events
