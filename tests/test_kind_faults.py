"""Faults on a real kind cluster: interrupted while the cluster is made and while tests run.

Each ends with exit 130, the cluster of the run deleted, its kubeconfig and run
dir gone, and nothing labelled with the run left (faultkit's leak check covers
kind nodes). The image and readiness faults are in test_kind_cluster.py.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import time
from pathlib import Path

import pytest

from infra.nodeimage import select
from infra.podman_cli import Podman, podman_env
from infra.proc import SubprocessRunner
from tests.faultkit import REPO, RootFactory, Started, free_listening_socket

EXIT_INTERRUPTED = 130


def _node_image() -> str:
    if shutil.which("kind") is None or shutil.which("podman") is None:
        return ""
    return select.available(Podman(SubprocessRunner(), podman_env(REPO / ".e2e")), "")


pytestmark = [
    pytest.mark.slow,
    pytest.mark.kind,
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


def test_a_repo_without_a_kind_config_runs_on_the_harnesss_and_says_so(roots: RootFactory) -> None:
    """No kind/cluster.yaml beside e2e.toml: the run takes the harness's own and says so first. (A busy
    port ends it at preflight, before any cluster: the base config's use is unit-tested, and the module
    cluster of test_kind_cluster.py is made from that same file.)"""
    root = roots.make("kind-no-config")
    del root.data["platform"]["kind_config"]
    sock = free_listening_socket()
    try:
        root.service("gateway", host_port=sock.getsockname()[1])
        out = root.harness("e2e", "--platform", "kind", "--", "-k", "smoke", timeout=120)
    finally:
        sock.close()

    assert out.code == 4, str(out)
    assert f"kind config: {REPO}/kind/cluster.yaml (the harness's own: no {root.path}/kind/cluster.yaml" in (
        out.output
    ), str(out)
    assert "phase 'preflight' failed" in out.output, str(out)
    result = json.loads((out.artifacts / "result.json").read_text())
    assert result["category"] == "infrastructure failure", result
    assert root.leftovers(out.run_id) == [], str(out)


def one_node(repo: Path) -> None:
    """What init wrote, on one kind node (the default adds a worker): the test's time, not its point."""
    toml = repo / "e2e.toml"
    text = toml.read_text()
    assert "\n[platform]\n" in text, text
    toml.write_text(text.replace("\n[platform]\n", "\n[platform]\nkind_workers = 0\n", 1))


def test_init_on_a_real_shaped_repo_then_e2e_passes_on_kind_from_the_overlay_and_the_chart(
    roots: RootFactory,
) -> None:
    """For real on kind: `inv init` writes the config (layout from the Dockerfile, a NodePort Service),
    and the run passes with no file edited by hand: the kustomize repo on a cluster it makes and keeps,
    then the chart repo on that cluster (`--reuse`), then `down` removes it."""
    from tests.test_init_real_repo import e2e, init, make_repo, redis_at_hand

    root = roots.make("kind-init")
    overlay, chart = make_repo(root.path / "overlay"), make_repo(root.path / "chart")
    shutil.rmtree(chart / "deploy" / "base")
    shutil.rmtree(chart / "deploy" / "overlays")
    kept = ""
    try:
        with redis_at_hand(overlay):  # `docker.io/redis:<tag>`: the node stores docker.io/library/redis
            init(overlay)
            one_node(overlay)
            first = e2e(overlay, "kind", "--keep")
        assert first.returncode == 0, first.stdout + first.stderr
        assert "- result: passed: 1 passed" in first.stdout, first.stdout
        kept = re.search(r"^run (\S+): artifacts in ", first.stdout, re.MULTILINE).group(1)  # type: ignore[union-attr]
        root.run_ids.add(kept)
        with redis_at_hand(chart):
            init(chart)
            one_node(chart)
            second = e2e(chart, "kind", "--reuse", f"e2eh-{kept}")
        assert second.returncode == 0, second.stdout + second.stderr
        assert "- result: passed: 1 passed" in second.stdout, second.stdout
    finally:
        if kept:
            down = root.harness("--config", str(overlay / "e2e.toml"), "down", "--run-id", kept)
            assert down.code == 0, str(down)
    assert root.kind_nodes(kept) == []
