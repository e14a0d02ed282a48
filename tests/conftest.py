"""Shared fixtures of the harness's unit tests (no podman, no network), and how the tests share
a machine when `nox -s tests` runs them in parallel (`pytest -n 2 --dist loadgroup`)."""

from __future__ import annotations

import contextlib
import copy
import fcntl
import shutil
import tomllib
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from infra import config as config_mod
from infra.builds import gotool
from infra.config import Config
from infra.proc import RecordingRunner, Result, SubprocessRunner

REPO = Path(__file__).resolve().parents[1]
REPO_CONFIG = REPO / "e2e.toml"
RUN_ID = "20260101-000000-abcd"


def pytest_configure(config: pytest.Config) -> None:
    """The Go the harness would run (infra/builds/gotool.py), first on PATH for the tests that run go
    and for the harness runs they start."""
    with contextlib.suppress(gotool.GoNotFound):
        gotool.ensure([REPO / "services" / "go.mod"])
    # In an xdist worker, the harness runs these tests start inherit PYTEST_XDIST_WORKER, as they
    # would from a team's own xdist worker: left in place, so that every such run shows it is harmless.


# -- sharing the machine between xdist workers ---------------------------------------------------
# Tests that must run on one worker, one after the other: by file, or file::test-name prefix.
# (Not xdist_group marks: `--dist loadgroup` does not group them on pytest 9.2, pytest-xdist#1386.)
TOGETHER = {
    # one kind cluster of ours at a time on this machine; the module's cluster is made once
    "tests/test_kind_cluster.py": "kind",
    "tests/test_kind_faults.py": "kind",
    # every kind create removes the e2eh- clusters no live run holds: the stand-ins would go
    "tests/test_stale_clusters.py": "kind",
    # the cases share nox's e2e venv, which the first of them may still be making
    "tests/test_nox_interrupt.py": "nox",
    # a module fixture each pair shares: one harness run for both
    "tests/test_faults.py::test_crash_at_start_": "faults-crashed",
    "tests/test_faults.py::test_missing_image_": "faults-ghost",
    # the exclusive ones (below), one after the other
    "tests/test_faults.py::test_cleanup_": "cleanup",
}


def group_of(nodeid: str) -> str:
    """The unit of work a test belongs to: its TOGETHER group, else the test alone."""
    return next((group for prefix, group in TOGETHER.items() if nodeid.startswith(prefix)), nodeid)


def _real(item: pytest.Item) -> bool:
    """Starts containers, clusters, harness runs or builds: holds the gate (below) while it runs."""
    return any(item.get_closest_marker(m) for m in ("podman", "slow"))


def _order(item: pytest.Item) -> int:
    """Work is handed out in this order: the exclusive tests first, while the other worker runs
    the quick unit tests (which need no gate); then the kind tests (the longest chain, on one
    worker) and the other real tests beside them."""
    if group_of(item.nodeid) == "kind":
        return 2  # its exclusive test stays where it is, after the cluster is made
    if item.get_closest_marker("exclusive"):
        return 0
    return 1 if not _real(item) else 3


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_order)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadgroup` with the TOGETHER groups, handed out in collection order (see _order)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class Together(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    config.option.loadscopereorder = False
    return Together(config, log)


# A test marked `exclusive` runs the global `cleanup`, which removes every container labelled
# io.e2e-harness.managed whose run is neither live nor kept, such as another test's unlocked one
# (test_coverage_images_are_instrumented's), and images the tests build outside any run. So each
# real test holds a shared gate for its whole protocol, fixtures included, and an exclusive test
# holds it alone; the turnstile first, so that a waiting exclusive test lets no new shared holder in.


def _gate_dir(config: pytest.Config) -> Path | None:
    """The directory the workers of one session share (their basetemps' parent); None: no workers."""
    if not hasattr(config, "workerinput") or not config.option.basetemp:
        return None
    return Path(config.option.basetemp).parent


@contextlib.contextmanager
def _gate(directory: Path, *, exclusive: bool) -> Iterator[None]:
    with open(directory / "gate.turnstile", "a") as turnstile, open(directory / "gate", "a") as gate:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(gate, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    directory = _gate_dir(item.config)
    exclusive = item.get_closest_marker("exclusive") is not None
    if directory is None or not (exclusive or _real(item)):
        return (yield)
    with _gate(directory, exclusive=exclusive):
        return (yield)


def repo_config_data() -> dict[str, Any]:
    """The repository's e2e.toml as a plain dict (a fresh copy each call)."""
    return copy.deepcopy(tomllib.loads(REPO_CONFIG.read_text()))


@pytest.fixture
def repo_cfg() -> Config:
    return config_mod.load(REPO_CONFIG)


@pytest.fixture
def make_cfg() -> Callable[..., Config]:
    """The repo config with some sections overridden, still rooted at the repo.

    make_cfg(platform={"kind_workers": 2}, timeouts={"ready": 3})
    """

    def make(**sections: dict[str, Any]) -> Config:
        data = repo_config_data()
        for name, values in sections.items():
            data.setdefault(name, {}).update(values)
        return config_mod.parse(data, REPO_CONFIG)

    return make


def built_refs(argvs: Iterable[tuple[str, ...]]) -> list[str]:
    """The images recorded commands made: `podman build --tag REF` and `podman import TAR REF`."""
    return [a[a.index("--tag") + 1] if a[1] == "build" else a[-1]
            for a in argvs if a[:2] in (("podman", "build"), ("podman", "import"))]  # fmt: skip


def go_build_writes_binaries(argv: tuple[str, ...]) -> None:
    """A RecordingRunner responder: `go build -o` leaves its binaries, as the real one would.

    Returns None, so the call is still recorded and answered by the next responder.
    """
    if argv[:2] != ("go", "build"):
        return None
    i = argv.index("-o")
    target, mains = argv[i + 1], argv[i + 2 :]
    outputs = [Path(target) / Path(m).name for m in mains] if target.endswith("/") else [Path(target)]
    for out in outputs:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"\x7fELF")
    return None


class RealGoList:
    """A RecordingRunner whose `go list` and `go env` run for real: the plan reads the Go modules."""

    def __init__(self, recording: RecordingRunner) -> None:
        self.recording, self.real = recording, SubprocessRunner()

    def run(self, argv: Sequence[str], **kw: Any) -> Result:
        args = tuple(argv)
        if args[:2] == ("go", "list") or (args[:2] == ("go", "env") and "GOVERSION" not in args):
            return self.real.run(argv, **kw)
        return self.recording.run(argv, **kw)


@pytest.fixture(scope="session")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Isolated roots for harness runs (tests/faultkit.py); what a failed case left is swept at the end."""
    from tests.faultkit import RootFactory

    for tool in ("podman", "go"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not on PATH")
    factory = RootFactory(tmp_path_factory.mktemp("roots"))
    yield factory
    factory.sweep()
