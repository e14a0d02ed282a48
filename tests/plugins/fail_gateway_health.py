"""pytest plugin loaded into an E2E run by a test: makes one E2E test fail every time."""

from __future__ import annotations

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    if item.name == "test_gateway_health":
        raise AssertionError("injected failure: expected HTTP 200 from /health, got a broken gateway")
