"""pytest plugin: the harness's fixtures for any E2E suite, with no conftest of its own.

The harness loads it into every suite it runs (`-p infra.pytest_plugin`); once
the harness is installed (`pip install -e .`) its pytest11 entry point loads
it into every pytest, so `pytest` alone tests the stack `inv up` kept.

Fixtures (all read the run-state file: $E2E_STATE_FILE, else the newest
`.e2e/latest-state` at or above the directory pytest was started in):

    e2e_state      the run's RunState (run_id, platform, endpoints, config path)
    endpoints      {service name: "http://127.0.0.1:PORT"}
    service_url    service_url("api") -> that base URL (an unknown name lists the known ones)
    http           a requests.Session: timeout on every request, retries when a connection fails
    platform       restart / stop / start / scale / logs of a service
    run_namespace  the run's Kubernetes namespace (kind; "" on podman)
    run_id         the run's id

Marker: the config's `tests.serial_marker` (default `disruptive`): such tests run
after the rest, in one worker.

This package holds the plugins the harness loads into the suite it runs: this
module (the fixtures, kept at its public name `infra.pytest_plugin`) and
pytest_results (every test's outcomes as JSON lines). May import: the core
(infra/*.py) and infra.platforms.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from infra import state as run_state
from infra import waits
from infra.paths import latest_state_pointer
from infra.suite_env import HARNESS_PID_ENV, SERIAL_ENV, START_DEADLINE_ENV, START_GATE_ENV

if TYPE_CHECKING:  # kept light: pytest loads this plugin into every suite of the venv
    from infra.platforms.platform import Platform

__all__ = ["SERIAL_ENV", "Http", "Services"]
DEFAULT_SERIAL_MARKER = "disruptive"
REQUEST_TIMEOUT = 10.0
CONNECT_RETRIES = 3  # a connection refused while a service restarts; never a request the server saw


class Http(requests.Session):
    """A session whose every request has a timeout and whose failed connections are retried."""

    def __init__(self, timeout: float = REQUEST_TIMEOUT) -> None:
        super().__init__()
        self.timeout = timeout
        retry = Retry(total=None, connect=CONNECT_RETRIES, read=0, status=0, other=0, backoff_factor=0.2)
        adapter = HTTPAdapter(max_retries=retry)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


class Services:
    """The platform handle of the running stack, by service name."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def restart(self, service: str) -> None:
        """Restart and return once the service answers again."""
        self.platform.restart(service)

    def stop(self, service: str) -> None:
        """Stop gracefully (SIGTERM, the grace period) and return once it is gone."""
        self.platform.stop(service)

    def start(self, service: str) -> None:
        """Start a stopped service and return once it answers."""
        self.platform.start(service)

    def scale(self, service: str, replicas: int) -> None:
        """0 stops the service, 1 starts it; both platforms run one replica per workload."""
        if replicas not in (0, 1):
            raise ValueError(
                f"scale({service!r}, {replicas}): the harness scales a service to 0 or 1 "
                "(the podman platform runs one replica); use stop/start"
            )
        (self.start if replicas else self.stop)(service)

    def logs(self, service: str) -> str:
        """Everything the service logged in this run, restarts included."""
        return self.platform.logs(service)

    @property
    def name(self) -> str:
        return self.platform.name


def find_state_file(start: Path) -> Path | None:
    """$E2E_STATE_FILE, else the newest stack recorded at or above `start`."""
    if os.environ.get(run_state.STATE_ENV):
        return Path(os.environ[run_state.STATE_ENV])
    for directory in (start, *start.parents):
        pointer = latest_state_pointer(directory)
        if pointer.exists():
            return pointer
    return None


def serial_marker(start: Path) -> str:
    """The config's tests.serial_marker: set by the harness, else read from the kept stack's config."""
    if os.environ.get(SERIAL_ENV):
        return os.environ[SERIAL_ENV]
    try:
        found = find_state_file(start)
        data = run_state.load(found).data if found else {}
        with open(data["config"], "rb") as fh:
            return str(tomllib.load(fh).get("tests", {}).get("serial_marker", DEFAULT_SERIAL_MARKER))
    except (OSError, KeyError, ValueError, run_state.NoState):
        return DEFAULT_SERIAL_MARKER


def pytest_configure(config: pytest.Config) -> None:
    marker = serial_marker(config.invocation_params.dir)
    config.addinivalue_line("markers", f"{marker}: restarts or stops a service; runs serially after the rest")
    harness = os.environ.get(HARNESS_PID_ENV, "")
    if harness.isdigit() and not hasattr(config, "workerinput"):  # its xdist workers end with it
        _end_with(int(harness))


def _end_with(harness: int) -> None:
    """A killed harness tears nothing down: the suite's pytest it started (collecting, waiting for
    its word, or running tests) ends itself within a tenth of a second."""
    if os.getppid() != harness:
        if _alive(harness):
            return  # a pytest a test started: its parent is not the harness
        _gone(harness)  # killed while this pytest was starting up

    def watch() -> None:
        while os.getppid() == harness:
            time.sleep(0.1)
        _gone(harness)

    threading.Thread(target=watch, name="harness-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # PermissionError: alive, another user's
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _gone(harness: int) -> None:
    with contextlib.suppress(OSError):  # the output went to the harness: a broken pipe now
        sys.stderr.write(f"the harness (pid {harness}) that started this pytest is gone: ending it\n")
    os._exit(pytest.ExitCode.INTERRUPTED)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """Started by the harness while setup was under way: collected, now wait for its word."""
    gate = os.environ.get(START_GATE_ENV)
    if gate and not hasattr(session.config, "workerinput"):  # xdist workers wait for their controller
        verdict = wait_for_start(Path(gate), float(os.environ.get(START_DEADLINE_ENV) or 1800))
        if verdict != "go":
            pytest.exit(f"no test ran: {verdict}", returncode=pytest.ExitCode.INTERRUPTED)
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and hasattr(reporter, "_session_start"):
            # "N passed in Xs" is the tests' time, not the setup's it waited through (pytest >= 8.4)
            reporter._session_start = type(reporter._session_start)()


def wait_for_start(gate: Path, timeout: float) -> str:
    """The gate file's word ("go", or why the tests will not run); a gone harness: see _end_with."""

    def probe() -> waits.Observation[str]:
        if gate.exists():
            return waits.Observation(True, "written", gate.read_text().strip())
        return waits.Observation(False, f"{gate} not written yet: setup still under way")

    try:
        return waits.poll("the harness to finish setup", probe, timeout=timeout, interval=0.02) or ""
    except waits.WaitTimeout as err:
        return str(err)


@pytest.fixture(scope="session")
def e2e_state(pytestconfig: pytest.Config) -> run_state.RunState:
    found = find_state_file(pytestconfig.invocation_params.dir)
    try:
        return run_state.load(found or latest_state_pointer(pytestconfig.invocation_params.dir))
    except run_state.NoState as err:
        pytest.exit(str(err), returncode=4)


@pytest.fixture(scope="session")
def endpoints(e2e_state: run_state.RunState) -> dict[str, str]:
    return e2e_state.endpoints


@pytest.fixture(scope="session")
def service_url(endpoints: dict[str, str]) -> Callable[[str], str]:
    def url(service: str) -> str:
        if service not in endpoints:
            known = ", ".join(sorted(endpoints)) or "none (no service has a node_port)"
            raise KeyError(f"no endpoint for service {service!r}; the run has: {known}")
        return endpoints[service]

    return url


@pytest.fixture
def http() -> Iterator[Http]:
    with Http() as session:
        yield session


@pytest.fixture(scope="session")
def platform(e2e_state: run_state.RunState) -> Services:
    from infra.platforms.stack import platform_from_state  # the kubernetes client only when a test asks

    return Services(platform_from_state(e2e_state))


@pytest.fixture(scope="session")
def run_namespace(e2e_state: run_state.RunState) -> str:
    return str(e2e_state.data.get("namespace") or "")


@pytest.fixture(scope="session")
def run_id(e2e_state: run_state.RunState) -> str:
    return e2e_state.run_id
