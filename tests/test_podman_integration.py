"""The image pipeline, a whole run and coverage, for real on podman and Go."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import requests

from infra import config, state
from infra.builds import build, image_tasks
from infra.cleanup import runlock
from infra.gocover import gocoverage
from infra.images import ImageRef
from infra.platforms import manifests
from infra.platforms.stack import platform_from_state
from infra.podman_cli import Podman, podman_env
from infra.proc import SubprocessRunner
from infra.run.run import Options, Run
from tests.faultkit import dump_toml, isolated_config

pytestmark = [pytest.mark.podman, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 600


def podman(*args: str, root: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **podman_env(root / ".e2e")}
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def harness(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


@pytest.fixture
def isolated(tmp_path: Path) -> Path:
    """A team's own config in its own root: absolute paths to this repo's stack."""
    data = isolated_config(tmp_path)
    data["manifests"] = [str(REPO / m) for m in tomllib.loads((REPO / "e2e.toml").read_text())["manifests"]]
    cfg = tmp_path / "e2e.toml"
    cfg.write_text(dump_toml(data))
    return cfg


def e2e(cfg: Path, *args: str, expect: int = 0) -> tuple[str, str]:
    """Run the harness on podman with this config; return its output and run id."""
    out = harness("--config", str(cfg), "e2e", "--platform", "podman", *args)
    text = out.stdout + out.stderr
    assert out.returncode == expect, text[-3000:]
    return text, run_id_from(text)


def leftovers(run_id: str) -> list[str]:
    ctrs = podman("ps", "--all", "--quiet", "--filter", f"label=io.e2e-harness.run={run_id}").stdout.split()
    nets = podman("network", "ls", "--quiet", "--filter", f"label=io.e2e-harness.run={run_id}").stdout.split()
    return ctrs + nets


def run_id_from(output: str) -> str:
    match = re.search(r"^run (\S+): artifacts in", output, re.MULTILINE)
    assert match, f"no run id in the output:\n{output[-2000:]}"
    return match.group(1)


def test_images_archive_holds_the_localhost_refs_the_manifests_use(tmp_path: Path) -> None:
    archive = tmp_path / "images.tar"
    first = harness("images", "--output", str(archive))
    assert first.returncode == 0, first.stdout + first.stderr
    tags = image_tasks.archive_repotags(archive)
    cfg = config.load(REPO / "e2e.toml")
    plan = build.plan_images(
        cfg, coverage=False, toolchain=build.go_version(SubprocessRunner()), runner=SubprocessRunner()
    )
    assert sorted(tags) == sorted(str(r) for r in plan.all())
    assert all(t.startswith("localhost/e2e-harness/") for t in tags), tags
    rendered = manifests.render(cfg, manifests.load_docs(cfg), plan, coverage=False)
    built = sorted(r for r in rendered.image_refs() if ImageRef.foreign(r) not in rendered.foreign)
    assert built == sorted(tags)  # what pods reference is what was saved

    again = harness("images", "--output", str(archive))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "rebuilt nothing: all 2 image(s) are up to date" in again.stdout
    assert not [ln for ln in again.stdout.splitlines() if ln.endswith(" built")], again.stdout


def test_coverage_images_are_instrumented(tmp_path: Path) -> None:
    out = harness("build-image", "gateway", "--coverage")
    assert out.returncode == 0, out.stdout + out.stderr
    ref = re.search(r"gateway: (\S+) ", out.stdout).group(1)  # type: ignore[union-attr]
    assert ":cov-" in ref
    cov = tmp_path / "cov"
    cov.mkdir(mode=0o777)
    cov.chmod(0o777)
    name = f"e2eh-test-cover-{tmp_path.name[-8:]}".lower().replace("_", "-")
    started = podman(
        "run",
        "-d",
        "--name",
        name,
        "--label",
        "io.e2e-harness.managed=true",
        "-e",
        "GOCOVERDIR=/cov",
        "-e",
        "DATASTORE_URL=http://127.0.0.1:9",
        "-v",
        f"{cov}:/cov",
        "-p",
        "127.0.0.1::8080",
        ref,
    )
    try:
        assert started.returncode == 0, started.stderr
        port = podman("port", name, "8080/tcp").stdout.strip().rsplit(":", 1)[1]
        with requests.Session() as s:
            from infra.waits import wait_http

            wait_http(f"http://127.0.0.1:{port}/health", timeout=30)
            s.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        stopped = podman("stop", "--time", "15", name)
        assert stopped.returncode == 0, stopped.stderr
        assert podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "0"
    finally:
        podman("rm", "--force", name)
    assert list(cov.glob("covmeta.*")), "no covmeta: binary not built with -cover"
    assert list(cov.glob("covcounters.*")), "no covcounters: counters not flushed on SIGTERM"


def test_e2e_run_passes_writes_artifacts_and_leaves_nothing(isolated: Path) -> None:
    text, run_id = e2e(isolated, "--", "-k", "smoke or ingest")
    assert "platform: podman (requested with --platform)" in text
    artifacts = isolated.parent / "artifacts" / run_id
    timings = json.loads((artifacts / "timings.json").read_text())
    assert {"run_id", "platform", "mode", "phases", "total_seconds"} <= set(timings)
    assert timings["run_id"] == run_id and timings["platform"] == "podman" and timings["mode"] == "parallel"
    names = [p["name"] for p in timings["phases"]]
    for phase in (
        "preflight",
        "cluster",
        "build:gateway",
        "deploy:datastore",
        "ready:gateway",
        "tests",
        "teardown",
    ):
        assert phase in names, names
    starts = {p["name"]: p["start"] for p in timings["phases"]}
    ends = {p["name"]: p["end"] for p in timings["phases"]}
    assert starts["deploy:gateway"] >= ends["ready:datastore"]  # the gateway waits for its dependency
    junit = (artifacts / "junit.xml").read_text()
    assert "<testsuites" in junit and "test_alert_is_created" in junit
    assert "passed" in (artifacts / "summary.md").read_text()
    assert (isolated.parent / "artifacts" / "latest").resolve() == artifacts.resolve()
    assert leftovers(run_id) == []
    assert not list((isolated.parent / ".e2e" / "archives").glob("*.tar"))
    assert not (isolated.parent / ".e2e" / "runs" / run_id).exists()


def test_a_failing_test_is_reported_and_sets_the_exit_code(isolated: Path) -> None:
    """Reruns: a test failing twice is 'failed'; the summary says so and the exit code is pytest's."""
    _, run_id = e2e(
        isolated, "--", "-k", "test_gateway_health", "-p", "tests.plugins.fail_gateway_health", expect=1
    )
    summary = (isolated.parent / "artifacts" / run_id / "summary.md").read_text()
    assert "**failed** (failed twice)" in summary and "test_gateway_health" in summary
    assert "INFRASTRUCTURE" not in summary


def test_sigkilled_service_is_named_when_collecting_coverage(isolated: Path) -> None:
    cfg = config.load(isolated)
    run = Run(cfg, Options(config=str(isolated), platform="podman", coverage=True, then="keep"))
    assert run.execute() == 0
    plat = platform_from_state(state.load(run.paths.state_file))
    try:
        gateway = plat.state()["containers"]["gateway"][0]  # type: ignore[index]
        assert podman("kill", "--signal", "KILL", gateway).returncode == 0
        with pytest.raises(gocoverage.CoverageError) as err:
            gocoverage.collect_run(plat, SubprocessRunner())
        msg = str(err.value)
        assert "service 'gateway' wrote no coverage counters" in msg
        assert "killed instead of stopped" in msg
        assert "'datastore'" not in msg  # the gracefully stopped one is fine
    finally:
        plat.teardown()
        runlock.unmark_kept(run.paths.run_id)
    assert leftovers(run.paths.run_id) == []


def test_e2e_coverage_reports_cover_the_gateway_handlers(isolated: Path) -> None:
    text, run_id = e2e(isolated, "--coverage", "--", "-k", "smoke or ingest or validation")
    cov = isolated.parent / "coverage" / "e2e"
    for where in (cov, cov / run_id):
        for name in ("coverage.txt", "func.txt", "index.html", "summary.json", "gateway.percent.txt"):
            assert (where / name).exists(), where / name
    summary = json.loads((cov / run_id / "summary.json").read_text())
    assert summary["run_id"] == run_id
    assert summary["services"]["gateway"]["percent"] > 0 and summary["services"]["datastore"]["percent"] > 0
    assert 0 < summary["total_percent"] <= summary["merged_percent"]
    assert summary["unit_percent"] > 0
    func = (cov / run_id / "func.txt").read_text()
    handler = [ln for ln in func.splitlines() if "gateway/handlers.go" in ln]
    assert handler and any(not ln.rstrip().endswith("0.0%") for ln in handler), handler
    assert "Go coverage (statements):" in text
    assert leftovers(run_id) == []


# -- coverage flushed on a signal (issue 15) --------------------------------------------------


def _kept_stack(cfg_file: Path) -> tuple[Run, Any]:
    run = Run(
        config.load(cfg_file), Options(config=str(cfg_file), platform="podman", coverage=True, then="keep")
    )
    assert run.execute() == 0
    return run, platform_from_state(state.load(run.paths.state_file))


def _remove(run: Run, plat: Any) -> None:
    plat.teardown()
    runlock.unmark_kept(run.paths.run_id)
    assert leftovers(run.paths.run_id) == []


def _func_percent(func_txt: Path, suffix: str) -> float:
    """The percent `go tool cover -func` gives the function whose line ends with suffix (file:line name)."""
    for line in func_txt.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and f"{parts[0]} {parts[1]}".endswith(suffix):
            return float(parts[2].rstrip("%"))
    raise AssertionError(f"no function {suffix!r} in {func_txt}")


METRICS_HANDLER = "internal/httpkit/metrics.go:129: ServeHTTP"


def test_a_service_sigkilled_after_a_flush_keeps_its_counters(isolated: Path) -> None:
    run, plat = _kept_stack(isolated)
    try:
        gateway = plat.state()["containers"]["gateway"][0]
        url = plat.ctx.endpoint("gateway")
        assert requests.get(f"{url}/metrics", timeout=10).status_code == 200
        flushed = plat.flush_coverage(["gateway"])
        assert len(flushed["gateway"]) == 1, flushed  # one new counters file from the one process
        assert podman("kill", "--signal", "KILL", gateway).returncode == 0
        report = gocoverage.collect_run(plat, SubprocessRunner())  # no "wrote no counters" error
        assert report.services["gateway"] > 0
        assert _func_percent(report.out_dir / "gateway.func.txt", METRICS_HANDLER) > 0
        assert "_e2ehcoverflush" not in (report.out_dir / "coverage.txt").read_text()  # the harness's own
    finally:
        _remove(run, plat)


def test_a_disruptive_restart_keeps_the_old_processs_counters(isolated: Path, tmp_path: Path) -> None:
    """The gateway is killed at once on restart (grace 0): only the flush before it keeps its counters."""
    gateway_yaml = (REPO / "manifests" / "gateway.yaml").read_text()
    assert "terminationGracePeriodSeconds: 15" in gateway_yaml
    killed = tmp_path / "gateway-grace0.yaml"
    killed.write_text(
        gateway_yaml.replace("terminationGracePeriodSeconds: 15", "terminationGracePeriodSeconds: 0")
    )
    text = isolated.read_text().replace(str(REPO / "manifests" / "gateway.yaml"), str(killed))
    assert str(killed) in text
    isolated.write_text(text)
    run, plat = _kept_stack(isolated)
    try:
        url = plat.ctx.endpoint("gateway")
        assert requests.get(f"{url}/metrics", timeout=10).status_code == 200  # the old process only
        plat.restart("gateway")
        gateway = plat.state()["containers"]["gateway"][0]
        running = podman("inspect", "--format", "{{.State.Running}}", gateway).stdout.strip()
        assert running == "true"  # the new process serves
        report = gocoverage.collect_run(plat, SubprocessRunner())
        assert _func_percent(report.out_dir / "gateway.func.txt", METRICS_HANDLER) > 0
    finally:
        _remove(run, plat)


ONE_ENDPOINT_SUITE = """
import requests
from infra import state


def endpoints():
    return state.load().endpoints


def test_only_lists_events():
    r = requests.get(endpoints()["datastore"] + "/api/v1/events", params={"correlation_id": "x"}, timeout=10)
    assert r.status_code == 200, r.text


def test_only_reads_gateway_metrics():
    assert requests.get(endpoints()["gateway"] + "/metrics", timeout=10).status_code == 200
"""


def test_per_test_coverage_of_a_one_endpoint_test_covers_that_handler_only(isolated: Path) -> None:
    suite = isolated.parent / "suite"
    suite.mkdir()
    (suite / "test_one_endpoint.py").write_text(ONE_ENDPOINT_SUITE)
    text = isolated.read_text().replace(f'path = "{REPO / "e2e"}"', f'path = "{suite}"')
    isolated.write_text(text)
    out, run_id = e2e(isolated, "--coverage", "--per-test")
    assert "Per-test Go coverage (statements):" in out
    latest = isolated.parent / "coverage" / "e2e" / "per-test"
    summary = json.loads((latest / "summary.json").read_text())
    assert summary["run_id"] == run_id and not summary["errors"]
    ids = {nodeid.rsplit("::", 1)[1]: nodeid for nodeid in summary["tests"]}
    assert sorted(ids) == ["test_only_lists_events", "test_only_reads_gateway_metrics"], ids
    known = [*summary["functions"], *summary["unreached_functions"]]

    def key(file: str, name: str) -> str:  # "datastore/handlers.go:120 listEvents", whatever the line
        return next(k for k in known if k.startswith(f"{file}:") and k.endswith(f" {name}"))

    lists = summary["tests"][ids["test_only_lists_events"]]["services"]
    metrics = summary["tests"][ids["test_only_reads_gateway_metrics"]]["services"]
    assert key("datastore/handlers.go", "listEvents") in lists["datastore"]["functions"]
    assert key("datastore/handlers.go", "postEvent") not in lists["datastore"]["functions"]
    assert key("datastore/handlers.go", "ready") not in lists["datastore"]["functions"]
    assert key("gateway/handlers.go", "ingest") not in lists["gateway"]["functions"]
    assert key("internal/httpkit/metrics.go", "ServeHTTP") not in lists["gateway"]["functions"]
    assert key("internal/httpkit/metrics.go", "ServeHTTP") in metrics["gateway"]["functions"]
    assert key("datastore/handlers.go", "listEvents") not in metrics["datastore"]["functions"]
    assert summary["functions"][key("datastore/handlers.go", "listEvents")] == [ids["test_only_lists_events"]]
    assert key("gateway/handlers.go", "ingest") in summary["unreached_functions"]
    assert summary["redundant_tests"] == []  # each covers something the other does not
    page = (latest / "index.html").read_text()
    for data in summary["tests"].values():
        assert data["html"] in page and (latest / data["html"]).exists()
    per_run = json.loads((isolated.parent / "coverage" / "e2e" / run_id / "summary.json").read_text())
    assert per_run["mode"] == "per-test" and per_run["total_percent"] == summary["total_percent"]
    assert leftovers(run_id) == []


def test_a_service_image_is_one_layer_with_the_binary_alone(tmp_path: Path) -> None:
    """The harness's own images: one layer holding /app, its labels, and no other image left behind."""
    pod = Podman(SubprocessRunner(), podman_env(REPO / ".e2e"))
    ref = ImageRef("localhost/e2eh-test/scratch", tmp_path.name.replace("_", "-").lower()[-40:])
    binary = tmp_path / "bin" / "app"
    binary.parent.mkdir()
    binary.write_text("not run")
    try:
        build.build_binary_image(ref, binary, podman=pod, build_root=tmp_path / "ctx",
                                  labels={"io.e2e-harness.test": ref.tag}, timeout=120)  # fmt: skip
        listed = podman(
            "images", "--all", "--quiet", "--no-trunc", "--filter", f"label=io.e2e-harness.test={ref.tag}"
        )
        assert [i.removeprefix("sha256:") for i in listed.stdout.split()] == [pod.image_id(ref)], (
            listed.stdout
        )
        (image,) = json.loads(podman("image", "inspect", str(ref)).stdout)
        assert image["Config"]["Entrypoint"] == ["/app"]
        assert image["Config"]["Labels"] == {"io.e2e-harness.managed": "true", "io.e2e-harness.test": ref.tag}
        assert len(image["RootFS"]["Layers"]) == 1
        assert list((tmp_path / "ctx").iterdir()) == [] and not binary.parent.exists()
    finally:
        podman("rmi", "--force", str(ref))
