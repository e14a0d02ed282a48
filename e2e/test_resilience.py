"""Restarts and outages (disruptive: run serially, after the parallel tests)."""

from __future__ import annotations

import threading

import pytest
from checks import (
    describe,
    expect_status,
    json_log_lines,
    ready,
    scrape,
    wait_for,
    wait_for_audit,
    wait_for_response,
)
from conftest import Http
from signals import alert, send_alerts, unique, webhook

pytestmark = pytest.mark.disruptive


def gateway_serves(http, gateway_url, timeout: float = 30):
    return wait_for_response(
        lambda: http.get(gateway_url + "/health"),
        lambda r: r.status_code == 200,
        what="gateway /health to answer 200",
        timeout=timeout,
    )


@pytest.fixture
def datastore_back(platform, http, gateway_url):
    """Whatever a test does to the datastore, it is running again afterwards."""
    yield
    if http.get(gateway_url + "/ready").status_code != 200:
        platform.start("datastore")
        ready(http, gateway_url)


def test_gateway_restart_serves_again(http, gateway_url, datastore_url, platform, namespace, correlation_id):
    started = scrape(http, gateway_url).get("process_start_time_seconds")
    payload = webhook(alert(unique("BeforeRestart"), namespace))
    expect_status(send_alerts(http, gateway_url, payload, correlation_id=correlation_id), 201)

    platform.restart("gateway")
    gateway_serves(http, gateway_url)

    restarted = scrape(http, gateway_url).get("process_start_time_seconds")
    assert restarted > started, f"expected a new process: process_start_time_seconds {started} -> {restarted}"
    resp = send_alerts(
        http, gateway_url, webhook(alert(unique("AfterRestart"), namespace)), correlation_id=correlation_id
    )
    expect_status(resp, 201)
    ready(http, gateway_url)
    events = wait_for_audit(http, datastore_url, correlation_id, 2)
    assert [e["event_type"] for e in events] == ["signal.created", "signal.created"], events

    good, _ = json_log_lines(platform.logs("gateway"))
    msgs = [line.get("msg") for line in good]
    assert "stopped" in msgs, (
        f"expected the gateway to log 'stopped' on SIGTERM (graceful shutdown, return "
        f"from main); log messages: {msgs[-20:]}"
    )


def test_gateway_restart_delivers_queued_audit_events(
    http, gateway_url, datastore_url, platform, namespace, correlation_id
):
    payload = webhook(*(alert(unique(f"Flush{i}"), namespace) for i in range(10)))
    expect_status(send_alerts(http, gateway_url, payload, correlation_id=correlation_id), 201)
    platform.restart("gateway")  # SIGTERM right after: the outbox must flush on the way out
    gateway_serves(http, gateway_url)
    wait_for_audit(http, datastore_url, correlation_id, 10)


def test_datastore_restart_loses_no_audit_events(
    http, gateway_url, datastore_url, platform, namespace, correlation_id, datastore_back
):
    before = webhook(*(alert(unique(f"Pre{i}"), namespace) for i in range(5)))
    expect_status(send_alerts(http, gateway_url, before, correlation_id=correlation_id), 201)
    written = wait_for_audit(http, datastore_url, correlation_id, 5)

    # keep sending while the datastore restarts
    around = f"{correlation_id}-around"
    stop = threading.Event()
    answers: list[str] = []
    sent = [0]

    def sender() -> None:
        with Http() as session:
            while not stop.is_set():
                try:
                    resp = send_alerts(
                        session,
                        gateway_url,
                        webhook(alert(unique("Around"), namespace)),
                        correlation_id=around,
                    )
                except Exception as err:  # noqa: BLE001 - reported by the assertion below
                    answers.append(repr(err))
                    return
                sent[0] += 1
                if resp.status_code != 201:
                    answers.append(describe(resp))
                stop.wait(0.1)

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    try:
        wait_for(lambda: sent[0], lambda n: n >= 3, what="3 signals sent before the restart", timeout=10)
        platform.restart("datastore")
        n_back = sent[0]
        wait_for(
            lambda: sent[0], lambda n: n >= n_back + 3, what="3 signals sent after the restart", timeout=10
        )
    finally:
        stop.set()
        t.join(timeout=30)
    assert not answers, f"ingestion must not fail while the datastore restarts: {answers[:3]}"
    assert sent[0] > 0

    ready(http, gateway_url)
    after = wait_for_audit(http, datastore_url, correlation_id, 5)
    assert [e["id"] for e in after] == [e["id"] for e in written], (
        f"events stored before the restart changed: before {written}, after {after}"
    )
    wait_for_audit(http, datastore_url, around, sent[0], timeout=30)


def test_datastore_outage_queues_audit_events(
    http, gateway_url, datastore_url, platform, namespace, correlation_id, datastore_back
):
    platform.stop("datastore")

    # ingestion keeps working; /health does not care, /ready does
    resp = send_alerts(
        http,
        gateway_url,
        webhook(*(alert(unique(f"Down{i}"), namespace) for i in range(3))),
        correlation_id=correlation_id,
    )
    expect_status(resp, 201)
    expect_status(
        send_alerts(
            http, gateway_url, webhook(alert(unique("Down0b"), namespace)), correlation_id=correlation_id
        ),
        201,
    )
    expect_status(http.get(gateway_url + "/health"), 200)
    resp = wait_for_response(
        lambda: http.get(gateway_url + "/ready"),
        lambda r: r.status_code == 503,
        what="gateway /ready to answer 503 while the datastore is stopped",
        timeout=10,
    )
    body = resp.json()
    dep = str(body.get("dependencies", {}).get("datastore", ""))
    assert body.get("status") == "not ready" and dep.startswith("unreachable"), (
        f"expected status 'not ready' naming the datastore as unreachable, got {describe(resp)}"
    )

    m = wait_for(
        lambda: scrape(http, gateway_url),
        lambda m: (
            m.get("gateway_audit_outbox_pending") >= 4 and m.get("gateway_audit_events_failed_total") > 0
        ),
        what="pending >= 4 and failed attempts > 0 while the datastore is down",
        timeout=10,
        show=lambda m: (
            f"pending={m.get('gateway_audit_outbox_pending')} "
            f"failed={m.get('gateway_audit_events_failed_total')}"
        ),
    )
    failed_while_down = m.get("gateway_audit_events_failed_total")

    platform.start("datastore")
    ready(http, gateway_url)
    events = wait_for_audit(http, datastore_url, correlation_id, 4, timeout=30)
    assert {e["event_type"] for e in events} == {"signal.created"}, events
    wait_for(
        lambda: scrape(http, gateway_url),
        lambda m: m.get("gateway_audit_outbox_pending") == 0,
        what="the outbox to drain after the datastore is back",
        timeout=15,
        show=lambda m: f"pending={m.get('gateway_audit_outbox_pending')}",
    )
    assert failed_while_down > 0
