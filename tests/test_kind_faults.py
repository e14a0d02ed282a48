"""Faults on a real kind cluster: interrupted while the cluster is made and while tests run.

Each ends with exit 130, the cluster of the run deleted, its kubeconfig and run
dir gone, and nothing labelled with the run left (faultkit's leak check covers
kind nodes). The image and readiness faults are in test_kind_cluster.py.
"""

from __future__ import annotations

import shutil
import signal
import time

import pytest

from infra.nodeimage import select
from infra.podman_cli import Podman, podman_env
from infra.proc import SubprocessRunner
from tests.faultkit import REPO, RootFactory, Started

EXIT_INTERRUPTED = 130


def _node_image() -> str:
    if shutil.which("kind") is None or shutil.which("podman") is None:
        return ""
    return select.available(Podman(SubprocessRunner(), podman_env(REPO / ".e2e")), "")


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not _node_image(), reason="kind or a node image missing (`nox -s node_image`)"),
]


def test_interrupt_while_the_cluster_is_made(roots: RootFactory) -> None:
    root = roots.make("kind-int-create")
    run = root.start("e2e", "--platform", "kind", "--", "-k", "smoke")
    try:
        run.wait_for_output(r"> cluster$")
        run.wait_until("a node container of the run's cluster", lambda: bool(root.kind_nodes(run.run_id)))
        sent = run.signal(signal.SIGINT)
        out = run.wait(timeout=180)
        after = time.monotonic() - sent
    finally:
        run.kill()
    assert out.code == EXIT_INTERRUPTED, str(out)
    assert "interrupted (SIGINT): tearing down what this run created" in out.output, str(out)
    assert "CommandCancelled" in (out.artifacts / "run.log").read_text()  # kind create was stopped
    assert after < 60, f"stopped {after:.0f}s after SIGINT: `kind create` was not stopped at once"
    assert root.leftovers(out.run_id) == [], str(out)


def test_sigterm_while_the_suite_runs_on_kind(roots: RootFactory) -> None:
    root = roots.make("kind-int-tests")

    def on_kind(run: Started) -> None:
        assert root.kind_nodes(run.run_id), run.output()

    out = root.interrupt_suite("kind", signal.SIGTERM, check=on_kind, start_timeout=240)
    assert out.code == EXIT_INTERRUPTED, str(out)
    assert "INTERRUPTED" in (out.artifacts / "summary.md").read_text()
    assert (out.artifacts / "diagnostics" / "kind" / "pods.json").is_file()  # written before the delete
    assert root.leftovers(out.run_id) == [], str(out)
