"""Deduplication: fingerprints, occurrence counts, the TTL window, per-namespace state."""

from __future__ import annotations

import time

from checks import HEX64, describe, expect_status, wait_for
from signals import alert, k8s_event, send_alerts, send_event, unique, webhook

DEDUP_TTL = 5.0  # manifests/gateway.yaml


def one(resp, status: int) -> dict:
    body = expect_status(resp, status)
    assert len(body.get("signals", [])) == 1, f"expected one signal, got {describe(resp)}"
    return body["signals"][0]


def test_same_alert_twice_is_duplicate_with_rising_occurrences(http, gateway_url, namespace):
    payload = webhook(alert(unique("Dup"), namespace))
    first = one(send_alerts(http, gateway_url, payload), 201)
    assert (first["status"], first["occurrences"]) == ("created", 1), f"first sighting: {first}"

    for n in (2, 3, 4):
        resp = send_alerts(http, gateway_url, payload)
        sig = one(resp, 202)
        assert (sig["status"], sig["occurrences"]) == ("duplicate", n), (
            f"repeat #{n}: expected status 'duplicate' with occurrences {n}, got {describe(resp)}"
        )
        assert sig["fingerprint"] == first["fingerprint"], (
            f"repeat #{n}: fingerprint changed from {first['fingerprint']}: {describe(resp)}"
        )


def test_identical_alerts_have_identical_fingerprints(http, gateway_url, namespace):
    name = unique("Same")
    a = alert(
        name,
        namespace,
        labels={"pod": "api-0"},
        annotations={"summary": "one"},
        starts_at="2024-01-01T00:00:00Z",
    )
    # same labels, other key order, other annotations and timestamps
    b = alert(
        name,
        namespace,
        labels={"pod": "api-0"},
        annotations={"summary": "two", "runbook": "x"},
        starts_at="2025-06-01T12:00:00Z",
    )
    b["labels"] = dict(reversed(list(b["labels"].items())))
    first = one(send_alerts(http, gateway_url, webhook(a)), 201)
    resp = send_alerts(http, gateway_url, webhook(b))
    second = one(resp, 202)
    assert HEX64.match(first["fingerprint"]), first
    assert second["fingerprint"] == first["fingerprint"], (
        f"expected the same fingerprint {first['fingerprint']} for the same labels "
        f"(annotations/timestamps/key order differ), got {describe(resp)}"
    )
    assert second["status"] == "duplicate", describe(resp)


def test_different_labels_give_different_fingerprints(http, gateway_url, namespace):
    name = unique("Diff")
    base = one(send_alerts(http, gateway_url, webhook(alert(name, namespace, labels={"pod": "api-0"}))), 201)
    variants = {
        "other label value": alert(name, namespace, labels={"pod": "api-1"}),
        "extra label": alert(name, namespace, labels={"pod": "api-0", "container": "c"}),
        "other severity": alert(name, namespace, severity="critical", labels={"pod": "api-0"}),
    }
    seen = {base["fingerprint"]: "base"}
    for what, a in variants.items():
        resp = send_alerts(http, gateway_url, webhook(a))
        sig = one(resp, 201)
        assert sig["status"] == "created" and sig["occurrences"] == 1, (
            f"{what}: expected a new signal, got {describe(resp)}"
        )
        assert sig["fingerprint"] not in seen, (
            f"{what}: fingerprint {sig['fingerprint']} equals the one of {seen.get(sig['fingerprint'])}"
        )
        seen[sig["fingerprint"]] = what


def test_kubernetes_event_dedup_ignores_message_and_count(http, gateway_url, namespace):
    pod = unique("db")
    first = one(send_event(http, gateway_url, k8s_event(namespace, name=pod, reason="Unhealthy")), 201)
    again = k8s_event(namespace, name=pod, reason="Unhealthy", message="Readiness probe failed", count=7)
    resp = send_event(http, gateway_url, again)
    sig = one(resp, 202)
    assert (sig["status"], sig["occurrences"], sig["fingerprint"]) == (
        "duplicate",
        2,
        first["fingerprint"],
    ), f"expected a duplicate of {first['fingerprint']} with occurrences 2, got {describe(resp)}"

    resp = send_event(http, gateway_url, k8s_event(namespace, name=pod, reason="BackOff"))
    other = one(resp, 201)
    assert other["fingerprint"] != first["fingerprint"], (
        f"another reason must be another signal: {describe(resp)}"
    )


def test_mixed_batch_is_201_and_all_duplicates_is_202(http, gateway_url, namespace):
    old, new = alert(unique("Old"), namespace), alert(unique("New"), namespace)
    one(send_alerts(http, gateway_url, webhook(old)), 201)

    resp = send_alerts(http, gateway_url, webhook(old, new))
    body = expect_status(resp, 201)
    statuses = [(s["alertname"], s["status"], s["occurrences"]) for s in body["signals"]]
    expected = [(old["labels"]["alertname"], "duplicate", 2), (new["labels"]["alertname"], "created", 1)]
    assert statuses == expected, f"expected {expected}, got {describe(resp)}"

    resp = send_alerts(http, gateway_url, webhook(old, new))
    body = expect_status(resp, 202)
    assert [s["status"] for s in body["signals"]] == ["duplicate", "duplicate"], describe(resp)


def test_dedup_is_separate_per_namespace(http, gateway_url, namespace):
    name = unique("PerNs")
    ns_a, ns_b = namespace + "-a", namespace + "-b"
    a1 = one(send_alerts(http, gateway_url, webhook(alert(name, ns_a))), 201)
    a2 = one(send_alerts(http, gateway_url, webhook(alert(name, ns_a))), 202)
    b1 = one(send_alerts(http, gateway_url, webhook(alert(name, ns_b))), 201)
    assert (a2["occurrences"], b1["status"], b1["occurrences"]) == (2, "created", 1), (
        f"expected {ns_b} to have its own dedup state: {ns_a} repeat {a2}, {ns_b} first {b1}"
    )
    assert b1["namespace"] == ns_b and a1["namespace"] == ns_a

    # Kubernetes events: same object kind/name and reason in two namespaces
    pod = unique("pod")
    e_a = one(send_event(http, gateway_url, k8s_event(ns_a, name=pod)), 201)
    e_b = one(send_event(http, gateway_url, k8s_event(ns_b, name=pod)), 201)
    assert e_a["fingerprint"] != e_b["fingerprint"], (
        f"events in {ns_a} and {ns_b} share a fingerprint: {e_a} {e_b}"
    )
    e_b2 = one(send_event(http, gateway_url, k8s_event(ns_b, name=pod)), 202)
    assert e_b2["occurrences"] == 2, f"expected occurrences 2 in {ns_b}, got {e_b2}"


def test_alert_is_new_again_after_the_ttl(http, gateway_url, namespace):
    payload = webhook(alert(unique("Ttl"), namespace))
    t0 = time.monotonic()
    first = one(send_alerts(http, gateway_url, payload), 201)
    history: list[tuple[float, int, str, int]] = []

    def resend():
        resp = send_alerts(http, gateway_url, payload)
        sig = one(resp, 201 if resp.status_code == 201 else 202)
        history.append((round(time.monotonic() - t0, 2), resp.status_code, sig["status"], sig["occurrences"]))
        return sig

    renewed = wait_for(
        resend,
        lambda s: s["status"] == "created",
        what=f"the alert to be 'created' again after DEDUP_TTL={DEDUP_TTL}s",
        timeout=DEDUP_TTL + 10,
        interval=0.5,
        show=lambda s: f"{s}; history (t, http, status, occurrences): {history}",
    )
    elapsed = time.monotonic() - t0
    assert elapsed >= DEDUP_TTL - 0.05, (
        f"alert was new again after {elapsed:.2f}s, before the {DEDUP_TTL}s TTL; history: {history}"
    )
    assert renewed["occurrences"] == 1 and renewed["fingerprint"] == first["fingerprint"], (
        f"expected occurrences 1 and the same fingerprint after the TTL, got {renewed}; history {history}"
    )
    dups = [h for h in history[:-1]]
    assert [h[3] for h in dups] == list(range(2, len(dups) + 2)), (
        f"repeats inside the window must count 2, 3, ...; history (t, http, status, occurrences): {history}"
    )
    assert all(h[1] == 202 and h[2] == "duplicate" for h in dups), f"history: {history}"

    resp = send_alerts(http, gateway_url, payload)
    again = one(resp, 202)
    assert again["occurrences"] == 2, (
        f"the new window should count from 1: expected occurrences 2, got {describe(resp)}"
    )


def test_dedup_lives_in_redis_and_says_so(http, gateway_url, namespace):
    payload = webhook(alert(unique("InRedis"), namespace))
    resp = send_alerts(http, gateway_url, payload)
    first = one(resp, 201)
    assert first["dedup"] == "redis" and resp.headers.get("X-Dedup") == "redis", describe(resp)
    resp = send_alerts(http, gateway_url, payload)
    assert one(resp, 202)["dedup"] == "redis" and resp.headers.get("X-Dedup") == "redis", describe(resp)
    ready = expect_status(http.get(gateway_url + "/ready"), 200)
    assert ready["dependencies"]["redis"] == "ok", ready
