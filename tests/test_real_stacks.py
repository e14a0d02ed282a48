"""Real stacks on real podman: third-party images, Jobs, init containers, exec probes, refusals.

The example stack already runs a migration Job, a StatefulSet with an exec
probe, a Secret as env and as a volume, a third-party init container image
(a stand-in) and a tcpSocket probe in every e2e run; these cases break each of
them and check the run ends the way every broken run must: the right exit
code, a message naming the object and the next step, and nothing left behind.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import socket
from pathlib import Path

import pytest

from infra import config as config_mod
from infra.cleanup import runlock
from infra.images import STAND_IN_CACHE, ImageRef
from infra.names import new_run_id, resource_name
from infra.paths import RunPaths
from infra.platforms import ports
from infra.platforms.manifests import Rendered
from infra.platforms.platform import Context, ImageMissing
from infra.platforms.stack import make_podman, platform_class
from infra.proc import SubprocessRunner
from tests.faultkit import REPO, Outcome, Root, RootFactory, lines_with

pytestmark = [pytest.mark.podman, pytest.mark.slow]

EXIT_OK, EXIT_USAGE, EXIT_INFRA = 0, 2, 4
SMOKE = ("-k", "smoke")
WAITFOR = "registry.example.com/e2e-harness/waitfor:1.0"
ABSENT = "quay.io/e2e-harness-tests/absent:1"  # no registry is reachable here: it cannot be pulled


def assert_nothing_leaked(root: Root, run_id: str) -> None:
    assert run_id, "the harness printed no `run <id>: artifacts in` line"
    assert root.leftovers(run_id) == [], f"run {run_id} left objects behind"


def phase_status(out: Outcome) -> dict[str, str]:
    timings = json.loads((out.artifacts / "timings.json").read_text())
    return {p["name"]: p["status"] for p in timings["phases"]}


def uses_image(root: Root, image: str) -> Root:
    """The gateway's init container runs another image (and the config has no stand-in for it)."""
    kept = [s for s in root.data["images"]["stand_in"] if s["image"] != WAITFOR]  # PostgreSQL's, Redis's
    root.data["images"]["stand_in"] = kept
    root.write_config()
    return root.edit_manifest("gateway.yaml", f"image: {WAITFOR}", f"image: {image}")


# -- third-party images ----------------------------------------------------------------------
@pytest.mark.parametrize("pull", ["missing", "never"])
def test_an_absent_third_party_image_fails_before_any_cluster_work(roots: RootFactory, pull: str) -> None:
    root = uses_image(roots.make(f"absent-{pull}"), ABSENT).set("images", pull=pull)

    out = root.e2e(*SMOKE)

    assert out.code == EXIT_INFRA, str(out)
    line = lines_with(out.output, ABSENT, "used by Deployment/gateway")
    assert line, str(out)
    why = "pull failed:" if pull == "missing" else 'not in podman\'s store, and [images] pull = "never"'
    assert why in line[0], str(out)
    assert f"next: `podman pull {ABSENT}` where a registry is reachable" in line[0], str(out)
    assert "`podman load -i <archive>`" in line[0] and f"`podman tag <a local image> {ABSENT}`" in line[0]
    status = phase_status(out)
    assert status["images:third-party"] == "failed" and status["cluster"] == "skipped", status
    assert_nothing_leaked(root, out.run_id)


def test_a_third_party_image_in_podmans_store_is_run_as_is(roots: RootFactory) -> None:
    """A registry-qualified name only podman's store holds (tagged locally): used, never pulled."""
    mine = f"quay.io/e2e-harness-tests/waitfor-{secrets.token_hex(3)}:local"  # no other session's
    root = roots.make("third-party-present")
    root.user_image(mine)
    try:
        uses_image(root, mine).set("images", pull="never")
        out = root.e2e(*SMOKE)
        assert out.code == EXIT_OK, str(out)
        assert f"third-party image {mine}: present" in out.output, str(out)
        rendered = (out.artifacts / "manifests.rendered.yaml").read_text()
        assert f"image: {mine}" in rendered and "localhost/quay.io" not in rendered
        assert "Trying to pull" not in out.output
        assert_nothing_leaked(root, out.run_id)
    finally:
        root.podman("rmi", mine, check=False)


def test_a_stand_in_is_rebuilt_when_its_source_changes_and_only_then(roots: RootFactory) -> None:
    root = roots.make("stand-in")
    source = root.path / "thirdparty"
    shutil.copytree(REPO / "services" / "thirdparty", source)
    root.data["images"]["stand_in"][0]["source"] = str(source)
    root.write_config()
    image = f"registry.example.com/e2e-harness-tests/waitfor-{secrets.token_hex(3)}:1.0"  # its own
    root.data["images"]["stand_in"][0]["image"] = image
    root.write_config()
    root.edit_manifest("gateway.yaml", f"image: {WAITFOR}", f"image: {image}")
    # a run's teardown removes the stand-ins no other live run uses: one that does keeps it cached
    other = f"test-{secrets.token_hex(3)}"
    lock = runlock.hold(other)
    runlock.use_images(other, [image])
    try:
        first = root.e2e(*SMOKE)
        assert first.code == EXIT_OK, str(first)
        assert f"third-party image {image}: stand-in built from {source}/waitfor" in first.output, str(first)

        again = root.e2e(*SMOKE)
        assert f"third-party image {image}: stand-in up to date" in again.output, str(again)
        # --rebuild: every image the harness builds, stand-ins too
        forced = root.harness("e2e", "--platform", "podman", "--rebuild", "--", *SMOKE)
        assert f"third-party image {image}: stand-in built from" in forced.output, str(forced)

        main = source / "waitfor" / "main.go"
        main.write_text(main.read_text().replace("answered %s", "answered: %s"))
        changed = root.e2e(*SMOKE)
        assert changed.code == EXIT_OK, str(changed)
        assert f"third-party image {image}: stand-in built from" in changed.output, str(changed)
        assert len(kept_builds(root, image)) == 1, kept_builds(root, image)  # the older inputs' build went
    finally:
        runlock.release(lock, other)
        root.podman("rmi", image, *kept_builds(root, image), check=False)


def kept_builds(root: Root, image: str) -> list[str]:
    """The builds of a stand-in the harness keeps by their inputs' digest (images.stand_in_cache)."""
    kept = f"{STAND_IN_CACHE}/{ImageRef.foreign(image).repository}"
    listed = root.podman("images", "--format", "{{.Repository}}:{{.Tag}}", check=False).split()
    return [r for r in listed if r.startswith(f"{kept}:")]


def test_a_stand_in_is_removed_at_teardown_and_one_the_user_made_is_not(roots: RootFactory) -> None:
    """A local build under a registry's name must not stay behind to stand in for the real image."""
    root = roots.make("stand-in-gone")
    image = f"registry.example.com/e2e-harness-tests/waitfor-{secrets.token_hex(3)}:1.0"
    root.data["images"]["stand_in"][0]["image"] = image
    root.write_config()
    root.edit_manifest("gateway.yaml", f"image: {WAITFOR}", f"image: {image}")
    try:
        out = root.e2e(*SMOKE)
        assert out.code == EXIT_OK, str(out)
        assert f"third-party image {image}: stand-in built from" in out.output, str(out)
        assert (
            root.podman("image", "exists", image, check=False) == ""
            and not root.podman("images", "--quiet", image, check=False).strip()
        ), f"{image} is still in podman's store"
        # the user's own image under that name (no stand-in label) is used and kept
        root.user_image(image)
        root.data["images"]["stand_in"] = [s for s in root.data["images"]["stand_in"] if s["image"] != image]
        root.write_config()
        mine = root.e2e(*SMOKE)
        assert mine.code == EXIT_OK, str(mine)
        assert root.podman("images", "--quiet", image).strip(), "the user's image was removed"
    finally:
        root.podman("rmi", image, *kept_builds(root, image), check=False)


# -- Jobs ---------------------------------------------------------------------------------------
def test_a_failing_migration_job_fails_setup_with_its_log_and_the_datastore_never_starts(
    roots: RootFactory,
) -> None:
    root = roots.make("job-fails").edit_manifest("datastore.yaml", 'args: ["migrate"]', 'args: ["migrat"]')

    out = root.e2e(*SMOKE)

    assert out.code == EXIT_INFRA, str(out)
    failed = lines_with(out.output, "Job/datastore-migrate failed: 3 attempt(s) (backoffLimit 2)")
    assert failed and "the last exited 2" in failed[0], str(out)
    assert lines_with(out.output, '"unknown command"', '"migrat"'), str(out)  # its last log lines
    assert f"e2eh-{out.run_id}-datastore-migrate-2.log" in out.output, str(out)  # where the whole log is
    status = phase_status(out)
    assert status["deploy:datastore"] == "failed" and status["deploy:gateway"] == "skipped", status
    logs = out.artifacts / "diagnostics" / "podman"
    assert sorted(p.name for p in logs.glob("*datastore-migrate-*.log")) == [
        f"e2eh-{out.run_id}-datastore-migrate-{i}.log" for i in range(3)
    ]
    assert not list(logs.glob(f"e2eh-{out.run_id}-datastore.log")), "the StatefulSet must not have started"
    assert_nothing_leaked(root, out.run_id)


# -- init containers ------------------------------------------------------------------------------
def test_init_containers_run_in_order_and_a_failing_one_stops_the_pod(roots: RootFactory) -> None:
    root = roots.make("init-fails").edit_manifest(
        "gateway.yaml",
        "      initContainers:\n",
        "      initContainers:\n"
        f"        - {{name: first, image: {WAITFOR}, args: ['http://127.0.0.1:9/nothing', '300ms']}}\n",
    )

    out = root.e2e(*SMOKE)

    assert out.code == EXIT_INFRA, str(out)
    assert "init container 'first' of Deployment/gateway exited 1" in out.output, str(out)
    assert "waitfor: gave up after 300ms waiting for http://127.0.0.1:9/nothing" in out.output, str(out)
    logs = out.artifacts / "diagnostics" / "podman"
    assert (logs / f"e2eh-{out.run_id}-gateway-init0.log").is_file()
    assert not (logs / f"e2eh-{out.run_id}-gateway-init1.log").exists(), "the second ran after a failure"
    assert not (logs / f"e2eh-{out.run_id}-gateway.log").exists(), "the main container ran after a failure"
    assert_nothing_leaked(root, out.run_id)


# -- probes ---------------------------------------------------------------------------------------
def test_an_exec_probe_that_never_passes_says_what_it_ran_and_what_it_saw(roots: RootFactory) -> None:
    root = roots.make("exec-probe").set("timeouts", ready=10)
    root.edit_manifest(
        "datastore.yaml", 'command: ["/app", "probe", "/ready"]', 'command: ["/app", "probe", "/no"]'
    )

    out = root.e2e(*SMOKE)

    assert out.code == EXIT_INFRA, str(out)
    waited = lines_with(out.output, "gave up after 10s waiting for startup probe of container")
    assert waited and '(exec ["/app", "probe", "/no"])' in waited[0], str(out)
    # the last answer, or (when podman's exec outlived the probe's timeout at the end) the one before
    assert "exit 1: probe: 404 Not Found" in waited[0].split("last seen: ", 1)[1], str(out)
    assert_nothing_leaked(root, out.run_id)


def test_an_exec_probe_that_outlives_its_timeout_seconds_fails_and_is_asked_again(roots: RootFactory) -> None:
    """As the kubelet's: an exec probe has timeoutSeconds (default 1), and podman's start 2 s more."""
    root = roots.make("exec-timeout").set("timeouts", ready=6)
    root.edit_manifest("redis.yaml", 'command: ["redis-cli", "ping"]', 'command: ["sh", "-c", "sleep 30"]')

    out = root.e2e(*SMOKE)

    assert out.code == EXIT_INFRA, str(out)
    waited = lines_with(out.output, "gave up after 6s waiting for readiness probe of container")
    assert waited and '(exec ["sh", "-c", "sleep 30"])' in waited[0], str(out)
    assert "last seen: no answer within 3 s" in waited[0], str(out)
    assert_nothing_leaked(root, out.run_id)


# -- refusals -----------------------------------------------------------------------------------
def test_an_object_podman_cannot_run_is_refused_naming_kind_name_file_and_the_way_out(
    roots: RootFactory,
) -> None:
    cronjob = (
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly}\n"
        "spec: {schedule: '0 3 * * *', jobTemplate: {spec: {template: {spec: {containers: []}}}}}\n"
    )
    root = roots.make("refused-kind").append_manifest("gateway.yaml", cronjob)

    out = root.e2e(*SMOKE, timeout=60)

    assert out.code == EXIT_USAGE, str(out)
    assert (
        f"CronJob/nightly ({root.path}/manifests/gateway.yaml): kind CronJob is not supported on podman"
        in (out.output)
    ), str(out)
    assert "next: run them on a real cluster with `--platform kind`" in out.output, str(out)
    assert not lines_with(out.output, "> build:") and not lines_with(out.output, "> images:"), (
        "nothing may start"
    )
    assert_nothing_leaked(root, out.run_id)


# -- content tags ----------------------------------------------------------------------------------
def test_editing_an_embedded_file_rebuilds_exactly_the_service_that_embeds_it(roots: RootFactory) -> None:
    """The datastore embeds its SQL migrations (go:embed); the gateway does not import that package."""
    root = roots.make("embed")
    source = root.path / "services"
    shutil.copytree(REPO / "services", source, ignore=shutil.ignore_patterns("bin", "thirdparty"))
    for name in ("datastore", "gateway"):
        root.service(name, source=str(source))
    archive = root.path / "images.tar"

    def images() -> dict[str, tuple[str, str]]:
        out = root.harness("images", "--output", str(archive), timeout=300)
        assert out.code == EXIT_OK, str(out)
        found = re.findall(r"^(datastore|gateway): (\S+) (built|up to date)", out.output, re.MULTILINE)
        return {name: (ref, how) for name, ref, how in found}

    first = images()
    (source / "README.md").write_text("not an input\n")
    (source / "datastore" / "handlers_test.go").write_text("package main\n")  # tests are not inputs
    before = images()
    assert {n: ref for n, (ref, _) in before.items()} == {n: ref for n, (ref, _) in first.items()}
    assert {how for _, how in before.values()} == {"up to date"}, before

    migration = source / "datastore" / "migrations" / "0002_correlation_index.sql"
    migration.write_text(migration.read_text() + "-- a comment is content too\n")
    after = images()
    root.podman("rmi", after["datastore"][0], check=False)  # an image of this test's own content
    assert after["gateway"] == before["gateway"], after  # same tag, not rebuilt
    assert after["datastore"][1] == "built" and after["datastore"][0] != before["datastore"][0], after


def test_service_names_and_host_aliases_are_lines_of_the_pods_etc_hosts(roots: RootFactory) -> None:
    """No DNS server on the run's network: what a container resolves is its /etc/hosts."""
    alias = "      hostAliases:\n        - {ip: 192.0.2.10, hostnames: [ledger.example, ledger]}\n"
    root = roots.make("hosts").edit_manifest(
        "gateway.yaml", "      initContainers:\n", alias + "      initContainers:\n"
    )

    out = root.harness("e2e", "--platform", "podman", "--keep", "--", *SMOKE)

    assert out.code == EXIT_OK, str(out)
    run_id = out.run_id

    def address(ctr: str) -> str:
        return root.podman(
            "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", ctr
        ).strip()

    # a pod's address is its infra container's, which holds the network namespace
    datastore, gateway = address(f"e2eh-{run_id}-datastore-infra"), address(f"e2eh-{run_id}-gateway-infra")
    for ctr in (f"e2eh-{run_id}-gateway-init0", f"e2eh-{run_id}-gateway"):  # a pod's containers alike
        hosts = Path(root.podman("inspect", "--format", "{{.HostsPath}}", ctr).strip()).read_text()
        lines = {
            tuple(line.split()) for line in hosts.splitlines() if line.strip() and not line.startswith("#")
        }
        assert {(datastore, "datastore"), (datastore, "datastore-0"), (gateway, "gateway")} <= lines, hosts
        assert {("192.0.2.10", "ledger.example"), ("192.0.2.10", "ledger")} <= lines, hosts
    down = root.harness("down", "--run-id", run_id)
    assert down.code == EXIT_OK, str(down)
    assert_nothing_leaked(root, run_id)


def test_an_image_gone_before_its_deploy_is_named_with_the_way_out(roots: RootFactory) -> None:
    """The deploy asks podman nothing first: `run --pull never` refusing an image is the check."""
    root = roots.make("image-gone")
    cfg = config_mod.load(root.cfg)
    runner = SubprocessRunner()
    run_id = new_run_id()
    gone = f"localhost/e2e-harness/gone-{secrets.token_hex(3)}:1"
    doc = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "ghost", "labels": {"app": "ghost"}},
        "spec": {
            "selector": {"matchLabels": {"app": "ghost"}},
            "template": {
                "metadata": {"labels": {"app": "ghost"}},
                "spec": {"containers": [{"name": "ghost", "image": gone}]},
            },
        },
    }
    ctx = Context(
        config=cfg,
        paths=RunPaths(root.path, run_id),
        runner=runner,
        podman=make_podman(cfg, runner, root.path),
        rendered=Rendered([doc]),
    )
    plat = platform_class("podman")(ctx)
    plat.create()
    try:
        plat.verify_images(Rendered([doc]))  # asks nothing: the deploy's own run is the check
        with pytest.raises(ImageMissing) as info:
            plat.deploy("ghost", [doc])
    finally:
        plat.teardown()
        shutil.rmtree(ctx.paths.run_dir)  # the run's own directory: Run removes it after the teardown
    message = str(info.value)
    assert f"{gone} (used by Deployment/ghost" in message, message
    assert "is not in podman's store. next:" in message and "`podman tag` a local image" in message
    assert_nothing_leaked(root, run_id)


def test_a_port_taken_between_its_pick_and_the_pods_start_is_picked_again(
    roots: RootFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The harness picks each pod's ports; another process may bind one before `pod start` does."""
    root = roots.make("port-taken")
    cfg = config_mod.load(root.cfg)
    runner = SubprocessRunner()
    run_id = new_run_id()
    doc = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "listener", "labels": {"app": "listener"}},
        "spec": {"selector": {"matchLabels": {"app": "listener"}}, "template": {
            "metadata": {"labels": {"app": "listener"}},
            "spec": {"containers": [{"name": "l", "image": WAITFOR, "ports": [{"containerPort": 8080}]}]},
        }},
    }  # fmt: skip
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = taken.getsockname()[1]
    picks = iter([[busy]])
    real = ports.free_ports
    monkeypatch.setattr(ports, "free_ports", lambda n: next(picks, None) or real(n))
    ctx = Context(config=cfg, paths=RunPaths(root.path, run_id), runner=runner,
                  podman=make_podman(cfg, runner, root.path), rendered=Rendered([doc]))  # fmt: skip
    plat = platform_class("podman")(ctx)
    try:
        plat.create()
        host = plat.published[resource_name(run_id, "listener")][8080]
        assert host != busy
        pod = ctx.podman.json("pod", "inspect", resource_name(run_id, "listener-pod"))
        pod = pod[0] if isinstance(pod, list) else pod
        assert pod["State"] == "Running", pod["State"]
        bindings = pod["InfraConfig"]["PortBindings"]["8080/tcp"]
        assert [b["HostPort"] for b in bindings] == [str(host)], bindings
    finally:
        taken.close()
        plat.teardown()
        shutil.rmtree(ctx.paths.run_dir, ignore_errors=True)
    assert_nothing_leaked(root, run_id)
