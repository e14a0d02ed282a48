"""Which runs are alive: a run holds an flock for its lifetime; kept stacks leave a marker.

The lock directory is machine-wide, so cleanup in one checkout never removes a
run that is still going in another one; a killed run's lock is released by the
kernel, so its leftovers become fair game at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

LOCK_DIR = Path(os.environ.get("E2E_LOCK_DIR", Path(tempfile.gettempdir()) / "e2e-harness-runs"))


def _lock_path(run_id: str) -> Path:
    return LOCK_DIR / f"{run_id}.lock"


def hold(run_id: str) -> IO[str]:
    """Hold the run's lock until the returned file is closed (or the process dies)."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    fh = open(_lock_path(run_id), "w")  # noqa: SIM115 - held for the run's lifetime
    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


def release(fh: IO[str], run_id: str) -> None:
    fh.close()
    _lock_path(run_id).unlink(missing_ok=True)
    _images_path(run_id).unlink(missing_ok=True)


def _images_path(run_id: str) -> Path:
    return LOCK_DIR / f"{run_id}.images"


@contextlib.contextmanager
def images_lock() -> Iterator[None]:
    """Held while a run notes the images it uses and while a finishing run checks and removes its
    own: a teardown never removes a name that another run noted and tags a moment later."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOCK_DIR / "images.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def use_images(run_id: str, names: list[str]) -> None:
    """Images this live run uses that a finishing run could remove (its stand-ins): noted before the
    run checks or builds them, so no other run's teardown takes them away meanwhile."""
    with images_lock():
        _images_path(run_id).write_text("".join(f"{n}\n" for n in names))


def images_used_by_others(run_id: str) -> set[str]:
    """The images the other live runs noted."""
    used: set[str] = set()
    for path in LOCK_DIR.glob("*.images"):
        if path.stem != run_id and is_alive(path.stem):
            with contextlib.suppress(OSError):
                used.update(path.read_text().split())
    return used


def is_alive(run_id: str) -> bool:
    path = _lock_path(run_id)
    if not path.exists():
        return False
    with open(path) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False


def live_runs() -> list[str]:
    """The run IDs whose lock is held now, on this machine."""
    return sorted(p.stem for p in LOCK_DIR.glob("*.lock") if is_alive(p.stem))


def mark_kept(run_id: str, remove: str = "", elsewhere: bool = False) -> None:
    """remove: the command that removes the stack, as the run printed it (cleanup repeats it).
    elsewhere: the stack is not on this machine (a cluster's namespace): no podman or kind object of
    this machine tells whether it is still there, so podman's cleanup leaves the marker."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    (LOCK_DIR / f"{run_id}.kept").write_text(remove + ("\n" + ELSEWHERE if elsewhere else ""))


ELSEWHERE = "elsewhere"


def kept_elsewhere(run_id: str) -> bool:
    with contextlib.suppress(OSError):
        return ELSEWHERE in (LOCK_DIR / f"{run_id}.kept").read_text().splitlines()[1:]
    return False


def remove_command(run_id: str) -> str:
    """How a kept stack is removed, from any directory: what its run recorded, else `inv down`."""
    with contextlib.suppress(OSError):
        recorded = (LOCK_DIR / f"{run_id}.kept").read_text().strip().split("\n", 1)[0]
        if recorded:
            return recorded
    return f"inv down --run-id {run_id}"


def unmark_kept(run_id: str) -> None:
    (LOCK_DIR / f"{run_id}.kept").unlink(missing_ok=True)


def is_kept(run_id: str) -> bool:
    return (LOCK_DIR / f"{run_id}.kept").exists()
