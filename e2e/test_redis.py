"""Redis behind the gateway's deduplication: when it goes away the gateway keeps accepting,
deduplicating in process, and says it degraded; when it is back, it is used again (disruptive: run
serially, after the parallel tests)."""

from __future__ import annotations

import pytest
from checks import describe, expect_status, json_log_lines, scrape, wait_for, wait_for_audit
from signals import alert, send_alerts, unique, webhook

pytestmark = pytest.mark.disruptive


@pytest.fixture
def redis_back(platform, http, gateway_url):
    """Whatever a test does to Redis, it is running again afterwards."""
    yield
    ready = http.get(gateway_url + "/ready").json()
    if ready.get("dependencies", {}).get("redis") != "ok":
        platform.start("redis")


def one(resp, status: int) -> dict:
    body = expect_status(resp, status)
    assert len(body.get("signals", [])) == 1, f"expected one signal, got {describe(resp)}"
    return body["signals"][0]


def test_a_redis_outage_degrades_the_gateway_gracefully_and_it_recovers(
    http, gateway_url, datastore_url, platform, namespace, correlation_id, redis_back
):
    degraded_before = scrape(http, gateway_url).get("gateway_dedup_degraded_total")
    platform.stop("redis")

    # still accepted, still deduplicated (in process), and marked degraded
    payload = webhook(alert(unique("NoRedis"), namespace))
    resp = send_alerts(http, gateway_url, payload, correlation_id=correlation_id)
    first = one(resp, 201)
    assert (first["status"], first["dedup"]) == ("created", "degraded"), describe(resp)
    assert resp.headers.get("X-Dedup") == "degraded", describe(resp)
    resp = send_alerts(http, gateway_url, payload, correlation_id=correlation_id)
    again = one(resp, 202)
    assert (again["status"], again["occurrences"], again["dedup"]) == ("duplicate", 2, "degraded"), describe(
        resp
    )

    ready = expect_status(http.get(gateway_url + "/ready"), 200)  # Redis is not needed to serve
    assert ready["dependencies"]["redis"].startswith("down"), ready
    m = scrape(http, gateway_url)
    assert m.get("gateway_redis_up") == 0, m.text
    assert m.get("gateway_dedup_degraded_total") >= degraded_before + 2, m.text
    events = wait_for_audit(http, datastore_url, correlation_id, 2)
    assert [e["event_type"] for e in events] == ["signal.created", "signal.duplicate"], events

    platform.start("redis")
    back = wait_for(
        lambda: send_alerts(http, gateway_url, webhook(alert(unique("RedisBack"), namespace))),
        lambda r: r.status_code == 201 and r.json()["signals"][0]["dedup"] == "redis",
        what="a new signal deduplicated in Redis again after Redis started",
        timeout=30,
        show=describe,
    )
    assert back.headers.get("X-Dedup") == "redis", describe(back)
    assert scrape(http, gateway_url).get("gateway_redis_up") == 1
    ready = expect_status(http.get(gateway_url + "/ready"), 200)
    assert ready["dependencies"]["redis"] == "ok", ready

    good, _ = json_log_lines(platform.logs("gateway"))
    msgs = [line.get("msg") for line in good]
    assert "redis unavailable, deduplicating in process" in msgs and "redis available again" in msgs, msgs[
        -20:
    ]
