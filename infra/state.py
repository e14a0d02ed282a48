"""The run-state file: what E2E fixtures and `inv down` need to find a stack."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.paths import RunPaths, latest_state_pointer, point_latest

STATE_ENV = "E2E_STATE_FILE"


class NoState(Exception):
    pass


@dataclass(frozen=True)
class RunState:
    data: dict[str, Any]
    path: Path

    @property
    def run_id(self) -> str:
        return str(self.data["run_id"])

    @property
    def platform(self) -> str:
        return str(self.data["platform"])

    @property
    def endpoints(self) -> dict[str, str]:
        return dict(self.data["endpoints"])


def write(paths: RunPaths, data: dict[str, Any], *, latest: bool = True) -> Path:
    """Whole or absent for a reader; latest: the stack a bare `pytest` under root finds from now on."""
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    tmp = paths.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, paths.state_file)
    if latest:
        point_latest(latest_state_pointer(paths.root), paths.state_file)
    return paths.state_file


def load(path: Path | str | None = None, root: Path | None = None) -> RunState:
    """Explicit path, else $E2E_STATE_FILE, else the newest run under root."""
    chosen = Path(path) if path else None
    if chosen is None and os.environ.get(STATE_ENV):
        chosen = Path(os.environ[STATE_ENV])
    if chosen is None:
        chosen = latest_state_pointer(root or Path.cwd())
    if not chosen.exists():
        raise NoState(
            f"no run-state file at {chosen}: no stack is up; next: `inv up` "
            "(or `nox -s e2e`), or set E2E_STATE_FILE"
        )
    return RunState(json.loads(chosen.read_text()), chosen.resolve())
