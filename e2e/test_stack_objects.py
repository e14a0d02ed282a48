"""The stack's Kubernetes objects at work: a Secret, a migration Job, an exec probe.

The same tests pass on both platforms: on kind Kubernetes runs the objects, on
podman the harness translates them. The gateway's Secret volume (its token)
is at work in every audit test (test_audit.py), the third-party init
container and the tcpSocket probe in every run: the gateway starts after them.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from checks import assert_problem, describe, expect_status
from signals import post_json

MIGRATIONS = Path(__file__).resolve().parents[1] / "services" / "datastore" / "migrations"


def _event(correlation_id: str) -> dict[str, object]:
    return {
        "event_id": f"ev-{uuid.uuid4().hex}",
        "correlation_id": correlation_id,
        "event_type": "test.secret",
        "source": "e2e",
        "namespace": "e2e",
        "fingerprint": "f" * 64,
        "payload": {"n": 1},
    }


def test_writes_need_the_token_the_secret_gives_the_datastore(
    http, datastore_writer, datastore_url, correlation_id
):
    url = f"{datastore_url}/api/v1/events"
    assert_problem(post_json(http, url, _event(correlation_id)), 401, detail_contains="bearer token")
    wrong = {"Authorization": "Bearer not-the-secret"}
    assert_problem(http.post(url, json=_event(correlation_id), headers=wrong), 401)
    expect_status(post_json(datastore_writer, url, _event(correlation_id)), 201)


def test_reads_need_no_token(http, datastore_url, correlation_id):
    resp = http.get(f"{datastore_url}/api/v1/events", params={"correlation_id": correlation_id})
    assert expect_status(resp, 200)["count"] == 0, describe(resp)


def _migrations_checksum() -> str:
    """What the datastore computes from its embedded migrations (schema.go: wantSchema)."""
    digest = hashlib.sha256()
    for path in sorted(MIGRATIONS.glob("*.sql")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def test_the_datastore_serves_the_schema_of_the_migrations_in_this_repo(http, datastore_url):
    """The migration Job ran first (the datastore refuses to start otherwise), with this repo's files.

    A stale image (a content tag blind to embedded files) would serve another checksum.
    """
    resp = http.get(f"{datastore_url}/ready")
    expect_status(resp, 200)
    assert resp.headers.get("X-Schema-Checksum") == _migrations_checksum(), describe(resp)
