"""infra.waits: every wait has a deadline and says what it waited for and saw last."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from infra import waits
from infra.waits import Fatal, Observation, WaitTimeout, poll


def test_poll_returns_the_value_when_done() -> None:
    seen = iter([Observation(False, "starting"), Observation(True, "up", 42)])
    assert poll("thing", lambda: next(seen), timeout=5, interval=0.001) == 42


def test_timeout_names_what_it_waited_for_and_the_last_thing_seen() -> None:
    calls = 0

    def probe() -> Observation[None]:
        nonlocal calls
        calls += 1
        return Observation(False, f"replicas 0 of 1 (probe {calls})")

    with pytest.raises(WaitTimeout) as info:
        poll(
            "deployment api to roll out",
            probe,
            timeout=0.05,
            interval=0.005,
            hint="kubectl describe deployment api",
        )
    err = info.value
    assert err.what == "deployment api to roll out"
    assert err.last == f"replicas 0 of 1 (probe {calls})"  # the LAST observation, not the first
    assert calls >= 2
    assert str(err) == (
        "gave up after 0.05s waiting for deployment api to roll out; "
        f"last seen: replicas 0 of 1 (probe {calls})"
        "\nnext: kubectl describe deployment api"
    )


def test_zero_timeout_probes_once() -> None:
    calls: list[int] = []

    def probe() -> Observation[None]:
        calls.append(1)
        return Observation(False, "HTTP 503 'not ready'")

    with pytest.raises(WaitTimeout, match=r"waiting for svc; last seen: HTTP 503 'not ready'$"):
        poll("svc", probe, timeout=0)
    assert calls == [1]


def test_fatal_stops_at_once() -> None:
    calls: list[int] = []

    def probe() -> Observation[None]:
        calls.append(1)
        raise Fatal("pod api-1 is ErrImageNeverPull")

    start = time.monotonic()
    with pytest.raises(Fatal, match="ErrImageNeverPull"):
        poll("api", probe, timeout=30, interval=0.5)
    assert calls == [1]
    assert time.monotonic() - start < 5


def test_cancel_ends_the_wait() -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(WaitTimeout) as info:
        poll("api", lambda: Observation(False, "pending"), timeout=30, cancel=cancel)
    assert info.value.last == "cancelled; pending"


class _Handler(http.server.BaseHTTPRequestHandler):
    codes: Iterator[int]

    def do_GET(self) -> None:
        code = next(self.codes, 200)
        body = b"ok" if code == 200 else b"not yet"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("H", (_Handler,), {"codes": iter([])})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", handler
    finally:
        srv.shutdown()
        srv.server_close()


def test_wait_http_returns_the_response(server: tuple[str, type[_Handler]]) -> None:
    url, handler = server
    handler.codes = iter([503])
    resp = waits.wait_http(url + "/ready", timeout=10)
    assert resp.status_code == 200 and resp.text == "ok"


def test_wait_http_timeout_says_the_last_answer(server: tuple[str, type[_Handler]]) -> None:
    url, handler = server
    handler.codes = iter([503] * 1000)
    with pytest.raises(WaitTimeout) as info:
        waits.wait_http(url + "/ready", timeout=0.01, what="service api")
    assert "waiting for service api; last seen: HTTP 503 'not yet'" in str(info.value)


def test_wait_http_extra_check_can_stop_the_wait(server: tuple[str, type[_Handler]]) -> None:
    url, handler = server
    handler.codes = iter([503] * 1000)

    def check() -> None:
        raise Fatal("container exited")

    with pytest.raises(Fatal, match="container exited"):
        waits.wait_http(url, timeout=30, extra_check=check)


def test_result_returns_what_the_call_returned_and_raises_what_it_raised() -> None:
    def late(value: int) -> int:
        time.sleep(3 * waits.SIGNAL_CHECK_SECONDS)  # outlasts a few of result()'s wake-ups
        return value

    def times_out() -> None:
        raise TimeoutError("the call's own")

    with ThreadPoolExecutor(max_workers=2) as pool:
        assert waits.result(pool.submit(late, 7)) == 7
        with pytest.raises(TimeoutError, match="the call's own"):
            waits.result(pool.submit(times_out))


def test_map_all_keeps_the_order_and_raises_the_first_failure() -> None:
    def square_unless_three(n: int) -> int:
        if n == 3:
            raise ValueError("three")
        return n * n

    with ThreadPoolExecutor(max_workers=3) as pool:
        assert waits.map_all(pool, square_unless_three, [4, 1, 2]) == [16, 1, 4]
        with pytest.raises(ValueError, match="three"):
            waits.map_all(pool, square_unless_three, [1, 3, 2])
