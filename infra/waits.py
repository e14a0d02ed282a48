"""Every wait has a deadline and, when it gives up, says what it saw last."""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Generic, TypeVar

from infra.proc import CANCEL as CANCEL  # one event: waits and commands stop together

T = TypeVar("T")
A = TypeVar("A")

SIGNAL_CHECK_SECONDS = 0.1
"""The main thread never blocks longer: Linux may hand a process's SIGINT to any thread, and its
Python handler runs only once the main thread runs bytecode again. (Blocking the signals in the
other threads is no way out: their children, podman and pytest, would inherit the blocked mask.)"""


class WaitTimeout(Exception):
    def __init__(self, what: str, timeout: float, last: str, hint: str = "") -> None:
        self.what, self.timeout, self.last = what, timeout, last
        msg = f"gave up after {timeout:g}s waiting for {what}; last seen: {last}"
        super().__init__(msg + (f"\nnext: {hint}" if hint else ""))


class Fatal(Exception):
    """Raised by a probe when waiting longer cannot help (e.g. ErrImageNeverPull)."""


@dataclass
class Observation(Generic[T]):
    done: bool
    seen: str
    value: T | None = None


ABANDON = threading.Event()
"""Set while the setup DAG winds down after a phase failed: the other phases' waits end at once (a
migration Job's would otherwise hold the run, and the user, for its whole deadline)."""


def poll(
    what: str,
    probe: Callable[[], Observation[T]],
    *,
    timeout: float,
    interval: float = 0.2,
    hint: str = "",
    cancel: threading.Event | None = None,
) -> T | None:
    """Call probe until it reports done; Fatal from the probe ends the wait at once."""
    deadline = time.monotonic() + timeout
    last = "nothing yet"
    cancel = cancel or CANCEL
    while True:
        obs = probe()
        last = obs.seen
        if obs.done:
            return obs.value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(what, timeout, last, hint)
        if cancel.wait(min(interval, remaining)):
            raise WaitTimeout(what, timeout, f"cancelled; {last}", hint)
        if ABANDON.is_set():
            raise WaitTimeout(what, timeout, f"abandoned: another setup phase failed; {last}", hint)


def result(fut: Future[T]) -> T:
    """fut.result() for the main thread: a Ctrl-C meanwhile is acted on at once (SIGNAL_CHECK_SECONDS)."""
    while True:
        try:
            return fut.result(timeout=SIGNAL_CHECK_SECONDS)
        except TimeoutError:
            if fut.done():  # the call itself raised TimeoutError, or it ended just now
                return fut.result()


def map_all(pool: Executor, fn: Callable[[A], T], items: Iterable[A]) -> list[T]:
    """list(pool.map(fn, items)) for the main thread: each result through result()."""
    return [result(fut) for fut in [pool.submit(fn, item) for item in items]]


@dataclass(frozen=True)
class HttpAnswer:
    status_code: int
    text: str


def http_get(url: str, timeout: float = 2.0) -> HttpAnswer:
    """One GET with the standard library (requests costs 0.1 s to import, on every run's start)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"not an http:// URL: {url!r}")
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
        resp = conn.getresponse()
        return HttpAnswer(resp.status, resp.read(1 << 16).decode(errors="replace"))
    finally:
        conn.close()


def http_probe(
    url: str, expect: int = 200, request_timeout: float = 2.0
) -> Callable[[], Observation[HttpAnswer]]:
    def probe() -> Observation[HttpAnswer]:
        try:
            answer = http_get(url, request_timeout)
        except (OSError, http.client.HTTPException) as err:
            return Observation(False, f"{type(err).__name__}: {err}"[:300])
        return Observation(
            answer.status_code == expect, f"HTTP {answer.status_code} {answer.text[:200]!r}", answer
        )

    return probe


def wait_http(
    url: str,
    *,
    timeout: float,
    expect: int = 200,
    what: str = "",
    hint: str = "",
    extra_check: Callable[[], None] | None = None,
) -> HttpAnswer:
    """GET url until it answers `expect`; extra_check may raise Fatal to stop early."""
    base = http_probe(url, expect)

    def probe() -> Observation[HttpAnswer]:
        obs = base()
        if not obs.done and extra_check is not None:
            extra_check()
        return obs

    resp = poll(what or f"{url} to answer {expect}", probe, timeout=timeout, hint=hint)
    assert resp is not None
    return resp
