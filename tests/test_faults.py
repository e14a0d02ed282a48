"""Fault injection on real podman: every way a run breaks ends the same way.

The right exit code, one message that names the broken thing (service, image
reference, port, key) and the next step, diagnostics written before anything
was removed, and nothing of the run left behind: no container or network
labelled with its run id, no image archive, no .e2e/runs/<run-id>.

Each case runs `python -m infra --config <isolated root>/e2e.toml e2e --platform
podman` as a subprocess; see faultkit.py for the roots and the leak checks.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time

import pytest

from infra import waits
from infra.cleanup import runlock
from infra.platforms import hostfixes
from tests.faultkit import (
    REPO,
    Outcome,
    Root,
    RootFactory,
    Started,
    diagnostics_files,
    free_listening_socket,
    lines_with,
    suite_processes,
)

pytestmark = [pytest.mark.podman, pytest.mark.slow]

EXIT_OK, EXIT_USAGE, EXIT_INFRA, EXIT_INTERRUPTED = 0, 2, 4, 130
SMOKE = ("-k", "smoke")
FAST = 45  # seconds: well under the 60 s default readiness timeout a slow failure would wait for
READY = 10  # seconds: the short readiness timeout of the tests that wait for it to run out (PostgreSQL,
# which every run waits for too, is ready in about 2 s alone, and took over 4 s under CI's load)

NOPE_PROBE = (
    "readinessProbe:\n            tcpSocket: {port: http}",
    "readinessProbe:\n            httpGet: {path: /nope, port: http}",
)
GHOST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ghost
  labels: {app: ghost}
spec:
  replicas: 1
  selector:
    matchLabels: {app: ghost}
  template:
    metadata:
      labels: {app: ghost}
    spec:
      containers:
        - name: ghost
          image: localhost/e2e-harness/ghost:1
          imagePullPolicy: Never
"""


def assert_nothing_leaked(root: Root, run_id: str) -> None:
    assert run_id, "the harness printed no `run <id>: artifacts in` line"
    assert root.leftovers(run_id) == [], f"run {run_id} left objects behind"


def assert_setup_diagnostics(outcome: Outcome, *containers: str) -> None:
    """diagnostics/ of a run that started: config, rendered manifests, error, containers' logs."""
    files = diagnostics_files(outcome)
    assert {"config.json", "manifests.rendered.yaml", "error.txt", "podman/containers.txt"} <= files, files
    for name in containers:
        assert f"podman/{name}.log" in files, files
        assert f"podman/{name}.inspect.json" in files, files
    assert (outcome.artifacts / "timings.json").is_file()
    summary = (outcome.artifacts / "summary.md").read_text()
    assert "INFRASTRUCTURE FAILURE" in summary, summary


def assert_failed_fast(outcome: Outcome, saying: str = "") -> None:
    """An infrastructure failure, long before any wait a slow failure would sit out; saying: a
    regex the output must match."""
    assert outcome.code == EXIT_INFRA, str(outcome)
    assert outcome.seconds < FAST, str(outcome)
    assert re.search(saying, outcome.output), str(outcome)


def ctr(outcome: Outcome, deployment: str) -> str:
    return f"e2eh-{outcome.run_id}-{deployment}"


# -- 1. a service that does not compile -------------------------------------
def test_build_failure_names_the_service_and_the_go_build(roots: RootFactory) -> None:
    root = roots.make("build-fails")
    services = root.path / "services"
    shutil.copytree(REPO / "services", services)
    main = services / "gateway" / "main.go"
    main.write_text(main.read_text() + "\nfunc broken( {\n")
    root.service("gateway", source=str(services))

    out = root.e2e(*SMOKE)

    assert out.code == EXIT_INFRA, str(out)
    failed = lines_with(out.output, "SETUP FAILED")
    # one go build per module: its phase is the module's; only the changed service is in it
    assert failed and re.search(r"phase 'go:services(#\d)?' failed", failed[0]), str(out)
    assert "go build" in failed[0], str(out)
    assert "syntax error" in out.output, str(out)
    assert f"next: fix the Go build of service 'gateway' ({services})" in out.output, str(out)
    assert_setup_diagnostics(out)
    assert "go:services" in (out.artifacts / "diagnostics" / "error.txt").read_text()  # the module's phase
    # what nox cannot pass on (it exits 1), the last line and result.json say
    assert out.output.strip().splitlines()[-1].startswith("exit 4: infrastructure failure"), str(out)
    result = json.loads((out.artifacts / "result.json").read_text())
    assert (result["exit_code"], result["category"]) == (4, "infrastructure failure")
    assert_nothing_leaked(root, out.run_id)
    build = root.path / ".e2e" / "build"
    assert not build.exists() or list(build.iterdir()) == [], "a failed build left its directories"


# -- 2. a service that never becomes ready -----------------------------------
def test_never_ready_says_what_it_waited_for_and_what_it_saw(roots: RootFactory) -> None:
    root = roots.make("never-ready").edit_manifest("gateway.yaml", *NOPE_PROBE).set("timeouts", ready=READY)

    out = root.e2e(*SMOKE)

    gateway = ctr(out, "gateway")
    assert_failed_fast(
        out,
        rf"phase 'ready:gateway' failed: gave up after {READY}s waiting for readiness probe of container "
        rf"{gateway} \(http://127\.0\.0\.1:\d+/nope\); last seen: HTTP 404",
    )
    assert (
        f"diagnostics/podman/{gateway}.log (or rerun with --keep and `podman logs {gateway}`)" in out.output
    )
    assert_setup_diagnostics(out, ctr(out, "datastore"), gateway)
    assert_nothing_leaked(root, out.run_id)  # the suite's pytest, started beside the deploys, included
    # that pytest's output is not the story of a failed setup: run.log has it, the console not
    assert "test session starts" not in out.output, str(out)
    assert "not shown (discarded)" in (out.artifacts / "run.log").read_text()


def test_an_init_container_that_never_ends_is_shown_with_its_own_words(roots: RootFactory) -> None:
    """A wait on a running container says nothing: the error carries its last log lines."""
    root = roots.make("init-waits").set("timeouts", ready=READY)
    root.edit_manifest("gateway.yaml", '"http://datastore:8080/ready"', '"http://datastore:8080/nope"')

    out = root.e2e(*SMOKE)

    init = ctr(out, "gateway-init0")
    assert_failed_fast(
        out,
        rf"gave up after {READY}s waiting for init container 'wait-datastore' of Deployment/gateway "
        rf"to finish; "
        rf"last seen: {init} running; last log lines:\n.*waitfor: http://datastore:8080/nope: 404 Not Found",
    )
    assert f"diagnostics/podman/{init}.log" in out.output, str(out)
    assert_nothing_leaked(root, out.run_id)


# -- 3. a service that crashes at start --------------------------------------
@pytest.fixture(scope="module")
def crashed(roots: RootFactory) -> tuple[Root, Outcome]:
    root = roots.make("crash").edit_manifest("gateway.yaml", "DEDUP_TTL: 5s", 'DEDUP_TTL: "bogus"')
    return root, root.e2e(*SMOKE)  # the default 60 s readiness timeout: a crash must not wait for it


def test_crash_at_start_fails_fast_names_the_container_and_cleans_up(crashed: tuple[Root, Outcome]) -> None:
    root, out = crashed
    assert_failed_fast(out)
    gateway = ctr(out, "gateway")
    assert lines_with(out.output, "SETUP FAILED: phase 'ready:gateway' failed", gateway), str(out)
    assert "gave up after" not in out.output, out  # no readiness timeout was waited for
    assert_setup_diagnostics(out, gateway)
    log = (out.artifacts / "diagnostics" / "podman" / f"{gateway}.log").read_text()
    assert 'DEDUP_TTL=\\"bogus\\"' in log, log
    assert_nothing_leaked(root, out.run_id)


def test_crash_at_start_says_the_container_exited_with_its_last_log_lines(
    crashed: tuple[Root, Outcome],
) -> None:
    _, out = crashed
    assert f"container {ctr(out, 'gateway')} exited (code 1) before it was ready" in out.output, str(out)
    assert "DEDUP_TTL" in out.output, out  # the last log lines say why
    assert f"diagnostics/podman/{ctr(out, 'gateway')}.log (or rerun with --keep" in out.output, str(out)


# -- 4. a manifest referencing an image nobody built -------------------------
@pytest.fixture(scope="module")
def ghost(roots: RootFactory) -> tuple[Root, Outcome]:
    root = roots.make("ghost-image").append_manifest("gateway.yaml", GHOST)
    return root, root.e2e(*SMOKE)


def test_missing_image_names_the_reference(ghost: tuple[Root, Outcome]) -> None:
    root, out = ghost
    assert_failed_fast(out)
    failed = lines_with(out.output, "SETUP FAILED", "images the manifests use are not in podman's store")
    assert failed, str(out)
    assert lines_with(out.output, "  localhost/e2e-harness/ghost:1 (used by"), str(out)
    assert f"used by Deployment/ghost ({root.path}/manifests/gateway.yaml)" in out.output, str(out)
    assert "localhost/ images exist only in podman's store" in out.output, str(out)
    assert "next: build it (a service in e2e.toml whose image is localhost/e2e-harness/ghost)" in out.output
    assert "phase 'images:third-party' failed" in out.output, str(out)
    assert_setup_diagnostics(out)
    assert_nothing_leaked(root, out.run_id)


def test_missing_image_is_found_before_anything_is_pulled(ghost: tuple[Root, Outcome]) -> None:
    _, out = ghost
    assert "cannot be brought in:\n  localhost/e2e-harness/ghost:1" in out.output, str(out)
    assert "Trying to pull" not in out.output, str(out)
    timings = json.loads((out.artifacts / "timings.json").read_text())
    status = {p["name"]: p["status"] for p in timings["phases"]}
    assert status["cluster"] == "skipped", status  # no cluster work at all


# -- 5. a port already taken -------------------------------------------------
def test_busy_port_is_named_by_preflight_with_a_next_step(roots: RootFactory) -> None:
    with free_listening_socket() as sock:
        port = sock.getsockname()[1]
        root = roots.make("busy-port").service("gateway", host_port=port)
        out = root.e2e(*SMOKE)

    assert out.code == EXIT_INFRA, str(out)
    line = lines_with(out.output, "FAIL", f"port {port}")
    assert line, str(out)
    assert f"127.0.0.1:{port} (host_port of gateway) is in use" in line[0], str(out)
    assert f"ss -ltnp 'sport = :{port}'" in line[0] and "set host_port = 0" in line[0], str(out)
    assert "phase 'preflight' failed" in out.output, str(out)
    assert_setup_diagnostics(out)
    assert_nothing_leaked(root, out.run_id)


# -- 6. an invalid config ----------------------------------------------------
def test_unknown_config_key_names_the_key_path_and_the_file(roots: RootFactory) -> None:
    root = roots.make("bad-config").set("timeouts", readyy=5)

    out = root.e2e(*SMOKE, timeout=60)

    assert out.code == EXIT_USAGE, str(out)
    assert f"invalid config {root.cfg}:" in out.output, str(out)
    assert "  timeouts.readyy: unknown key" in out.output, str(out)
    assert "next: fix the keys above" in out.output, str(out)
    # no run starts, and yet it ends like one: its own result, nothing built, nothing left
    assert out.output.strip().splitlines()[-1].startswith("exit 2: usage or config error"), str(out)
    assert not lines_with(out.output, "> build:") and root.leftovers(out.run_id) == [], str(out)


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ("missing-manifest", "manifest {root}/manifests/gone.yaml not found (listed in {cfg})"),
        ("image-unused", "service 'gateway': no workload in the manifests uses its image"),
        ("no-go-module", "coverage.go_module: {root}/nowhere is not a Go module (no go.mod)"),
        (
            "no-containerfile",
            "images.stand_in 'docker.io/library/redis:7.0-bookworm': containerfile "
            "{root}/Containerfile.gone does not exist",
        ),
    ],
)
def test_stack_mistakes_exit_2_before_anything_is_built(roots: RootFactory, case: str, expect: str) -> None:
    root = roots.make(case)
    args: tuple[str, ...] = ()
    if case == "missing-manifest":
        root.data["manifests"] = [*root.data["manifests"], str(root.path / "manifests" / "gone.yaml")]
    elif case == "image-unused":
        root.service("gateway", image="localhost/e2e-harness/nobody-uses-this")
    elif case == "no-containerfile":
        redis = next(s for s in root.data["images"]["stand_in"] if "redis" in s["image"])
        redis["containerfile"] = str(root.path / "Containerfile.gone")
    else:
        root.set("coverage", go_module=str(root.path / "nowhere"))
        args = ("--coverage",)
    root.write_config()

    out = root.harness("e2e", "--platform", "podman", *args, timeout=60)

    assert out.code == EXIT_USAGE, str(out)
    assert out.seconds < 5, str(out)  # loading the config and manifests, nothing more
    assert expect.format(root=root.path, cfg=root.cfg) in out.output, str(out)
    assert not re.search(r"\] > \S", out.output), "no phase may start"
    assert json.loads((out.artifacts / "result.json").read_text())["exit_code"] == EXIT_USAGE


def test_a_field_podman_cannot_honour_is_refused_before_anything_starts(roots: RootFactory) -> None:
    root = roots.make("podman-refuses").edit_manifest(
        "gateway.yaml",
        "        seccompProfile: {type: RuntimeDefault}\n",
        "        seLinuxOptions: {level: 's0:c1,c2'}\n",
    )

    out = root.e2e(*SMOKE, timeout=60)

    assert out.code == EXIT_USAGE, str(out)
    assert out.seconds < 5, str(out)
    assert (
        f"Deployment/gateway ({root.path}/manifests/gateway.yaml): spec.template.spec.securityContext"
        ".seLinuxOptions is not supported on podman" in out.output
    ), str(out)
    assert "next: run them on a real cluster with `--platform kind`" in out.output, str(out)
    assert not lines_with(out.output, "> build:"), "nothing may be built"
    assert_nothing_leaked(root, out.run_id)


def test_runs_with_the_config_inside_the_go_module_build_each_image_once(roots: RootFactory) -> None:
    """The outputs a run writes (artifacts/, coverage/, .e2e/) land in the module: never build inputs."""
    root = roots.make("config-in-module")
    for item in (REPO / "services").iterdir():
        if item.is_dir():
            shutil.copytree(item, root.path / item.name, ignore=shutil.ignore_patterns("bin"))
        else:
            shutil.copy2(item, root.path / item.name)
    for name in ("datastore", "gateway"):
        root.service(name, source=str(root.path))
    tags: dict[str, set[str]] = {"datastore": set(), "gateway": set()}
    built = []
    for _ in range(3):
        out = root.e2e(*SMOKE)
        assert out.code == EXIT_OK, str(out)
        for name, ref in re.findall(r"^image (\w+): (\S+)$", out.output, re.MULTILINE):
            tags[name].add(ref)
        built.append(json.loads((out.artifacts / "timings.json").read_text())["built"])
    assert {k: len(v) for k, v in tags.items()} == {"datastore": 1, "gateway": 1}, tags
    assert not any(any(b.values()) for b in built[1:]), f"later runs rebuilt images: {built}"


# -- 7. interrupted runs -----------------------------------------------------
def test_a_rebuild_removes_the_images_it_untagged(roots: RootFactory) -> None:
    """--rebuild puts new images under the same tags: the old ones go at teardown, not left dangling."""
    root = roots.make("rebuild")
    for name in ("datastore", "gateway"):  # names of its own: other tests' runs keep theirs
        image = f"localhost/e2eh-test-{root.path.name.lower()}/{name}"
        root.service(name, image=image)
        manifest = root.manifest(f"{name}.yaml")
        manifest.write_text(manifest.read_text().replace(f"localhost/e2e-harness/{name}:", f"{image}:"))
    refs: dict[str, str] = {}
    try:
        first = root.e2e(*SMOKE)
        refs = dict(re.findall(r"^image (\w+): (\S+)$", first.output, re.MULTILINE))
        assert first.code == EXIT_OK and set(refs) == {"datastore", "gateway"}, str(first)
        old = {root.podman("image", "inspect", "--format", "{{.Id}}", ref).strip() for ref in refs.values()}
        again = root.harness("e2e", "--platform", "podman", "--rebuild", "--", *SMOKE)
        assert again.code == EXIT_OK, str(again)
        new = {root.podman("image", "inspect", "--format", "{{.Id}}", ref).strip() for ref in refs.values()}
        assert not new & old, "the rebuild kept the old images under the tags"
        left = root.podman("images", "--all", "--quiet", "--no-trunc").split()
        assert not [i for i in left if i.removeprefix("sha256:") in old], str(again)
    finally:
        if refs:
            root.podman("rmi", "--force", *refs.values(), check=False)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_while_the_suite_runs_tears_everything_down(
    roots: RootFactory, sig: signal.Signals
) -> None:
    root = roots.make(f"interrupt-{sig.name.lower()}")

    def stack_up(run: Started) -> None:  # the Job's, the init container's, the two services', the
        # database's and the cache's, and their four pods' infra containers
        assert len(root.containers(run.run_id)) == 10, run.output()

    out = root.interrupt_suite("podman", sig, check=stack_up)

    assert out.code == EXIT_INTERRUPTED, str(out)
    assert f"interrupted ({sig.name}): tearing down what this run created" in out.output, str(out)
    assert "INTERRUPTED" in (out.artifacts / "summary.md").read_text()
    assert (out.artifacts / "diagnostics" / "config.json").is_file()
    assert_nothing_leaked(root, out.run_id)


def test_sigint_then_sigterm_is_one_interrupt_and_still_tears_down(roots: RootFactory) -> None:
    """What nox does on Ctrl-C: the harness gets SIGINT, then SIGTERM from nox a moment later."""
    root = roots.make("interrupt-nox")
    out = root.interrupt_suite("podman", signal.SIGINT, signal.SIGTERM, gap=0.3)  # nox's interrupt timeout
    assert out.code == EXIT_INTERRUPTED, str(out)
    assert "SIGTERM after SIGINT: already tearing down" in out.output, str(out)
    assert "interrupted twice" not in out.output
    assert_nothing_leaked(root, out.run_id)


def test_interrupt_during_a_readiness_wait_stops_at_once(roots: RootFactory) -> None:
    """SIGINT while the harness waits (up to 24 s) for a readiness probe that never passes."""
    ready = 24
    root = (
        roots.make("interrupt-setup").edit_manifest("gateway.yaml", *NOPE_PROBE).set("timeouts", ready=ready)
    )
    run = root.start("e2e", "--platform", "podman", "--", *SMOKE)
    try:
        run.wait_for_output(r"> ready:gateway$")
        run.wait_for_containers(2)
        sent = run.signal(signal.SIGINT)
        out = run.wait(timeout=ready + 90)
        after = time.monotonic() - sent
    finally:
        run.kill()

    assert out.code == EXIT_INTERRUPTED, str(out)
    assert "interrupted (SIGINT): tearing down what this run created" in out.output, str(out)
    assert after < ready / 2, (
        f"the run stopped {after:.1f}s after SIGINT, not at once (readiness timeout {ready}s)\n"
        + out.run_log()
    )
    assert "gave up after" not in out.output, out  # the wait was cancelled, it did not time out
    assert_nothing_leaked(root, out.run_id)


# -- 8. leftovers of a killed run; a live run; a kept stack -------------------
@pytest.mark.exclusive  # cleanup removes any finished run's objects: no other test's run alongside
def test_cleanup_removes_exactly_the_killed_runs_leftovers(roots: RootFactory) -> None:
    # both runs wait (up to 120 s) for a readiness probe that never passes: alive, with containers
    root = roots.make("cleanup").edit_manifest("gateway.yaml", *NOPE_PROBE).set("timeouts", ready=120)
    alive = root.start("e2e", "--platform", "podman", "--", *SMOKE)
    killed: Started | None = None
    try:
        # one after the other, so that each has all its containers when the other is killed or
        # cleaned up (concurrent starts are test_concurrent_runs_do_not_interfere's)
        alive.wait_for_containers(10)  # the gateway's is the last (after its pod's and init's)
        killed = root.start("e2e", "--platform", "podman", "--", *SMOKE)
        killed.wait_for_containers(10)
        killed.proc.kill()  # SIGKILL: no teardown; the kernel releases its run lock
        killed.wait(timeout=30)
        dead, live = killed.run_id, alive.run_id

        # its suite's pytest ends itself (it may still have been starting up when the kill came)
        def ended() -> waits.Observation[None]:
            left = suite_processes(dead)
            return waits.Observation(not left, f"pids {left}")

        waits.poll(f"the suite's pytest of killed run {dead} to end", ended, timeout=30)
        assert not runlock.is_alive(dead) and runlock.is_alive(live)
        assert root.present(dead) == {"containers": True, "network": True, "run dir": True}

        cleanup = root.harness("cleanup", "--keep-images", timeout=180)

        assert cleanup.code == EXIT_OK, str(cleanup)
        assert root.leftovers(dead) == [], str(cleanup)
        assert lines_with(cleanup.output, "removed: containers", f"e2eh-{dead}-gateway", f"(run {dead})"), (
            str(cleanup)
        )
        assert lines_with(cleanup.output, "removed: networks", f"e2eh-{dead}"), str(cleanup)
        assert lines_with(cleanup.output, "removed: run dir", dead), str(cleanup)
        assert root.present(live) == {"containers": True, "network": True, "run dir": True}, str(cleanup)
        assert lines_with(
            cleanup.output, "left: containers", f"e2eh-{live}-gateway", "its run is still going"
        ), str(cleanup)
        assert lines_with(cleanup.output, "left: run dir", live, "its run is still going"), str(cleanup)
    finally:
        alive.kill()
        if killed is not None:
            killed.kill()
    # now the other run was SIGKILLed too: its leftovers are fair game
    try:
        again = root.harness("cleanup", "--keep-images", timeout=180)
        assert again.code == EXIT_OK, str(again)
        assert root.leftovers(live) == [], str(again)
    finally:  # cleanup leaves the unlocked lock files of killed runs behind: not ours to judge here
        for run_id in (dead, live):
            if not runlock.is_alive(run_id):
                (runlock.LOCK_DIR / f"{run_id}.lock").unlink(missing_ok=True)


@pytest.mark.exclusive
def test_cleanup_leaves_a_kept_stack_and_down_removes_it(roots: RootFactory) -> None:
    root = roots.make("kept")
    up = root.harness("up", "--platform", "podman", timeout=180)
    assert up.code == EXIT_OK, str(up)
    run_id = up.run_id
    assert f"kept the stack of run {run_id} (podman):" in up.output, str(up)
    printed = kept_commands(up.output)
    assert printed.keys() == {"run the suite", "remove it"}, str(up)
    assert f"down --run-id {run_id}" in printed["remove it"]
    try:
        assert root.present(run_id) == {"containers": True, "network": True, "run dir": True}, str(up)
        assert runlock.is_kept(run_id) and not runlock.is_alive(run_id)

        cleanup = root.harness("cleanup", "--keep-images", timeout=180)

        assert cleanup.code == EXIT_OK, str(cleanup)
        assert root.present(run_id) == {"containers": True, "network": True, "run dir": True}, str(cleanup)
        assert lines_with(cleanup.output, "left: containers", f"e2eh-{run_id}-gateway", "kept on purpose"), (
            str(cleanup)
        )
        assert lines_with(cleanup.output, "left: run dir", run_id, "kept on purpose"), str(cleanup)
        # cleanup names the way to remove it as the run printed it: it works from anywhere, as run below
        assert lines_with(cleanup.output, "left: run dir", f"`{printed['remove it']}`"), str(cleanup)

        # the printed commands, run as printed, from a directory that is neither the harness nor the root
        suite = subprocess.run(["bash", "-c", printed["run the suite"] + " -k smoke -p no:cacheprovider"],
                               cwd="/", capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
        assert suite.returncode == EXIT_OK, suite.stdout + suite.stderr
        assert "passed" in suite.stdout
        down_run = subprocess.run(["bash", "-c", printed["remove it"]], cwd="/", capture_output=True,
                                  text=True, timeout=300, check=False)  # fmt: skip
        down = Outcome(("bash", "-c", printed["remove it"]), down_run.returncode,
                       down_run.stdout + down_run.stderr, 0.0, root.path)  # fmt: skip

        assert down.code == EXIT_OK, str(down)
        assert f"removed the stack of run {run_id} (podman)" in down.output, str(down)
        assert root.leftovers(run_id) == [], str(down)
        assert not runlock.is_kept(run_id)
    finally:
        root.run_ids.add(run_id)


def kept_commands(output: str) -> dict[str, str]:
    """The commands a kept run printed, by what they do."""
    return {
        line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
        for line in output.splitlines()
        if line.startswith(("  run the suite:", "  remove it:"))
    }


def test_a_stack_kept_after_a_failed_setup_is_removed_by_the_printed_command(roots: RootFactory) -> None:
    root = roots.make("kept-failed").edit_manifest("gateway.yaml", "DEDUP_TTL: 5s", 'DEDUP_TTL: "bogus"')
    out = root.harness("e2e", "--platform", "podman", "--keep", "--", *SMOKE)
    assert out.code == EXIT_INFRA, str(out)
    run_id = out.run_id
    root.run_ids.add(run_id)
    printed = kept_commands(out.output)
    assert f"down --run-id {run_id}" in printed.get("remove it", ""), str(out)
    assert root.present(run_id) == {"containers": True, "network": True, "run dir": True}, str(out)

    down = subprocess.run(["bash", "-c", printed["remove it"]], cwd="/", capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip

    assert down.returncode == EXIT_OK, down.stdout + down.stderr
    assert f"removed the stack of run {run_id} (podman)" in down.stdout + down.stderr
    assert root.leftovers(run_id) == [], down.stdout + down.stderr
    assert not runlock.is_kept(run_id)


def test_a_suite_can_read_the_run_state_while_it_collects(roots: RootFactory) -> None:
    """pytest starts while the stack deploys: a module that reads E2E_STATE_FILE on import finds it."""
    root = roots.make("state-at-import")
    suite = root.path / "suite"
    suite.mkdir()
    (suite / "test_state.py").write_text(
        "import json, os\n\n"
        "STATE = json.load(open(os.environ['E2E_STATE_FILE']))  # read as pytest collects\n\n\n"
        "def test_read_on_import():\n"
        # under way, unless this machine was slower to start pytest than the setup was to finish
        "    assert STATE['setup'] in ('under way', 'done'), STATE\n"
        "    assert sorted(STATE['endpoints']) == ['datastore', 'gateway'], STATE\n\n\n"
        "def test_whole_when_the_tests_run():\n"
        "    now = json.load(open(os.environ['E2E_STATE_FILE']))\n"
        "    assert now['setup'] == 'done' and now['platform_state']['containers'], now\n"
    )
    root.set("tests", path=str(suite), workers="0")  # collected in the process the harness starts

    out = root.harness("e2e", "--platform", "podman")

    assert out.code == EXIT_OK, str(out)
    assert "2 passed" in out.output, str(out)
    assert_nothing_leaked(root, out.run_id)


# -- 9. concurrent runs ------------------------------------------------------
def test_concurrent_runs_do_not_interfere(roots: RootFactory) -> None:
    first, second = roots.make("concurrent-a"), roots.make("concurrent-b")
    args = ("e2e", "--platform", "podman", "--", "-k", "smoke or ingest")
    runs = [first.start(*args), second.start(*args)]
    try:
        outs = [run.wait(timeout=240) for run in runs]
    finally:
        for run in runs:
            run.kill()

    for out in outs:
        assert out.code == EXIT_OK, str(out)
        assert "- result: passed:" in (out.artifacts / "summary.md").read_text()
    assert outs[0].run_id != outs[1].run_id
    ports = [set(out.endpoints().values()) for out in outs]
    assert all(len(p) == 2 for p in ports) and not ports[0] & ports[1], ports
    timings = [json.loads((out.artifacts / "timings.json").read_text()) for out in outs]
    assert {t["run_id"] for t in timings} == {outs[0].run_id, outs[1].run_id}
    assert_nothing_leaked(first, outs[0].run_id)
    assert_nothing_leaked(second, outs[1].run_id)


@pytest.mark.exclusive  # it breaks podman's DNS server for everyone while it runs
def test_service_names_resolve_when_podmans_dns_server_cannot_start(roots: RootFactory) -> None:
    """CI once failed so: a stale aardvark-dns pid file named a live process, netavark signalled it
    and started no DNS server, and the gateway's init container never found `datastore`."""
    pid_file = hostfixes.aardvark_pid_file()
    if pid_file.exists():
        pytest.skip(f"{pid_file} exists: podman's DNS server serves someone's containers")
    root = roots.make("no-dns")
    # a live process that ignores SIGHUP: the pid file's stale owner
    with subprocess.Popen(
        ["nohup", "sleep", "300"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as decoy:
        try:
            pid_file.parent.mkdir(parents=True, exist_ok=True)
            pid_file.write_text(str(decoy.pid))
            out = root.e2e(*SMOKE)  # the gateway's init container waits for http://datastore:8080/ready
        finally:
            if pid_file.exists() and pid_file.read_text().strip() == str(decoy.pid):
                pid_file.unlink()
            decoy.kill()
    assert out.code == EXIT_OK, str(out)
    assert_nothing_leaked(root, out.run_id)
