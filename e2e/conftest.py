"""What only the example stack's suite needs; the harness's plugin (infra.pytest_plugin) gives
endpoints, http, platform, the run's state and the `disruptive` marker."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.pytest_plugin import Http

__all__ = ["Http"]  # the suite's own sessions (test_concurrency, test_resilience) import it from here


@pytest.fixture(scope="session")
def gateway_url(service_url) -> str:
    return service_url("gateway")


@pytest.fixture(scope="session")
def datastore_url(service_url) -> str:
    return service_url("datastore")


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    """A namespace value of this test's own, so parallel tests never share dedup state."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def correlation_id(request: pytest.FixtureRequest) -> str:
    """A correlation id of this test's own (valid: [A-Za-z0-9._-], <= 128 chars)."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", f"e2e-{request.node.name[:40]}-{uuid.uuid4().hex[:12]}")


MANIFESTS = Path(__file__).resolve().parents[1] / "manifests"


@pytest.fixture(scope="session")
def datastore_token() -> str:
    """The datastore's write token, as the Secret in manifests/datastore.yaml gives it."""
    import yaml

    docs = [d for d in yaml.safe_load_all((MANIFESTS / "datastore.yaml").read_text()) if d]
    secret = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "datastore-token")
    return str(secret["stringData"]["token"])


@pytest.fixture
def datastore_writer(datastore_token: str) -> Iterator[Http]:
    """An HTTP session that may write to the datastore directly (as the gateway does)."""
    with Http() as session:
        session.headers["Authorization"] = f"Bearer {datastore_token}"
        yield session
