"""How a run says it ended: one `result:` line, errors in one line, the kind config it took."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest
from kubernetes.client.exceptions import ApiException

from infra.config import parse as parse_config
from infra.gocover.gocoverage import CoverageError
from infra.platforms import kind_config, podman_security
from infra.platforms.kube import KubeApiError, api_error
from infra.platforms.platform import PlatformError
from infra.run import testrun
from infra.run.run import summary_lines


def _outcome(code: int, **lists: list) -> testrun.TestOutcome:  # type: ignore[type-arg]
    return testrun.TestOutcome(code, **lists)


def test_a_coverage_failure_after_passing_tests_is_one_result_line() -> None:
    tests = _outcome(0, passed=["a", "b"])
    lines = summary_lines(6, "coverage", CoverageError("total E2E coverage 40.0% is below --fail-under 90%"),
                          tests, 1200)  # fmt: skip
    assert [ln for ln in lines if ln.startswith("- result:")] == [
        "- result: **COVERAGE FAILURE**: total E2E coverage 40.0% is below --fail-under 90%"
    ]
    assert "- tests: 2 passed, 0 flaky, 0 failed, 0 hung, 0 skipped" in lines


@pytest.mark.parametrize(
    ("code", "tests", "result"),
    [
        (0, _outcome(0, passed=["a"]), "passed: 1 passed"),
        (1, _outcome(1, passed=["a"]), "**TESTS FAILED**: 1 passed"),  # exit 1 with no failed test listed
        (5, _outcome(5), "**NO TEST RAN**"),
        (
            1,
            _outcome(1, hung=["t.py::x"], timed_out=30.0),
            "**TESTS FAILED**: 0 passed, 0 flaky, 0 failed, 1 hung",
        ),
        (4, _outcome(4), "**PYTEST COULD NOT RUN** (exit 4"),
    ],
)
def test_the_result_line_says_what_the_exit_code_says(
    code: int, tests: testrun.TestOutcome, result: str
) -> None:
    lines = summary_lines(code, "tests" if code == 1 else "", None, tests, 30)
    results = [ln for ln in lines if ln.startswith("- result:")]
    assert len(results) == 1 and results[0].startswith(f"- result: {result}"), lines
    if tests.hung:
        assert "- **hung** (still running when timeouts.tests, 30 s, ran out): `t.py::x`" in lines


def test_a_refused_object_reads_as_one_line_naming_it_the_field_and_the_apis_words() -> None:
    status = {
        "kind": "Status", "status": "Failure", "reason": "Invalid", "code": 422,
        "message": 'Service "b" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is '
                   "already allocated",
        "details": {"causes": [{"field": "spec.ports[0].nodePort", "message": "Invalid value: 30080"}]},
    }  # fmt: skip
    err = ApiException(status=422, reason="Unprocessable Entity")
    err.body = json.dumps(status)
    msg = str(api_error(err, "Service/b (manifests/b.yaml)"))
    assert msg == (
        'Kubernetes refused Service/b (manifests/b.yaml) (422 Invalid): Service "b" is invalid: '
        "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
    )
    assert "\n" not in msg and "HTTP response headers" not in msg
    assert isinstance(api_error(ApiException(status=500, reason="boom"), "x"), KubeApiError)


def _cfg(tmp_path: Path, **platform: str) -> object:
    return parse_config({"manifests": [], "services": [], "platform": platform}, tmp_path / "e2e.toml")


def test_no_kind_config_beside_the_users_config_takes_the_harnesss_own_and_says_so(tmp_path: Path) -> None:
    path, said = kind_config.base_file(_cfg(tmp_path))  # type: ignore[arg-type]
    assert path == kind_config.HARNESS_BASE and path.is_file()
    assert (
        said
        == f"{kind_config.HARNESS_BASE} (the harness's own: no {tmp_path}/kind/cluster.yaml beside e2e.toml)"
    )
    (tmp_path / "kind").mkdir()
    (tmp_path / "kind" / "cluster.yaml").write_text("kind: Cluster\n")
    assert kind_config.base_file(_cfg(tmp_path))[0] == tmp_path / "kind" / "cluster.yaml"  # type: ignore[arg-type]


def test_a_named_kind_config_that_is_missing_is_refused_with_a_copy_command_that_works(
    tmp_path: Path,
) -> None:
    where = tmp_path / "my dir"
    with pytest.raises(kind_config.KindConfigError) as info:
        kind_config.base_file(_cfg(where, kind_config="k/c.yaml"))  # type: ignore[arg-type]
    command = str(info.value).split("next: ", 1)[1].split(", or remove", 1)[0]
    subprocess.run(["bash", "-c", command], check=True, timeout=30)
    assert (where / "k" / "c.yaml").read_bytes() == kind_config.HARNESS_BASE.read_bytes()
    assert shlex.quote(str(where / "k")) in command


def test_a_security_context_becomes_podman_options() -> None:
    spec = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 2000,
                            "supplementalGroups": [3000], "seccompProfile": {"type": "RuntimeDefault"},
                            "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]},
    }  # fmt: skip
    ctr = {
        "securityContext": {
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "runAsUser": 1001,
            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
        }
    }

    def never() -> str:
        raise AssertionError("the image's user is not needed when runAsUser is set")

    assert podman_security.argv(ctr, spec, never, "c") == [
        "--user", "1001:65532", "--group-add", "2000", "--group-add", "3000",
        "--read-only", "--read-only-tmpfs=false", "--security-opt", "no-new-privileges",
        "--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE",
    ]  # fmt: skip
    assert podman_security.sysctl_argv(spec) == ["--sysctl", "net.ipv4.ip_unprivileged_port_start=0"]
    group_only = {"securityContext": {"runAsGroup": 7}}
    assert podman_security.argv({}, group_only, lambda: "app:app", "c") == ["--user", "app:7"]
    non_root = {"securityContext": {"runAsNonRoot": True}}
    assert podman_security.argv({}, non_root, lambda: "1000:1000", "c") == []
    for image_user, said in (("", "image will run as root"), ("0", "image will run as root"),
                             ("app", r"non-numeric user \(app\)")):  # fmt: skip
        with pytest.raises(PlatformError, match=said):
            podman_security.argv({}, non_root, lambda u=image_user: u, "c")  # type: ignore[misc]
