"""Every run ends with a true result, and mistakes knowable from the files are refused at plan time.

Each case runs the harness as a subprocess on an isolated root (tests/faultkit.py)
and asserts the exit code, result.json's category, summary.md's one `result:`
line and the first error line, and that nothing is left behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.faultkit import REPO, Outcome, Root, RootFactory, lines_with

pytestmark = [pytest.mark.podman, pytest.mark.slow]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INFRA = 0, 1, 2, 4
PLAN_SECONDS = 2.0  # a refusal from the files: well under the time any build would take


def result_of(root: Root) -> dict[str, object]:
    data: dict[str, object] = json.loads((root.path / "artifacts" / "latest" / "result.json").read_text())
    return data


def result_lines(out: Outcome) -> list[str]:
    return [
        ln for ln in (out.artifacts / "summary.md").read_text().splitlines() if ln.startswith("- result:")
    ]


def assert_ended(out: Outcome, root: Root, code: int, category: str) -> None:
    """The last line, result.json and `latest` agree on how the run ended."""
    assert out.code == code, str(out)
    assert out.output.strip().splitlines()[-1].startswith(f"exit {code}: {category}"), str(out)
    result = result_of(root)
    assert (result["exit_code"], result["category"], result["run_id"]) == (code, category, out.run_id), result
    assert len(result_lines(out)) == 1, (out.artifacts / "summary.md").read_text()
    assert root.leftovers(out.run_id) == [], str(out)


def stale_pass(root: Root) -> None:
    """What an earlier run left: `latest` says passed."""
    old = root.path / "artifacts" / "20200101-000000-0000"
    old.mkdir(parents=True)
    (old / "result.json").write_text(json.dumps({"run_id": old.name, "exit_code": 0, "category": "passed"}))
    (root.path / "artifacts" / "latest").symlink_to(old.name)


def write_suite(root: Root, files: dict[str, str]) -> Path:
    suite = root.path / "suite"
    suite.mkdir(exist_ok=True)
    for name, text in files.items():
        (suite / name).write_text(textwrap.dedent(text))
    root.set("tests", path=str(suite))
    return suite


# -- 2. a refusal before the run starts replaces `latest` --------------------------------------
def _bad_key(root: Root) -> str:
    root.set("timeouts", readyy=5)
    return "timeouts.readyy: unknown key"


def _bad_toml(root: Root) -> str:
    root.cfg.write_text(root.cfg.read_text() + "\n[broken\n")
    return "is not valid TOML"


def _bad_yaml(root: Root) -> str:
    root.manifest("gateway.yaml").write_text("kind: [unclosed\n")
    return "is not valid YAML"


def _missing_manifest(root: Root) -> str:
    root.data["manifests"] = [*root.data["manifests"], str(root.path / "manifests" / "gone.yaml")]
    root.write_config()
    return "gone.yaml not found"


def _unknown_dependency(root: Root) -> str:
    root.service("gateway", depends_on=["nobody"])
    return "depends on unknown service 'nobody'"


def _no_go_module(root: Root) -> str:
    root.service("gateway", source=str(root.path))
    return "is not a Go module (no go.mod)"


def _unused_service(root: Root) -> str:
    root.service("gateway", image="localhost/e2e-harness/nobody-uses-this")
    return "no workload in the manifests uses its image"


REFUSALS = {
    "unknown key": _bad_key,
    "invalid TOML": _bad_toml,
    "invalid YAML": _bad_yaml,
    "missing manifest": _missing_manifest,
    "unknown depends_on": _unknown_dependency,
    "no go.mod": _no_go_module,
    "service no workload uses": _unused_service,
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_refusal_before_the_run_writes_its_own_result(roots: RootFactory, case: str) -> None:
    root = roots.make("refused")
    stale_pass(root)
    expect = REFUSALS[case](root)

    out = root.e2e("-k", "smoke", timeout=60)

    assert_ended(out, root, EXIT_USAGE, "usage or config error")
    assert out.seconds < PLAN_SECONDS * 2, str(out)
    assert expect in out.output, str(out)
    summary = (out.artifacts / "summary.md").read_text()
    assert "- result: **REFUSED** before anything started" in summary, summary
    assert expect in summary, summary
    assert not lines_with(out.output, "> build:"), "nothing may be built"


def test_a_command_line_mistake_writes_its_result_too(roots: RootFactory) -> None:
    root = roots.make("refused-argv")
    stale_pass(root)

    out = root.harness("e2e", "--platform", "nowhere", timeout=60)

    assert_ended(out, root, EXIT_USAGE, "usage or config error")
    assert "invalid choice: 'nowhere'" in out.output, str(out)


# -- 6. mistakes in the files, found at plan time ----------------------------------------------
SECRET_KEY = ("key: token}", "key: tokn}")


@pytest.mark.parametrize(
    ("case", "edit", "expect"),
    [
        (
            "secretKeyRef to a missing key",
            ("datastore.yaml", *SECRET_KEY),
            "env 'WRITE_TOKEN' (secretKeyRef): Secret 'datastore-token' has no key 'tokn' (its keys: token)",
        ),
        (
            "configMapRef to an object no manifest defines",
            ("gateway.yaml", "configMapRef: {name: gateway-config}", "configMapRef: {name: gateway-cfg}"),
            "envFrom (configMapRef): ConfigMap 'gateway-cfg' is defined by no manifest",
        ),
        (
            "a readiness probe on an undeclared named port",
            ("gateway.yaml", "tcpSocket: {port: http}", "tcpSocket: {port: web}"),
            "the readiness probe (tcpSocket) uses port 'web', which the container does not declare "
            "(its named ports: http)",
        ),
        (
            "a command the built image does not hold",
            (
                "gateway.yaml",
                "image: localhost/e2e-harness/gateway:dev\n",
                "image: localhost/e2e-harness/gateway:dev\n          command: [./podinfo]\n",
            ),
            "container 'gateway': its command runs './podinfo', which the image the harness builds for "
            "service 'gateway' does not hold (it holds /app)",
        ),
        (
            "an exec probe calling a binary the image does not hold",
            ("datastore.yaml", 'command: ["/app", "probe", "/ready"]', 'command: ["podcli", "check"]'),
            "its startup probe (exec) runs 'podcli'",
        ),
        (
            "two Services on one nodePort",
            ("datastore.yaml", "nodePort: 30081", "nodePort: 30080"),
            "nodePort 30080 is used by Service/datastore",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v else "",
)
def test_mistakes_in_the_manifests_are_refused_at_plan_time(
    roots: RootFactory, case: str, edit: tuple[str, str, str], expect: str
) -> None:
    root = roots.make("plan")
    root.edit_manifest(*edit)

    out = root.e2e("-k", "smoke", timeout=60)

    assert_ended(out, root, EXIT_USAGE, "usage or config error")
    assert out.seconds < PLAN_SECONDS * 2, str(out)
    assert expect in out.output, str(out)


def test_a_tests_path_that_does_not_exist_is_refused_at_plan_time(roots: RootFactory) -> None:
    root = roots.make("no-suite").set("tests", path=str(Path("/nonexistent/e2e")))

    out = root.e2e(timeout=60)

    assert_ended(out, root, EXIT_USAGE, "usage or config error")
    assert "tests.path /nonexistent/e2e does not exist" in out.output, str(out)


# -- 9. a suite that imported the harness's internals ------------------------------------------
def test_a_suite_importing_a_moved_module_is_told_which_fixture_replaces_it(roots: RootFactory) -> None:
    root = roots.make("old-suite")
    suite = write_suite(root, {
        "conftest.py": "from infra.stack import platform_from_state\n",
        "test_x.py": "def test_x():\n    pass\n",
    })  # fmt: skip

    out = root.e2e(timeout=60)

    assert_ended(out, root, EXIT_USAGE, "usage or config error")
    assert (
        f"{suite}/conftest.py:1: imports infra.stack, which the harness no longer has; use the `platform` "
        "fixture (restart, stop, start, scale, logs of a service)" in out.output
    ), str(out)


# -- 1, 3, 10. what the suite did, said truly ----------------------------------------------------
def test_a_suite_that_hangs_names_the_test_keeps_diagnostics_and_fails(roots: RootFactory) -> None:
    root = roots.make("hung").set("timeouts", tests=30)  # xdist's start-up at nice 19 on a busy machine
    write_suite(root, {"test_hang.py": """\
        import time


        def test_quick():
            pass


        def test_hangs_forever():
            time.sleep(300)
        """})  # fmt: skip

    out = root.e2e("-n", "2", timeout=120)

    assert_ended(out, root, EXIT_FAILED, "tests failed")
    assert out.seconds < 90, str(out)
    summary = (out.artifacts / "summary.md").read_text()
    assert "- result: **TESTS FAILED**: 1 passed, 0 flaky, 0 failed, 1 hung" in summary, summary
    assert re.search(r"\*\*hung\*\* \(still running when timeouts.tests, 30 s, ran out\): `\S+test_hang.py::"
                     r"test_hangs_forever`", summary), summary  # fmt: skip
    junit = (out.artifacts / "junit.xml").read_text()
    assert 'name="test_hangs_forever"' in junit and "still running when timeouts.tests" in junit, junit
    assert (out.artifacts / "diagnostics" / "config.json").is_file()


def test_a_suite_that_cannot_be_collected_is_not_a_pass(roots: RootFactory) -> None:
    root = roots.make("uncollectable")
    write_suite(root, {
        "test_ok.py": "def test_ok():\n    pass\n",
        "test_broken.py": "def test_broken(:\n    pass\n",
        "test_fixture.py": "def test_needs(no_such_fixture):\n    pass\n",
    })  # fmt: skip

    out = root.e2e(timeout=120)

    assert_ended(out, root, EXIT_FAILED, "tests failed")
    summary = (out.artifacts / "summary.md").read_text()
    assert result_lines(out) == [
        "- result: **TESTS FAILED**: 1 passed, 0 flaky, 2 failed, 0 hung, 0 skipped"
    ], summary
    broken = r"could not collect\*\*: `\S*test_broken.py`: SyntaxError: .+ \(test_broken.py, line 1\)"
    assert re.search(broken, summary), summary
    assert "test_needs`: fixture 'no_such_fixture' not found" in summary, summary


def test_no_test_collected_says_no_test_ran(roots: RootFactory) -> None:
    root = roots.make("empty")
    write_suite(root, {"test_nothing.py": "X = 1\n"})

    out = root.e2e(timeout=120)

    assert out.code == 5, str(out)
    assert result_lines(out) == [
        "- result: **NO TEST RAN** (pytest collected none; check tests.path, -k and -m)"
    ]
    assert root.leftovers(out.run_id) == [], str(out)


@pytest.mark.parametrize("workers", ["0", "2"])
def test_an_interrupt_prints_no_plugin_tracebacks(roots: RootFactory, workers: str) -> None:
    root = roots.make("quiet-interrupt")
    started, release = root.add_blocking_suite()
    run = root.start("e2e", "--platform", "podman", "--", "-n", workers)
    try:
        run.wait_until("the E2E suite to start", started.exists)
        run.signal(signal.SIGINT)
        out = run.wait(timeout=180)
    finally:
        release.touch()
        run.kill()

    assert_ended(out, root, 130, "interrupted")
    assert "PluggyTeardownRaisedWarning" not in out.output and "cannot send" not in out.output, str(out)
    assert "Traceback" not in out.output, str(out)


# -- 8. securityContext on podman ---------------------------------------------------------------
def test_the_gateways_security_context_is_what_its_container_runs_with(roots: RootFactory) -> None:
    """The example's gateway carries a production pod's hardening; podman gives each field for real."""
    root = roots.make("hardened")
    out = root.harness("up", "--platform", "podman")
    try:
        assert out.code == EXIT_OK, str(out)
        name = f"e2eh-{out.run_id}-gateway"
        inspect = json.loads(root.podman("container", "inspect", name))[0]
        init = json.loads(root.podman("container", "inspect", f"e2eh-{out.run_id}-gateway-init0"))[0]
    finally:
        down = root.harness("down", "--run-id", out.run_id)
    assert down.code == 0, str(down)
    host = inspect["HostConfig"]
    assert inspect["Config"]["User"] == "65532:65532" and init["Config"]["User"] == "65532:65532", inspect
    assert host["ReadonlyRootfs"] is True and init["HostConfig"]["ReadonlyRootfs"] is False, host
    assert "no-new-privileges" in host["SecurityOpt"], host
    assert host["CapAdd"] in ([], None) and "CAP_CHOWN" in host["CapDrop"], host  # drop: [ALL]
    assert inspect["EffectiveCaps"] in ([], None), inspect["EffectiveCaps"]
    assert root.leftovers(out.run_id) == []


def test_run_as_non_root_on_an_image_that_runs_as_root_fails_in_seconds_with_the_kubelets_words(
    roots: RootFactory,
) -> None:
    root = roots.make("root-image").edit_manifest(
        "datastore.yaml", "      terminationGracePeriodSeconds: 15\n",
        "      terminationGracePeriodSeconds: 15\n      securityContext: {runAsNonRoot: true}\n",
    )  # fmt: skip

    out = root.e2e("-k", "smoke", timeout=120)

    assert_ended(out, root, EXIT_INFRA, "infrastructure failure")
    assert out.seconds < 45, str(out)
    assert "container 'datastore' of StatefulSet/datastore" in out.output, str(out)
    assert "container has runAsNonRoot and image will run as root" in out.output, str(out)


@pytest.mark.parametrize(
    ("field", "expect"),
    [
        ("seLinuxOptions: {level: 's0:c1,c2'}", "spec.template.spec.securityContext.seLinuxOptions is not"),
        ("seccompProfile: {type: Localhost, localhostProfile: p.json}", "seccompProfile.localhostProfile"),
        (
            "supplementalGroupsPolicy: Strict",
            "securityContext.supplementalGroupsPolicy: 'Strict' (podman honours",
        ),
    ],
)
def test_a_security_field_podman_cannot_give_is_refused_field_by_field(
    roots: RootFactory, field: str, expect: str
) -> None:
    root = roots.make("sec-refused").edit_manifest(
        "gateway.yaml", "        seccompProfile: {type: RuntimeDefault}\n", f"        {field}\n"
    )

    out = root.e2e("-k", "smoke", timeout=60)

    assert_ended(out, root, EXIT_USAGE, "usage or config error")
    assert expect in out.output, str(out)
    assert "next: run them on a real cluster with `--platform kind`" in out.output, str(out)


# -- 5. kind with no kind/cluster.yaml -------------------------------------------------------
def test_a_named_kind_config_that_is_missing_is_refused_with_a_copy_command_that_works(
    roots: RootFactory, tmp_path: Path
) -> None:
    root = roots.make("no-kind-config").set("platform", kind_config="kind/cluster.yaml")

    out = root.harness("e2e", "--platform", "kind", timeout=60)

    assert_ended(out, root, EXIT_USAGE, "usage or config error")
    line = next(ln for ln in out.output.splitlines() if "kind config" in ln and "next:" in ln)
    command = line.split("next: ", 1)[1].split(", or remove", 1)[0]
    subprocess.run(["bash", "-c", command], check=True, timeout=30, env=dict(os.environ))
    assert (root.path / "kind" / "cluster.yaml").read_text() == (REPO / "kind" / "cluster.yaml").read_text()
