"""The one subprocess chokepoint: argv lists, a timeout on every call, logged."""

from __future__ import annotations

import codecs
import contextlib
import logging
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

log = logging.getLogger("infra.proc")

TAIL_LINES = 25
LOG_LINES = 40  # of a successful command's output in run.log: `go list -json` wrote 23,000 a run


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


class CommandError(Exception):
    """A command failed: carries argv, exit code and the tail of its output."""

    def __init__(self, argv: Sequence[str], returncode: int, output: str, hint: str = "") -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.output_tail = tail(output)
        self.hint = hint
        msg = f"command failed (exit {returncode}): {shlex.join(self.argv)}"
        if self.output_tail:
            msg += "\n" + self.output_tail
        if hint:
            msg += f"\nnext: {hint}"
        super().__init__(msg)


class ExecutableNotFound(CommandError):
    def __init__(self, argv: Sequence[str]) -> None:
        super().__init__(
            argv,
            127,
            f"executable not found: {argv[0]!r} is not on PATH",
            hint=f"install {argv[0]} (see README: Prerequisites) or fix PATH",
        )


class CommandTimeout(CommandError):
    def __init__(self, argv: Sequence[str], timeout: float, output: str, hint: str = "") -> None:
        super().__init__(
            argv, -1, output + f"\ntimed out after {timeout:g}s", hint=hint or "see the output above"
        )
        self.timeout = timeout


class OutputGate:
    """Holds a child's console output until `release` (then it streams through), or `discard`s it.

    For a process started before its output may be shown (the suite's pytest,
    started while setup still draws its phases): discarded output goes to the log.
    The command's timeout counts from the release, not from its start.
    """

    def __init__(self) -> None:
        self._decided = threading.Event()
        self.shown = False
        self.aborted = False
        self.released_at: float | None = None

    def release(self) -> None:
        self.shown, self.released_at = True, time.monotonic()
        self._decided.set()

    def discard(self) -> None:
        self._decided.set()

    def abort(self) -> None:
        """Its output is not wanted, nor the rest of its work: the process is ended at once."""
        self.aborted = True
        self._decided.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._decided.wait(timeout)


class Runner(Protocol):
    """What every module that starts a process depends on (real or recording)."""

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
        check: bool = True,
        capture: bool = True,
        hint: str = "",
        stream_to: Path | None = None,
        gate: OutputGate | None = None,
    ) -> Result: ...


def niced(argv: Sequence[str], niceness: int) -> list[str]:
    """argv at a lower CPU priority (coreutils `nice` execs it: same pid, same process group); as it
    is where there is no `nice`."""
    nice = shutil.which("nice")
    return [nice, "-n", str(niceness), *argv] if nice else list(argv)


def _argv(argv: Sequence[str]) -> tuple[str, ...]:
    if isinstance(argv, str):  # a shell string would be split wrongly: refuse it
        raise TypeError("argv must be a list of strings, not a shell string")
    return tuple(str(a) for a in argv)


def _checked(result: Result, check: bool, hint: str) -> Result:
    if check and result.returncode != 0:
        raise CommandError(result.argv, result.returncode, result.stdout + result.stderr, hint)
    return result


CANCEL = threading.Event()
"""Set by a run on Ctrl-C/SIGTERM: commands and waits under way stop at once (see infra.waits)."""
POLL_SECONDS = 0.25
TERM_GRACE = 5.0


class CommandCancelled(CommandError):
    def __init__(self, argv: Sequence[str], returncode: int, output: str, hint: str = "") -> None:
        super().__init__(argv, returncode, output + "\ncancelled: the run was interrupted", hint)


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    tree = _signal_tree(proc, signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=TERM_GRACE)
    except subprocess.TimeoutExpired:
        _signal_tree(proc, signal.SIGKILL)
        out, err = proc.communicate()
    _kill_left(tree)
    return out or "", err or ""


def _communicate(
    proc: subprocess.Popen[str],
    args: tuple[str, ...],
    timeout: float,
    cancellable: bool,
    stream_to: Path | None,
    hint: str,
) -> tuple[str, str]:
    """Wait for the process; stop it when the deadline passes or the run is cancelled."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            out, err = proc.communicate(timeout=POLL_SECONDS)
            return out or "", err or ""
        except subprocess.TimeoutExpired:
            if cancellable and CANCEL.is_set():
                out, err = _stop(proc)
                raise CommandCancelled(args, proc.returncode, out + err + _read(stream_to)) from None
            if time.monotonic() >= deadline:
                _kill_tree(proc)
                out, err = proc.communicate()
                output = (out or "") + (err or "") + _read(stream_to)
                raise CommandTimeout(args, timeout, output, hint) from None


def _read(path: Path | None) -> str:
    return path.read_text(errors="replace") if path and path.exists() else ""


def _as_text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


class SubprocessRunner:
    """Runs commands for real. `env` entries are added to os.environ."""

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
        check: bool = True,
        capture: bool = True,
        hint: str = "",
        stream_to: Path | None = None,
        gate: OutputGate | None = None,
    ) -> Result:
        """stream_to: write stdout+stderr to that file as they come (long steps tail it).

        gate: console output (capture=False) held by an OutputGate, see there.
        """
        if gate is not None:
            return self._gated(argv, gate, timeout=timeout, env=env, cwd=cwd, check=check, hint=hint)
        args = _argv(argv)
        full_env = {**os.environ, **(env or {})}
        log.info("$ %s%s", shlex.join(args), f"  (cwd {cwd})" if cwd else "")
        start = time.monotonic()
        cancellable = not CANCEL.is_set()  # teardown after an interrupt must still run
        sink = stream_to.open("w") if stream_to else None
        try:
            proc = subprocess.Popen(  # noqa: S603 - the one chokepoint; argv lists only
                args,
                cwd=cwd,
                env=full_env,
                text=True,
                errors="replace",
                stdin=subprocess.DEVNULL,
                stdout=sink if sink else (subprocess.PIPE if capture else None),
                stderr=subprocess.STDOUT if sink else (subprocess.PIPE if capture else None),
            )
        except FileNotFoundError as exc:
            if sink:
                sink.close()
            if cwd is not None and not Path(cwd).is_dir():
                raise CommandError(args, 127, f"working directory {cwd} does not exist") from exc
            raise ExecutableNotFound(args) from exc
        try:
            out, err = _communicate(proc, args, timeout, cancellable, stream_to, hint)
        except CommandError as exc:
            log.info("%s after %.1fs: %s", type(exc).__name__, time.monotonic() - start, args[0])
            raise
        except BaseException:  # an interrupt raised while waiting: the child must not outlive it
            if proc.poll() is None:
                _stop(proc)
            raise
        finally:
            if sink:
                sink.close()
        stdout = _read(stream_to) if stream_to else out or ""
        result = Result(args, proc.returncode, stdout, err or "", time.monotonic() - start)
        if capture and (result.stdout or result.stderr):
            log.debug(
                "output of %s:\n%s", args[0], _for_log(result.stdout + result.stderr, whole=not result.ok)
            )
        log.info("exit %d after %.2fs: %s", result.returncode, result.seconds, args[0])
        return _checked(result, check, hint)

    def _gated(
        self,
        argv: Sequence[str],
        gate: OutputGate,
        *,
        timeout: float,
        env: Mapping[str, str] | None,
        cwd: Path | str | None,
        check: bool,
        hint: str,
    ) -> Result:
        args = _argv(argv)
        log.info("$ %s%s  (output held until released)", shlex.join(args), f"  (cwd {cwd})" if cwd else "")
        start = time.monotonic()
        cancellable = not CANCEL.is_set()
        try:
            proc = subprocess.Popen(  # noqa: S603 - the one chokepoint; argv lists only
                args,
                cwd=cwd,
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        except FileNotFoundError as exc:
            gate.discard()
            raise ExecutableNotFound(args) from exc
        assert proc.stdout is not None
        relay = threading.Thread(target=_relay, args=(proc.stdout, gate, args[0]), name="relay", daemon=True)
        relay.start()
        try:
            while True:
                try:
                    proc.wait(timeout=POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    if (cancellable and CANCEL.is_set()) or gate.aborted:
                        _end(proc)
                        raise CommandCancelled(args, proc.returncode, "") from None
                    if gate.released_at is not None and time.monotonic() >= gate.released_at + timeout:
                        _kill_tree(proc)
                        raise CommandTimeout(args, timeout, "", hint) from None
        except BaseException:
            if proc.poll() is None:
                _end(proc)
            gate.discard()  # a no-op once released
            raise
        finally:
            relay.join()
        result = Result(args, proc.returncode, "", "", time.monotonic() - start)
        log.info("exit %d after %.2fs: %s", result.returncode, result.seconds, args[0])
        return _checked(result, check, hint)


def _for_log(output: str, *, whole: bool) -> str:
    """A failed command's output whole; a successful one's first and last LOG_LINES / 2 lines."""
    lines = output.splitlines(keepends=True)
    if whole or len(lines) <= LOG_LINES:
        return output
    half = LOG_LINES // 2
    return "".join([*lines[:half], f"[... {len(lines) - LOG_LINES} lines left out ...]\n", *lines[-half:]])


def _end(proc: subprocess.Popen[bytes], grace: float = TERM_GRACE) -> None:
    """Stop a process whose output another thread reads (communicate would race it)."""
    tree = _signal_tree(proc, signal.SIGTERM if grace else signal.SIGKILL)
    try:
        proc.wait(timeout=grace or None)
    except subprocess.TimeoutExpired:
        _signal_tree(proc, signal.SIGKILL)
        proc.wait()
    _kill_left(tree)


def descendants(pid: int) -> list[int]:
    """Every living process below pid (Linux /proc), children first."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:  # the field after the parenthesised command, which may hold spaces
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = list(parents.get(pid, []))
    while todo:
        child = todo.pop(0)
        out.append(child)
        todo += parents.get(child, [])
    return out


def _started(pid: int) -> str:
    """A process's start time (/proc stat field 22): with the pid, it names one process."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _signal_tree(proc: subprocess.Popen[str] | subprocess.Popen[bytes], sig: int) -> list[tuple[int, str]]:
    """Signal a command and everything it started (pytest's xdist workers): none may outlive it, nor
    write to a console the harness has left. Returns the descendants signalled."""
    tree = [(pid, _started(pid)) for pid in descendants(proc.pid)]
    for pid in [*(pid for pid, _ in tree), proc.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    return tree


def _kill_left(tree: Sequence[tuple[int, str]]) -> None:
    """Descendants that outlived their parent's end (ignored SIGTERM): killed, if still the same."""
    for pid, started in tree:
        if started and _started(pid) == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _kill_tree(proc: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    """A timed-out command and what it started: killed at once."""
    _signal_tree(proc, signal.SIGKILL)
    proc.wait()


def _relay(stream: IO[bytes], gate: OutputGate, name: str) -> None:
    """Copy the child's output to our stdout once the gate is released; hold it until then."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    held: list[str] = []
    fd = stream.fileno()

    def show(text: str) -> None:
        if held:
            text, held[:] = "".join(held) + text, []
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()

    try:
        while True:
            readable, _, _ = select.select([fd], [], [], POLL_SECONDS / 2)
            chunk = os.read(fd, 65536) if readable else None
            text = decoder.decode(chunk or b"", final=chunk == b"")
            if gate.shown:
                show(text)
            elif text:
                held.append(text)
            if chunk == b"":
                break
        gate.wait()
        if gate.shown:
            show("")
        else:
            log.info("output of %s, not shown (discarded):\n%s", name, "".join(held).strip() or "(none)")
    finally:
        stream.close()


Responder = Callable[[tuple[str, ...]], Result | None]


@dataclass
class Call:
    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: str | None
    timeout: float


@dataclass
class RecordingRunner:
    """Records every call; answers from scripted responders (first match wins).

    Unscripted commands succeed with empty output, so a test states only what
    matters to it and asserts on `calls`.
    """

    responders: list[Responder] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on(self, prefix: Sequence[str], stdout: str = "", returncode: int = 0) -> None:
        want = tuple(prefix)

        def responder(argv: tuple[str, ...]) -> Result | None:
            if argv[: len(want)] == want:
                return Result(argv, returncode, stdout, "", 0.0)
            return None

        self.responders.append(responder)

    def argvs(self) -> list[tuple[str, ...]]:
        return [c.argv for c in self.calls]

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
        check: bool = True,
        capture: bool = True,
        hint: str = "",
        stream_to: Path | None = None,
        gate: OutputGate | None = None,
    ) -> Result:
        args = _argv(argv)
        with self.lock:
            self.calls.append(Call(args, dict(env or {}), str(cwd) if cwd else None, timeout))
        result = next(
            (r for r in (resp(args) for resp in self.responders) if r is not None),
            Result(args, 0, "", "", 0.0),
        )
        return _checked(result, check, hint)
