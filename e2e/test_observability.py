"""Logs, request ids and CORS."""

from __future__ import annotations

import uuid

import pytest
from checks import HEX32, assert_problem, describe, expect_status, json_log_lines, wait_for
from signals import ALERTMANAGER_PATH, alert, send_alerts, unique, webhook

ALLOWED_ORIGINS = ["https://dashboard.example.com", "http://localhost:3000"]  # manifests/gateway.yaml


def find_request_log(platform, service: str, request_id: str) -> list[dict]:
    def lines():
        good, _ = json_log_lines(platform.logs(service))
        return [line for line in good if line.get("request_id") == request_id]

    return wait_for(
        lines,
        bool,
        what=f"a {service} log line with request_id={request_id}",
        timeout=15,
        interval=0.5,
        show=lambda found: f"{len(found)} matching lines",
    )


@pytest.mark.parametrize("service", ["gateway", "datastore"])
def test_logs_are_json_lines_with_request_ids(http, endpoints, platform, service):
    rid = f"e2e-logs-{uuid.uuid4().hex}"
    expect_status(http.get(endpoints[service] + "/health", headers={"X-Request-ID": rid}), 200)
    find_request_log(platform, service, rid)

    good, bad = json_log_lines(platform.logs(service))
    assert not bad, f"{len(bad)} {service} log lines are not JSON objects, e.g. {bad[:3]}"
    lacking = [line for line in good if not {"time", "level", "msg", "service"} <= line.keys()]
    assert not lacking, f"log lines without time/level/msg/service: {lacking[:3]}"
    assert {line["service"] for line in good} == {service}, f"unexpected service fields in {service} logs"
    requests_ = [line for line in good if line.get("msg") == "request"]
    assert requests_, f"no request log lines in {service} logs"
    no_id = [line for line in requests_ if not line.get("request_id")]
    assert not no_id, f"request log lines without request_id: {no_id[:3]}"


def test_request_id_shows_up_in_gateway_logs(http, gateway_url, platform, namespace):
    rid = f"e2e-{uuid.uuid4().hex}"
    resp = send_alerts(http, gateway_url, webhook(alert(unique("Logged"), namespace)), request_id=rid)
    expect_status(resp, 201)
    assert resp.headers.get("X-Request-ID") == rid, (
        f"expected X-Request-ID {rid} echoed, got {describe(resp)}"
    )

    [line] = find_request_log(platform, "gateway", rid)
    expected = {"method": "POST", "path": ALERTMANAGER_PATH, "status": 201, "service": "gateway"}
    actual = {k: line.get(k) for k in expected}
    assert actual == expected, f"expected log fields {expected}, got {line}"
    assert isinstance(line.get("duration_ms"), (int, float)) and line["duration_ms"] >= 0, line


def test_failed_request_is_logged_with_its_status(http, gateway_url, platform):
    rid = f"e2e-{uuid.uuid4().hex}"
    resp = http.post(
        gateway_url + ALERTMANAGER_PATH,
        data=b"{",
        headers={"Content-Type": "application/json", "X-Request-ID": rid},
    )
    body = assert_problem(resp, 400)
    assert body["request_id"] == rid, describe(resp)
    [line] = find_request_log(platform, "gateway", rid)
    assert line.get("status") == 400, f"expected status 400 in the log line, got {line}"


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "semi;colon", "ünïcode"])
def test_invalid_request_id_is_replaced(http, gateway_url, bad):
    resp = http.get(gateway_url + "/health", headers={"X-Request-ID": bad.encode("utf-8")})
    expect_status(resp, 200)
    rid = resp.headers.get("X-Request-ID", "")
    assert HEX32.match(rid), f"expected {bad!r} to be replaced by a generated 32-hex id, got {rid!r}"


@pytest.mark.parametrize("service", ["gateway", "datastore"])
def test_every_response_has_a_request_id(http, endpoints, service):
    for path in ("/health", "/ready", "/metrics", "/missing"):
        resp = http.get(endpoints[service] + path)
        assert HEX32.match(resp.headers.get("X-Request-ID", "")), (
            f"expected a generated X-Request-ID on {path}, got {describe(resp)}"
        )


# -- CORS --------------------------------------------------------------------------


@pytest.mark.parametrize("origin", ALLOWED_ORIGINS)
def test_cors_preflight_from_allowed_origin(http, gateway_url, origin):
    resp = http.options(
        gateway_url + ALERTMANAGER_PATH,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-correlation-id",
        },
    )
    assert resp.status_code == 204, f"expected a 204 preflight answer for {origin}, got {describe(resp)}"
    h = resp.headers
    assert h.get("Access-Control-Allow-Origin") == origin, f"ACAO: expected {origin}, got {dict(h)}"
    assert "Origin" in [v.strip() for v in h.get("Vary", "").split(",")], (
        f"expected Vary: Origin, got {dict(h)}"
    )
    methods = {m.strip() for m in h.get("Access-Control-Allow-Methods", "").split(",")}
    assert "POST" in methods, f"expected POST in Access-Control-Allow-Methods, got {dict(h)}"
    allowed = {x.strip().lower() for x in h.get("Access-Control-Allow-Headers", "").split(",")}
    want = {"content-type", "x-request-id", "x-correlation-id"}
    assert want <= allowed, f"expected Access-Control-Allow-Headers to include {want}, got {dict(h)}"
    assert h.get("Access-Control-Max-Age", "").isdigit(), (
        f"expected a numeric Access-Control-Max-Age: {dict(h)}"
    )


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example.com",
        "http://dashboard.example.com",
        "https://dashboard.example.com.evil.com",
        "null",
    ],
)
def test_cors_preflight_from_denied_origin(http, gateway_url, origin):
    resp = http.options(
        gateway_url + ALERTMANAGER_PATH, headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
    )
    assert_problem(resp, 403, detail_contains=origin)
    assert "Access-Control-Allow-Origin" not in resp.headers, (
        f"a denied origin must get no Access-Control-Allow-Origin, got {dict(resp.headers)}"
    )


def test_cors_headers_on_actual_request(http, gateway_url, namespace):
    origin = ALLOWED_ORIGINS[0]
    payload = webhook(alert(unique("Cors"), namespace))
    resp = send_alerts(http, gateway_url, payload, headers={"Origin": origin})
    expect_status(resp, 201)
    assert resp.headers.get("Access-Control-Allow-Origin") == origin, (
        f"expected ACAO {origin} on a request from an allowed origin, got {dict(resp.headers)}"
    )
    assert "Origin" in resp.headers.get("Vary", ""), f"expected Vary: Origin, got {dict(resp.headers)}"

    # a denied origin is still served (the browser enforces CORS) but gets no ACAO
    resp = send_alerts(http, gateway_url, payload, headers={"Origin": "https://evil.example.com"})
    expect_status(resp, 202)
    assert "Access-Control-Allow-Origin" not in resp.headers, (
        f"no ACAO expected for a denied origin, got {dict(resp.headers)}"
    )

    # and no CORS headers at all without an Origin
    resp = http.get(gateway_url + "/health")
    assert "Access-Control-Allow-Origin" not in resp.headers, (
        f"unexpected ACAO without Origin: {dict(resp.headers)}"
    )
