"""Fixtures for the E2E suite, all from the harness's run-state file.

`nox -s e2e` sets E2E_STATE_FILE; `pytest e2e/` alone uses the newest stack
that `inv up` (or --keep) left running.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infra import state as run_state
from infra.platform import Platform
from infra.stack import platform_from_state

REQUEST_TIMEOUT = 10


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "disruptive: restarts or stops a service; runs serially after the rest"
    )


@pytest.fixture(scope="session")
def stack_state() -> run_state.RunState:
    try:
        return run_state.load(root=Path(__file__).resolve().parents[1])
    except run_state.NoState as err:
        pytest.exit(str(err), returncode=4)


@pytest.fixture(scope="session")
def endpoints(stack_state: run_state.RunState) -> dict[str, str]:
    return stack_state.endpoints


@pytest.fixture(scope="session")
def gateway_url(endpoints: dict[str, str]) -> str:
    return endpoints["gateway"]


@pytest.fixture(scope="session")
def datastore_url(endpoints: dict[str, str]) -> str:
    return endpoints["datastore"]


@pytest.fixture(scope="session")
def platform(stack_state: run_state.RunState) -> Platform:
    """The platform handle: restart, stop, start and logs of a service."""
    return platform_from_state(stack_state)


class Http(requests.Session):
    """A session whose every request has a timeout."""

    def request(self, method: str | bytes, url: str | bytes, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        kwargs.setdefault("timeout", REQUEST_TIMEOUT)
        return super().request(method, url, *args, **kwargs)


@pytest.fixture
def http() -> Iterator[Http]:
    with Http() as session:
        yield session


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
