"""Shared fixtures of the harness's unit tests (no podman, no network)."""

from __future__ import annotations

import contextlib
import copy
import shutil
import tomllib
from collections.abc import Callable, Iterator, Sequence
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
    """The Go the harness would run (infra/builds/gotool.py), first on PATH for the tests that run go."""
    with contextlib.suppress(gotool.GoNotFound):
        gotool.ensure([REPO / "services" / "go.mod"])


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
