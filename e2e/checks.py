"""Waiting, describing responses, RFC 7807 checks and Prometheus parsing."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeVar, cast

import requests

from infra import waits

T = TypeVar("T")

HEX64 = re.compile(r"^[0-9a-f]{64}$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")


# -- describing what came back -------------------------------------------------


def describe(resp: requests.Response, limit: int = 2000) -> str:
    """One line for an assertion message: method, url, status, content type, body."""
    body = resp.text
    if len(body) > limit:
        body = body[:limit] + f"... ({len(resp.text)} chars)"
    req = resp.request
    return (
        f"{req.method} {req.path_url} -> HTTP {resp.status_code} "
        f"(Content-Type: {resp.headers.get('Content-Type')!r}) body: {body.strip()}"
    )


def json_body(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError as err:
        raise AssertionError(f"expected a JSON body, got {describe(resp)}") from err


def expect_status(resp: requests.Response, status: int) -> Any:
    """Assert the status; return the parsed JSON body (or None when empty)."""
    assert resp.status_code == status, f"expected HTTP {status}, got {describe(resp)}"
    return json_body(resp) if resp.content else None


def assert_problem(resp: requests.Response, status: int, *, detail_contains: str | None = None) -> dict:
    """RFC 7807: status, application/problem+json, the standard members, matching ids."""
    assert resp.status_code == status, f"expected HTTP {status} problem, got {describe(resp)}"
    ctype = resp.headers.get("Content-Type", "")
    assert ctype.split(";")[0].strip() == "application/problem+json", (
        f"expected Content-Type application/problem+json, got {describe(resp)}"
    )
    body = json_body(resp)
    assert isinstance(body, dict), f"expected a JSON object, got {describe(resp)}"
    missing = [k for k in ("type", "title", "status", "detail", "instance") if k not in body]
    assert not missing, f"problem body lacks {missing}: {describe(resp)}"
    assert body["status"] == status, (
        f"problem status field {body['status']!r} != HTTP {status}: {describe(resp)}"
    )
    assert body["type"] == "about:blank", f"expected type about:blank, got {describe(resp)}"
    assert isinstance(body["title"], str) and body["title"], f"expected a title, got {describe(resp)}"
    assert body["instance"] == resp.request.path_url.split("?")[0], (
        f"expected instance {resp.request.path_url!r}, got {describe(resp)}"
    )
    rid = resp.headers.get("X-Request-ID")
    assert rid and body.get("request_id") == rid, (
        f"expected request_id to equal the X-Request-ID header {rid!r}, got {describe(resp)}"
    )
    if detail_contains is not None:
        assert detail_contains in body["detail"], (
            f"expected detail to contain {detail_contains!r}, got {describe(resp)}"
        )
    return body


# -- waiting -------------------------------------------------------------------


class WaitTimeout(AssertionError):
    """An expired wait is a test failure, not an error."""


def wait_for(
    fetch: Callable[[], T],
    until: Callable[[T], bool],
    *,
    what: str,
    timeout: float = 15.0,
    interval: float = 0.2,
    show: Callable[[T], str] = repr,
) -> T:
    """Call fetch until until(value) holds; return that value.

    The harness's own deadline poll (infra.waits): on expiry it says what was
    awaited, for how long, and the last value seen or the last error fetch raised.
    """

    def probe() -> waits.Observation[T]:
        try:
            value = fetch()
        except (requests.RequestException, ValueError) as err:
            return waits.Observation(False, f"error {err!r}")
        return waits.Observation(until(value), show(value), value)

    try:
        return cast(T, waits.poll(what, probe, timeout=timeout, interval=interval))
    except waits.WaitTimeout as err:
        raise WaitTimeout(str(err)) from None


def wait_for_response(
    fetch: Callable[[], requests.Response],
    until: Callable[[requests.Response], bool],
    *,
    what: str,
    timeout: float = 15.0,
    interval: float = 0.2,
) -> requests.Response:
    return wait_for(fetch, until, what=what, timeout=timeout, interval=interval, show=describe)


def ready(http: requests.Session, url: str, timeout: float = 30) -> requests.Response:
    """Wait for a service's /ready to answer 200 (the datastore's: its database answers)."""
    return wait_for_response(
        lambda: http.get(url + "/ready"),
        lambda r: r.status_code == 200,
        what=f"{url}/ready to answer 200",
        timeout=timeout,
    )


# -- audit events ----------------------------------------------------------------


def audit_events(http: requests.Session, datastore_url: str, correlation_id: str) -> requests.Response:
    return http.get(f"{datastore_url}/api/v1/events", params={"correlation_id": correlation_id})


def wait_for_audit(
    http: requests.Session, datastore_url: str, correlation_id: str, count: int, *, timeout: float = 15.0
) -> list[dict]:
    """Wait until the datastore holds at least count events for the id; assert exactly count."""
    resp = wait_for_response(
        lambda: audit_events(http, datastore_url, correlation_id),
        lambda r: r.status_code == 200 and r.json().get("count", 0) >= count,
        what=f"{count} audit event(s) with correlation_id={correlation_id} in the datastore",
        timeout=timeout,
    )
    body = resp.json()
    assert body["correlation_id"] == correlation_id, f"wrong correlation_id in {describe(resp)}"
    assert body["count"] == len(body["events"]), f"count != len(events): {describe(resp)}"
    assert body["count"] == count, f"expected exactly {count} audit events, got {describe(resp)}"
    return body["events"]


# -- Prometheus text format --------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Metrics:
    """Parsed exposition: samples keyed by (name, sorted label pairs), plus HELP/TYPE."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.types: dict[str, str] = {}
        self.helps: dict[str, str] = {}
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            if line.startswith("# HELP "):
                name, _, help_ = line[7:].partition(" ")
                self.helps[name] = help_
                continue
            if line.startswith("# TYPE "):
                name, _, kind = line[7:].partition(" ")
                self.types[name] = kind.strip()
                continue
            if line.startswith("#"):
                continue
            m = _SAMPLE.match(line)
            if not m:
                raise AssertionError(f"line {n} of /metrics is not a Prometheus sample: {line!r}")
            name, labels, value = m.groups()
            pairs = tuple(sorted(_LABEL.findall(labels or "")))
            self.samples[(name, pairs)] = float(value)

    def get(self, name: str, **labels: str) -> float:
        """The sample's value; 0 when the series does not exist (yet)."""
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def has(self, name: str, **labels: str) -> bool:
        return (name, tuple(sorted(labels.items()))) in self.samples

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}


def scrape(http: requests.Session, base_url: str) -> Metrics:
    resp = http.get(f"{base_url}/metrics")
    assert resp.status_code == 200, f"expected /metrics 200, got {describe(resp)}"
    return Metrics(resp.text)


# -- logs ----------------------------------------------------------------------------


def json_log_lines(text: str) -> tuple[list[dict], list[str]]:
    """(parsed JSON objects, lines that are not JSON objects)."""
    good, bad = [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        (good if isinstance(obj, dict) else bad).append(obj if isinstance(obj, dict) else line)
    return good, bad
