"""Health, readiness and Prometheus metrics of both services.

Other tests run in parallel against the same processes, so global counters
are compared as "increased by at least N", never for equality.
"""

from __future__ import annotations

import time

import pytest
from checks import describe, expect_status, scrape, wait_for, wait_for_audit
from signals import alert, k8s_event, send_alerts, send_event, unique, webhook


@pytest.mark.parametrize("service", ["gateway", "datastore"])
def test_health_is_ok(http, endpoints, service):
    resp = http.get(endpoints[service] + "/health")
    body = expect_status(resp, 200)
    assert body == {"status": "ok", "service": service}, f"expected ok from {service}, got {describe(resp)}"
    assert resp.headers.get("Content-Type", "").startswith("application/json"), describe(resp)


def test_gateway_ready_reports_datastore_ok(http, gateway_url):
    resp = http.get(gateway_url + "/ready")
    body = expect_status(resp, 200)
    assert body.get("status") == "ready", f"expected status ready, got {describe(resp)}"
    assert body.get("dependencies", {}).get("datastore") == "ok", (
        f"expected dependencies.datastore == 'ok', got {describe(resp)}"
    )


def test_datastore_ready(http, datastore_url):
    resp = http.get(datastore_url + "/ready")
    body = expect_status(resp, 200)
    assert body.get("status") == "ready" and isinstance(body.get("dependencies"), dict), describe(resp)


@pytest.mark.parametrize("service", ["gateway", "datastore"])
def test_metrics_exposition_is_well_formed(http, endpoints, service):
    resp = http.get(endpoints[service] + "/metrics")
    assert resp.status_code == 200, describe(resp)
    ctype = resp.headers.get("Content-Type", "")
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype, f"unexpected Content-Type {ctype!r}"
    m = scrape(http, endpoints[service])
    untyped = sorted(n for n in m.names() if n not in m.types)
    assert not untyped, f"samples without # TYPE: {untyped}"
    unhelped = sorted(n for n in m.names() if n not in m.helps)
    assert not unhelped, f"samples without # HELP: {unhelped}"
    started = m.get("process_start_time_seconds")
    assert 1.5e9 < started <= time.time() + 5, f"implausible process_start_time_seconds {started}"
    expected = {"http_requests_total", "process_start_time_seconds"} | (
        {
            "gateway_signals_received_total",
            "gateway_signals_created_total",
            "gateway_signals_duplicate_total",
            "gateway_audit_events_sent_total",
            "gateway_audit_events_failed_total",
            "gateway_audit_outbox_pending",
        }
        if service == "gateway"
        else {"datastore_events_stored_total", "datastore_events_duplicate_total"}
    )
    missing = expected - set(m.types)
    assert not missing, f"{service} /metrics lacks {sorted(missing)}:\n{m.text}"
    counters = [n for n, k in m.types.items() if k == "counter"]
    assert all(n.endswith("_total") for n in counters), f"counters should end in _total: {counters}"


def test_signal_counters_move_with_alerts(http, gateway_url, namespace):
    before = scrape(http, gateway_url)
    payload = webhook(*(alert(unique(f"Count{i}"), namespace) for i in range(3)))
    expect_status(send_alerts(http, gateway_url, payload), 201)
    expect_status(send_alerts(http, gateway_url, payload), 202)
    after = scrape(http, gateway_url)

    src = {"source": "alertmanager"}
    deltas = {
        name: after.get(name, **src) - before.get(name, **src)
        for name in (
            "gateway_signals_received_total",
            "gateway_signals_created_total",
            "gateway_signals_duplicate_total",
        )
    }
    minimum = {
        "gateway_signals_received_total": 6,
        "gateway_signals_created_total": 3,
        "gateway_signals_duplicate_total": 3,
    }
    short = {k: v for k, v in deltas.items() if v < minimum[k]}
    assert not short, f"expected increases of at least {minimum}, got {deltas}"


def test_signal_counters_move_with_kubernetes_events(http, gateway_url, namespace):
    before = scrape(http, gateway_url)
    event = k8s_event(namespace)
    expect_status(send_event(http, gateway_url, event), 201)
    expect_status(send_event(http, gateway_url, event), 202)
    after = scrape(http, gateway_url)
    src = {"source": "kubernetes-event"}
    d_recv = after.get("gateway_signals_received_total", **src) - before.get(
        "gateway_signals_received_total", **src
    )
    d_new = after.get("gateway_signals_created_total", **src) - before.get(
        "gateway_signals_created_total", **src
    )
    d_dup = after.get("gateway_signals_duplicate_total", **src) - before.get(
        "gateway_signals_duplicate_total", **src
    )
    assert d_recv >= 2 and d_new >= 1 and d_dup >= 1, (
        "expected kubernetes-event counters to rise by received >= 2, created >= 1, duplicate >= 1; "
        f"got {d_recv}, {d_new}, {d_dup}"
    )


def test_rejected_requests_are_not_counted_as_signals_but_as_requests(http, gateway_url):
    path = "/api/v1/signals/alertmanager"
    labels = {"method": "POST", "path": path, "code": "400"}
    before = scrape(http, gateway_url)
    resp = http.post(gateway_url + path, data=b"{", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400, describe(resp)
    resp = http.get(gateway_url + "/definitely-not-a-route")
    assert resp.status_code == 404, describe(resp)
    after = scrape(http, gateway_url)
    d400 = after.get("http_requests_total", **labels) - before.get("http_requests_total", **labels)
    d404 = after.get("http_requests_total", method="GET", path="other", code="404") - before.get(
        "http_requests_total", method="GET", path="other", code="404"
    )
    assert d400 >= 1, f"expected http_requests_total{labels} to rise by >= 1, got {d400}"
    assert d404 >= 1, f"expected http_requests_total{{GET,other,404}} to rise by >= 1, got {d404}"
    bad = [
        k
        for k in after.samples
        if k[0] == "http_requests_total" and ("path", "/definitely-not-a-route") in k[1]
    ]
    assert not bad, f"unknown paths must be labelled 'other', found {bad}"


def test_audit_counters_move_in_both_services(http, gateway_url, datastore_url, namespace, correlation_id):
    g0, d0 = scrape(http, gateway_url), scrape(http, datastore_url)
    payload = webhook(*(alert(unique(f"Aud{i}"), namespace) for i in range(4)))
    expect_status(send_alerts(http, gateway_url, payload, correlation_id=correlation_id), 201)
    wait_for_audit(http, datastore_url, correlation_id, 4)
    g1, d1 = scrape(http, gateway_url), scrape(http, datastore_url)
    sent = g1.get("gateway_audit_events_sent_total") - g0.get("gateway_audit_events_sent_total")
    stored = d1.get("datastore_events_stored_total") - d0.get("datastore_events_stored_total")
    assert sent >= 4, f"expected gateway_audit_events_sent_total to rise by >= 4, got {sent}"
    assert stored >= 4, f"expected datastore_events_stored_total to rise by >= 4, got {stored}"


def test_outbox_drains_to_zero_pending(http, gateway_url, datastore_url, namespace, correlation_id):
    expect_status(
        send_alerts(
            http, gateway_url, webhook(alert(unique("Pend"), namespace)), correlation_id=correlation_id
        ),
        201,
    )
    wait_for_audit(http, datastore_url, correlation_id, 1)
    # other workers may have a few events in flight at any moment; the gauge
    # must still come down to (near) zero rather than grow without bound
    m = wait_for(
        lambda: scrape(http, gateway_url),
        lambda m: m.get("gateway_audit_outbox_pending") == 0,
        what="gateway_audit_outbox_pending == 0",
        timeout=15,
        show=lambda m: f"pending={m.get('gateway_audit_outbox_pending')}",
    )
    assert m.has("gateway_audit_outbox_pending")


def test_process_start_time_is_stable_between_scrapes(http, gateway_url):
    a = scrape(http, gateway_url).get("process_start_time_seconds")
    b = scrape(http, gateway_url).get("process_start_time_seconds")
    assert a == b and a > 0, f"process_start_time_seconds changed between scrapes: {a} -> {b}"
