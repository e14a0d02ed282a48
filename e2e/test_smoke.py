"""Smoke: the stack is up and answers through its published endpoints."""

from __future__ import annotations


def test_gateway_health(http, gateway_url):
    resp = http.get(f"{gateway_url}/health")
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "ok"


def test_gateway_ready_with_datastore(http, gateway_url):
    resp = http.get(f"{gateway_url}/ready")
    assert resp.status_code == 200, resp.text


def test_datastore_health(http, datastore_url):
    resp = http.get(f"{datastore_url}/health")
    assert resp.status_code == 200, resp.text


def test_alert_is_created(http, gateway_url, namespace):
    alert = {
        "version": "4",
        "status": "firing",
        "receiver": "e2e",
        "alerts": [{"status": "firing", "labels": {"alertname": "Smoke", "namespace": namespace}}],
    }
    resp = http.post(f"{gateway_url}/api/v1/signals/alertmanager", json=alert)
    assert resp.status_code == 201, resp.text
    assert resp.json()["signals"][0]["status"] == "created"
