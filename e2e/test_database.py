"""PostgreSQL behind the datastore: its events outlive a database restart, and while the database
is down the datastore says so with 503 (disruptive: run serially, after the parallel tests)."""

from __future__ import annotations

import uuid

import pytest
from checks import (
    assert_problem,
    audit_events,
    expect_status,
    ready,
    scrape,
    wait_for,
    wait_for_audit,
)
from signals import alert, send_alerts, unique, webhook

pytestmark = pytest.mark.disruptive


@pytest.fixture
def postgres_back(platform, http, datastore_url):
    """Whatever a test does to PostgreSQL, it is running again afterwards."""
    yield
    if http.get(datastore_url + "/ready").status_code != 200:
        platform.start("postgres")
        ready(http, datastore_url, timeout=60)


def store(writer, datastore_url, correlation_id, n: int, prefix: str) -> list[dict]:
    out = []
    for i in range(n):
        event = {"event_id": f"{prefix}-{i}-{uuid.uuid4().hex[:8]}", "correlation_id": correlation_id,
                 "event_type": "db.check", "payload": {"i": i}}  # fmt: skip
        out.append(expect_status(writer.post(datastore_url + "/api/v1/events", json=event), 201))
    return out


def test_a_postgres_restart_keeps_the_events(
    http, datastore_writer, datastore_url, platform, correlation_id, postgres_back
):
    written = store(datastore_writer, datastore_url, correlation_id, 3, "before")

    platform.restart("postgres")
    ready(http, datastore_url, timeout=60)

    after = wait_for_audit(http, datastore_url, correlation_id, 3)
    assert [(e["id"], e["received_at"], e["payload"]) for e in after] == [
        (e["id"], e["received_at"], e["payload"]) for e in written
    ], f"the events stored before the restart changed: before {written}, after {after}"
    store(datastore_writer, datastore_url, correlation_id, 1, "after")
    wait_for_audit(http, datastore_url, correlation_id, 4)


def test_the_datastore_answers_503_while_its_database_is_down_and_recovers(
    http, datastore_writer, datastore_url, gateway_url, platform, namespace, correlation_id, postgres_back
):
    store(datastore_writer, datastore_url, correlation_id, 1, "up")
    platform.stop("postgres")

    event = {"correlation_id": correlation_id, "event_type": "db.check", "payload": {}}
    assert_problem(datastore_writer.post(datastore_url + "/api/v1/events", json=event), 503,
                   detail_contains="database unavailable")  # fmt: skip
    listed = audit_events(http, datastore_url, correlation_id)
    assert_problem(listed, 503, detail_contains="database unavailable")
    resp = http.get(datastore_url + "/ready")
    assert resp.status_code == 503 and resp.json()["dependencies"]["database"] != "ok", resp.text
    expect_status(http.get(datastore_url + "/health"), 200)  # the process serves: it stays in its Service

    # the gateway keeps accepting: its audit events wait in its outbox (the datastore answers 503)
    gateway_corr = f"{correlation_id}-gw"
    payload = webhook(*(alert(unique(f"DbDown{i}"), namespace) for i in range(2)))
    expect_status(send_alerts(http, gateway_url, payload, correlation_id=gateway_corr), 201)
    wait_for(
        lambda: scrape(http, gateway_url),
        lambda m: m.get("gateway_audit_outbox_pending") >= 2,
        what="the gateway's outbox to hold the 2 audit events while the database is down",
        timeout=10,
        show=lambda m: f"pending={m.get('gateway_audit_outbox_pending')}",
    )

    platform.start("postgres")
    ready(http, datastore_url, timeout=60)
    store(datastore_writer, datastore_url, correlation_id, 1, "back")
    wait_for_audit(http, datastore_url, correlation_id, 2)
    events = wait_for_audit(http, datastore_url, gateway_corr, 2, timeout=30)
    assert {e["event_type"] for e in events} == {"signal.created"}, events
