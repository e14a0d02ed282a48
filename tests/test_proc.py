"""infra.proc: the one subprocess chokepoint and the recording runner."""

from __future__ import annotations

import logging
import os
import shlex
import sys
import threading
import time
from pathlib import Path

import pytest

from infra.proc import (
    TAIL_LINES,
    CommandError,
    CommandTimeout,
    ExecutableNotFound,
    OutputGate,
    RecordingRunner,
    Result,
    SubprocessRunner,
    niced,
    tail,
)

PY = sys.executable


def py(code: str) -> list[str]:
    return [PY, "-c", code]


# -- SubprocessRunner -----------------------------------------------------------


def test_refuses_a_shell_string() -> None:
    with pytest.raises(TypeError, match="argv must be a list"):
        SubprocessRunner().run("echo hello", timeout=5)  # type: ignore[arg-type]


def test_real_command_output_and_result() -> None:
    res = SubprocessRunner().run(py("print('hello'); import sys; print('warn', file=sys.stderr)"), timeout=30)
    assert res.ok
    assert res.returncode == 0
    assert res.stdout == "hello\n"
    assert res.stderr == "warn\n"
    assert res.argv == (PY, "-c", "print('hello'); import sys; print('warn', file=sys.stderr)")
    assert res.seconds >= 0


def test_argv_items_are_stringified(tmp_path: Path) -> None:
    res = SubprocessRunner().run([PY, "-c", "import sys; print(sys.argv[1])", tmp_path], timeout=30)
    assert res.argv[-1] == str(tmp_path)
    assert res.stdout.strip() == str(tmp_path)


def test_missing_executable_says_not_on_path() -> None:
    with pytest.raises(ExecutableNotFound) as info:
        SubprocessRunner().run(["e2eh-no-such-executable-xyz", "--version"], timeout=5)
    err = info.value
    assert isinstance(err, CommandError)
    assert err.returncode == 127
    assert err.argv == ("e2eh-no-such-executable-xyz", "--version")
    assert "'e2eh-no-such-executable-xyz' is not on PATH" in str(err)
    assert "next: install e2eh-no-such-executable-xyz" in str(err)


def test_missing_working_directory_is_not_reported_as_missing_executable(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(CommandError) as info:
        SubprocessRunner().run(py("print(1)"), timeout=5, cwd=missing)
    assert not isinstance(info.value, ExecutableNotFound)
    assert f"working directory {missing} does not exist" in str(info.value)


def test_nonzero_exit_raises_with_argv_code_and_output_tail() -> None:
    argv = py("import sys; print('out-line'); print('err-line', file=sys.stderr); sys.exit(3)")
    with pytest.raises(CommandError) as info:
        SubprocessRunner().run(argv, timeout=30, hint="look at the thing")
    err = info.value
    assert err.argv == tuple(argv)
    assert err.returncode == 3
    assert "out-line" in err.output_tail
    assert "err-line" in err.output_tail
    msg = str(err)
    assert msg.startswith(f"command failed (exit 3): {shlex.join(argv)}")
    assert "err-line" in msg
    assert msg.endswith("next: look at the thing")


def test_output_tail_keeps_only_the_last_lines() -> None:
    argv = py("import sys\nfor i in range(100): print(f'line{i}')\nsys.exit(1)")
    with pytest.raises(CommandError) as info:
        SubprocessRunner().run(argv, timeout=30)
    lines = info.value.output_tail.splitlines()
    assert len(lines) == TAIL_LINES
    assert lines[-1] == "line99"
    assert lines[0] == f"line{100 - TAIL_LINES}"


def test_check_false_returns_the_failure() -> None:
    res = SubprocessRunner().run(py("import sys; sys.exit(7)"), timeout=30, check=False)
    assert res.returncode == 7
    assert not res.ok


def test_timeout_raises_command_timeout() -> None:
    argv = py("import time; print('started', flush=True); time.sleep(30)")
    with pytest.raises(CommandTimeout) as info:
        SubprocessRunner().run(argv, timeout=0.5)
    err = info.value
    assert isinstance(err, CommandError)
    assert err.timeout == 0.5
    assert err.returncode == -1
    assert err.argv == tuple(argv)
    assert "timed out after 0.5s" in str(err)
    assert str(err).endswith("next: see the output above")


def test_a_timeout_keeps_the_callers_next_step() -> None:
    """A hung command is where the caller's hint matters most (kind create stuck joining a node)."""
    argv = py("import time; time.sleep(30)")
    with pytest.raises(CommandTimeout, match=r"timed out after 0.3s\nnext: read the node logs$"):
        SubprocessRunner().run(argv, timeout=0.3, hint="read the node logs")


def test_env_is_added_to_the_environment_and_cwd_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("E2EH_FROM_OS", "os")
    monkeypatch.setenv("E2EH_BOTH", "os")
    code = "import os; print(os.environ['E2EH_FROM_OS'], os.environ['E2EH_BOTH'], os.getcwd())"
    res = SubprocessRunner().run(
        py(code), timeout=30, env={"E2EH_BOTH": "call", "E2EH_NEW": "1"}, cwd=tmp_path
    )
    assert res.stdout.split() == ["os", "call", str(tmp_path.resolve())]
    assert "E2EH_NEW" not in os.environ  # the runner never edits the parent's environment


def test_command_is_logged_shell_quoted(caplog: pytest.LogCaptureFixture) -> None:
    argv = py("print('a b')")
    with caplog.at_level(logging.INFO, logger="infra.proc"):
        SubprocessRunner().run(argv, timeout=30)
    assert any(r.getMessage() == f"$ {shlex.join(argv)}" for r in caplog.records)


def test_the_log_keeps_a_failed_output_whole_and_cuts_a_long_successful_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG", logger="infra.proc")
    script = "import sys\nfor i in range(500): print(f'line {i}')\nsys.exit(int(sys.argv[1]))"
    runner = SubprocessRunner()
    runner.run([sys.executable, "-c", script, "0"], timeout=30)
    logged = caplog.text
    assert "line 0\n" in logged and "line 499\n" in logged, logged
    assert "line 250\n" not in logged and "[... 460 lines left out ...]" in logged, logged
    caplog.clear()
    runner.run([sys.executable, "-c", script, "3"], timeout=30, check=False)
    assert "line 250\n" in caplog.text and "left out" not in caplog.text


def test_niced_prefixes_nice_and_leaves_the_argv_where_there_is_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = niced(["python", "-V"], 19)
    assert Path(argv[0]).name == "nice" and argv[1:] == ["-n", "19", "python", "-V"]
    monkeypatch.setenv("PATH", str(tmp_path))  # no `nice` there
    assert niced(["python", "-V"], 19) == ["python", "-V"]


def test_tail_helper() -> None:
    assert tail("\n a\nb\nc\n\n", lines=2) == "b\nc"
    assert tail("") == ""


# -- RecordingRunner ------------------------------------------------------------


def test_recording_runner_records_and_answers_unscripted_with_success(tmp_path: Path) -> None:
    runner = RecordingRunner()
    res = runner.run(["podman", "ps"], timeout=9, env={"A": "1"}, cwd=tmp_path)
    assert res == Result(("podman", "ps"), 0, "", "", 0.0)
    assert runner.argvs() == [("podman", "ps")]
    call = runner.calls[0]
    assert (call.env, call.cwd, call.timeout) == ({"A": "1"}, str(tmp_path), 9)


def test_recording_runner_first_matching_prefix_wins() -> None:
    runner = RecordingRunner()
    runner.on(["kind", "get", "clusters"], stdout="one\n")
    runner.on(["kind"], stdout="any kind\n")
    assert runner.run(["kind", "get", "clusters"], timeout=1).stdout == "one\n"
    assert runner.run(["kind", "version"], timeout=1).stdout == "any kind\n"
    assert runner.run(["podman", "version"], timeout=1).stdout == ""


def test_recording_runner_raises_on_scripted_failure_unless_unchecked() -> None:
    runner = RecordingRunner()
    runner.on(["podman", "image", "exists"], returncode=1)
    with pytest.raises(CommandError) as info:
        runner.run(["podman", "image", "exists", "x"], timeout=1, hint="h")
    assert info.value.returncode == 1
    assert runner.run(["podman", "image", "exists", "x"], timeout=1, check=False).returncode == 1


def test_recording_runner_refuses_a_shell_string() -> None:
    with pytest.raises(TypeError):
        RecordingRunner().run("kind get clusters", timeout=1)  # type: ignore[arg-type]


def test_a_command_under_way_stops_when_the_run_is_cancelled() -> None:
    from infra.proc import CANCEL, CommandCancelled

    CANCEL.clear()
    timer = threading.Timer(0.3, CANCEL.set)
    timer.start()
    start = time.monotonic()
    try:
        with pytest.raises(CommandCancelled, match="cancelled: the run was interrupted"):
            SubprocessRunner().run(["sleep", "30"], timeout=60)
    finally:
        timer.cancel()
        CANCEL.clear()
    assert time.monotonic() - start < 10  # not the 30 s of the command, nor its 60 s timeout


def test_a_command_started_after_the_interrupt_runs_to_the_end() -> None:
    """Teardown runs after Ctrl-C: its commands must not be cancelled."""
    from infra.proc import CANCEL

    CANCEL.set()
    try:
        res = SubprocessRunner().run(["sh", "-c", "sleep 0.5; echo done"], timeout=30)
    finally:
        CANCEL.clear()
    assert res.stdout.strip() == "done"


def test_an_interrupt_while_waiting_stops_the_child_too(tmp_path: Path) -> None:
    """Ctrl-C lands in the harness while it waits: the command must not outlive it (no orphans)."""
    import signal

    pidfile = tmp_path / "pid"

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(KeyboardInterrupt):
            SubprocessRunner().run(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"], timeout=60)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    with pytest.raises(ProcessLookupError):
        os.kill(int(pidfile.read_text()), 0)


def test_held_output_is_shown_on_release_and_the_timeout_counts_from_there(
    capsys: pytest.CaptureFixture[str],
) -> None:
    gate = OutputGate()
    script = "import sys, time; print('header', flush=True); sys.stdin.close(); time.sleep(60)"
    errors: list[BaseException] = []

    def run() -> None:
        try:
            SubprocessRunner().run([sys.executable, "-c", script], timeout=0.5, capture=False, gate=gate)
        except BaseException as err:  # noqa: BLE001 - checked below
            errors.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(1.0)  # longer than the timeout: not yet counting, the gate is closed
    assert thread.is_alive()
    assert capsys.readouterr().out == ""
    gate.release()
    thread.join(30)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], CommandTimeout), errors
    assert "header" in capsys.readouterr().out


def test_discarded_output_goes_to_the_log_only(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    gate = OutputGate()
    gate.discard()
    caplog.set_level("INFO", logger="infra.proc")
    res = SubprocessRunner().run(
        [sys.executable, "-c", "print('collected 3 items')"], timeout=30, capture=False, gate=gate
    )
    assert res.ok
    assert capsys.readouterr().out == ""
    assert "collected 3 items" in caplog.text
