"""Ctrl-C under `nox -s e2e`, for real: to the process group, or a signal to nox alone.

nox answers an interrupt by sending its child SIGTERM, then SIGKILL; the
noxfile gives the harness time to tear down, and turns a SIGTERM to nox into
the same interrupt. Each way ends with nox's exit 130 and nothing of the run
left: no container, network, run dir, lock, nor a pytest still running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from infra import waits
from infra.cleanup import runlock
from tests.faultkit import REPO, RootFactory, harness_env, run_id_in

pytestmark = [pytest.mark.podman, pytest.mark.slow]


@pytest.mark.parametrize(
    ("target", "sig"),
    [("group", signal.SIGINT), ("nox", signal.SIGINT), ("nox", signal.SIGTERM)],
    ids=["ctrl-c-to-the-group", "sigint-to-nox-alone", "sigterm-to-nox-alone"],
)
def test_an_interrupt_under_nox_tears_the_stack_down(
    roots: RootFactory, target: str, sig: signal.Signals
) -> None:
    root = roots.make(f"nox-{target}-{sig.name.lower()}")
    started_marker, release = root.add_blocking_suite()
    log = root.path / "nox.out"
    argv = [sys.executable, "-m", "nox", "-f", str(REPO / "noxfile.py"), "-s", "e2e", "--",
            "--config", str(root.cfg), "--platform", "podman", "--", "-n", "0"]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(argv, cwd=REPO, env=harness_env(), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip  # its own group, like a terminal's
    try:

        def suite_started() -> waits.Observation[None]:
            assert proc.poll() is None, f"nox exited early:\n{log.read_text()}"
            return waits.Observation(started_marker.exists(), log.read_text()[-300:])

        waits.poll("the E2E suite to start under nox", suite_started, timeout=300)
        if target == "group":
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        code = proc.wait(timeout=180)
    finally:
        release.touch()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = log.read_text()
    run_id = run_id_in(output) or ""
    assert code == 130, output
    assert "tearing down what this run created" in output, output
    assert root.leftovers(run_id) == [], output
    assert not runlock.is_alive(run_id) and not (runlock.LOCK_DIR / f"{run_id}.lock").exists()
    stray = subprocess.run(["pgrep", "-f", str(started_marker.parent)], capture_output=True, text=True)
    assert stray.stdout.strip() == "", f"processes of the run still alive: {stray.stdout}"
