"""Helpers of the fault-injection tests: isolated roots, harness subprocesses, leak checks.

Every root is a temporary directory holding its own e2e.toml (absolute paths to
this repository's services and e2e/ suite, so the content-tagged images are
shared with every other root) and its own copy of the manifests, which a case
may break. The harness always runs as a subprocess, with a deadline on every
call and every wait.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from infra.cleanup import runlock
from infra.names import KIND_CLUSTER_LABEL, PREFIX, RUN_LABEL
from infra.podman_cli import podman_env

REPO = Path(__file__).resolve().parents[1]
HARNESS = (sys.executable, "-m", "infra")
RUN_LINE = re.compile(r"^run (\S+): artifacts in ", re.MULTILINE)
ENDPOINT_LINE = re.compile(r"^endpoint (\S+): (http://127\.0\.0\.1:(\d+))$", re.MULTILINE)

HARNESS_TIMEOUT = 240  # one harness invocation, from start to exit
PODMAN_TIMEOUT = 60
WAIT_TIMEOUT = 120  # waiting for a running harness to reach a point


# -- config files ----------------------------------------------------------
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {value!r}")


def dump_toml(data: Mapping[str, Any]) -> str:
    """Enough TOML for e2e.toml: scalars, arrays, tables, arrays of tables, inline tables."""
    top = [
        f"{k} = {_toml_value(v)}"
        for k, v in data.items()
        if not isinstance(v, dict | list) or (isinstance(v, list) and not any(isinstance(i, dict) for i in v))
    ]
    out = [*top, ""]
    for key, value in data.items():
        if isinstance(value, list) and value and all(isinstance(i, dict) for i in value):
            for item in value:
                out += [f"[[{key}]]", *(f"{k} = {_toml_value(v)}" for k, v in item.items()), ""]
        elif isinstance(value, dict):
            out += [f"[{key}]", *(f"{k} = {_toml_value(v)}" for k, v in value.items()), ""]
    return "\n".join(out)


def isolated_config(root: Path) -> dict[str, Any]:
    """The repo's e2e.toml with absolute paths; manifests point at root/manifests copies."""
    data: dict[str, Any] = tomllib.loads((REPO / "e2e.toml").read_text())
    for svc in data["services"]:
        svc["source"] = str(REPO / svc["source"])
    for stand_in in data.get("images", {}).get("stand_in", []):
        for key in ("source", "containerfile"):
            if key in stand_in:
                stand_in[key] = str(REPO / stand_in[key])
    data["manifests"] = [str(root / "manifests" / Path(m).name) for m in data["manifests"]]
    platform, coverage = data.setdefault("platform", {}), data.setdefault("coverage", {})
    platform["kind_config"] = str(REPO / platform.get("kind_config", "kind/cluster.yaml"))
    platform["kind_workers"] = 0  # one node is enough here: CI's kind session runs the example's four
    coverage["go_module"] = str(REPO / coverage.get("go_module", "services"))
    # one pytest process: these runs select a few tests, and each xdist worker would cost a CPU-second
    # of start-up on every run (the tests of the harness's xdist use set their own -n)
    data.setdefault("tests", {}).update(path=str(REPO / "e2e"), workers="0")
    return data


# -- manifests of fixture repos ---------------------------------------------
def deployment_yaml(
    name: str,
    image: str,
    *,
    port: tuple[str, int] | None = None,
    command: Sequence[str] = (),
    exec_probe: Sequence[str] = (),
    pull_never: bool = False,
) -> str:
    """A Deployment of one container, as a team writes one: a named port, a command, an exec probe."""
    container: dict[str, Any] = {"name": name, "image": image}
    if pull_never:
        container["imagePullPolicy"] = "Never"
    if command:
        container["command"] = list(command)
    if port:
        container["ports"] = [{"name": port[0], "containerPort": port[1]}]
    if exec_probe:
        container["readinessProbe"] = {"exec": {"command": list(exec_probe)}, "periodSeconds": 1}

    def labels() -> dict[str, str]:  # a copy each: one shared dict would be dumped as a YAML anchor
        return {"app": name}

    template = {"metadata": {"labels": labels()}, "spec": {"containers": [container]}}
    spec = {"replicas": 1, "selector": {"matchLabels": labels()}, "template": template}
    doc = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels()},
        "spec": spec,
    }
    return yaml.safe_dump(doc, sort_keys=False)


def service_yaml(name: str, port: tuple[str, int], *, node_port: int = 0) -> str:
    """The Service in front of a deployment_yaml's pods, by the port's name; a NodePort one with node_port."""
    entry: dict[str, Any] = {"name": port[0], "port": port[1], "targetPort": port[0]}
    spec: dict[str, Any] = {"selector": {"app": name}, "ports": [entry]}
    if node_port:
        spec = {"type": "NodePort", **spec}
        entry["nodePort"] = node_port
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec},
                          sort_keys=False)  # fmt: skip


# -- processes -------------------------------------------------------------
def harness_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a harness subprocess: ours, minus what would change how a run ends.

    No PYTHONPATH either: the harness must make itself importable to its pytest child.
    """
    drop = ("E2E_STATE_FILE", "E2E_KEEP_ON_FAILURE", "PYTHONPATH")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **(extra or {})}


@dataclass(frozen=True)
class Outcome:
    """One finished harness invocation."""

    argv: tuple[str, ...]
    code: int
    output: str  # stdout and stderr, interleaved as the harness wrote them
    seconds: float
    root: Path

    @property
    def run_id(self) -> str:
        return run_id_in(self.output) or ""

    @property
    def artifacts(self) -> Path:
        assert self.run_id, f"no `run <id>: artifacts in` line in:\n{self.output}"
        return self.root / "artifacts" / self.run_id

    def endpoints(self) -> dict[str, int]:
        return {name: int(port) for name, _, port in ENDPOINT_LINE.findall(self.output)}

    def __str__(self) -> str:  # what an assertion message shows
        return f"$ {' '.join(self.argv)}\nexit {self.code} after {self.seconds:.1f}s\n{self.output}"

    def run_log(self, lines: int = 60) -> str:
        """The tail of the run's run.log, for an assertion message (the test's root goes with it)."""
        log = self.artifacts / "run.log"
        tail = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else ["(no run.log)"]
        return f"--- {log}, last {lines} lines:\n" + "\n".join(tail)


def run_id_in(output: str) -> str | None:
    match = RUN_LINE.search(output)
    return match.group(1) if match else None


class Started:
    """A harness running in the background; its output goes to a file we poll."""

    def __init__(self, root: Root, argv: list[str], env: Mapping[str, str], log: Path) -> None:
        self.root, self.argv, self.log = root, tuple(argv), log
        self._fh: IO[bytes] = open(log, "wb")  # noqa: SIM115 - closed in wait()
        self.start = time.monotonic()
        self.proc = subprocess.Popen(
            argv, cwd=REPO, env=dict(env), stdout=self._fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        self.code: int | None = None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    @property
    def run_id(self) -> str:
        return run_id_in(self.output()) or ""

    def wait_until(self, what: str, check: Callable[[], bool], timeout: float = WAIT_TIMEOUT) -> None:
        """Poll check() until true; fail naming what we waited for (and the output) at the deadline."""
        deadline = time.monotonic() + timeout
        while not check():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"the harness exited ({self.proc.returncode}) before {what}:\n{self.output()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"gave up after {timeout:g}s waiting for {what}:\n{self.output()}")
            time.sleep(0.1)

    def wait_for_output(self, pattern: str, timeout: float = WAIT_TIMEOUT) -> None:
        rx = re.compile(pattern, re.MULTILINE)
        self.wait_until(f"output matching {pattern!r}", lambda: bool(rx.search(self.output())), timeout)

    def wait_for_containers(self, count: int, timeout: float = WAIT_TIMEOUT) -> list[str]:
        self.wait_for_output(RUN_LINE.pattern, timeout)
        run_id = self.run_id
        self.wait_until(
            f"{count} containers of run {run_id}", lambda: len(self.root.containers(run_id)) >= count, timeout
        )
        return self.root.containers(run_id)

    def signal(self, sig: signal.Signals) -> float:
        self.proc.send_signal(sig)
        return time.monotonic()

    def wait(self, timeout: float = HARNESS_TIMEOUT) -> Outcome:
        try:
            self.code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the harness did not exit within {timeout:g}s:\n{self.output()}") from None
        finally:
            self._fh.close()
        return Outcome(self.argv, self.code, self.output(), time.monotonic() - self.start, self.root.path)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._fh.close()


# -- roots -----------------------------------------------------------------
@dataclass
class Root:
    """An isolated harness root: its e2e.toml, manifests, .e2e/ and artifacts/."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)
    started: list[Started] = field(default_factory=list)
    run_ids: set[str] = field(default_factory=set)

    @property
    def cfg(self) -> Path:
        return self.path / "e2e.toml"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, **podman_env(self.path / ".e2e")}

    # config and manifests
    def write_config(self) -> Path:
        self.cfg.write_text(dump_toml(self.data))
        return self.cfg

    def set(self, section: str, **values: Any) -> Root:
        self.data.setdefault(section, {}).update(values)
        self.write_config()
        return self

    def service(self, name: str, **values: Any) -> Root:
        svc = next(s for s in self.data["services"] if s["name"] == name)
        svc.update(values)
        self.write_config()
        return self

    def manifest(self, name: str) -> Path:
        return self.path / "manifests" / name

    def edit_manifest(self, name: str, old: str, new: str) -> Root:
        path = self.manifest(name)
        text = path.read_text()
        assert text.count(old) == 1, f"{old!r} must occur exactly once in {path}"
        path.write_text(text.replace(old, new))
        return self

    def append_manifest(self, name: str, text: str) -> Root:
        path = self.manifest(name)
        path.write_text(path.read_text().rstrip("\n") + "\n---\n" + text.lstrip("\n"))
        return self

    def interrupt_suite(
        self,
        platform: str,
        *signals: signal.Signals,
        gap: float = 0.0,
        check: Callable[[Started], None] = lambda run: None,
        start_timeout: float = WAIT_TIMEOUT,
    ) -> Outcome:
        """Start e2e with a suite that blocks, signal the harness once it runs, wait for the end.

        `gap` sleeps between signals on purpose: it reproduces a sender's own delay (nox's).
        """
        started_marker, release = self.add_blocking_suite()
        run = self.start("e2e", "--platform", platform, "--", "-n", "0")
        try:
            run.wait_until("the E2E suite to start", started_marker.exists, timeout=start_timeout)
            check(run)
            for i, sig in enumerate(signals):
                if i:
                    time.sleep(gap)
                run.signal(sig)
            return run.wait(timeout=180)
        finally:
            release.touch()  # lets the blocking test end should anything still run it
            run.kill()

    def add_blocking_suite(self) -> tuple[Path, Path]:
        """A test suite whose one test signals it started and then waits for a release file.

        Returns (started, release). The test gives up by itself after its own deadline.
        """
        suite = self.path / "blocking_suite"
        suite.mkdir(exist_ok=True)
        started, release = self.path / "suite-started", self.path / "suite-release"
        (suite / "test_blocking.py").write_text(
            "import time\nfrom pathlib import Path\n\n\n"
            "def test_blocks_until_released():\n"
            f"    Path({str(started)!r}).touch()\n"
            "    deadline = time.monotonic() + 120\n"
            f"    while not Path({str(release)!r}).exists():\n"
            "        assert time.monotonic() < deadline, 'never released'\n"
            "        time.sleep(0.1)\n"
        )
        self.set("tests", path=str(suite))
        return started, release

    # running the harness
    def harness(
        self, *args: str, timeout: float = HARNESS_TIMEOUT, env: Mapping[str, str] | None = None
    ) -> Outcome:
        argv = [*HARNESS, "--config", str(self.cfg), *args]
        start = time.monotonic()
        try:
            proc = subprocess.run(
                argv,
                cwd=REPO,
                env=harness_env(env),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                errors="replace",
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
            self._remember(out)
            raise AssertionError(f"`{' '.join(argv)}` did not finish within {timeout:g}s:\n{out}") from None
        outcome = Outcome(tuple(argv), proc.returncode, proc.stdout, time.monotonic() - start, self.path)
        self._remember(outcome.output)
        return outcome

    def e2e(self, *pytest_args: str, timeout: float = HARNESS_TIMEOUT) -> Outcome:
        return self.harness("e2e", "--platform", "podman", "--", *pytest_args, timeout=timeout)

    def start(self, *args: str) -> Started:
        argv = [*HARNESS, "--config", str(self.cfg), *args]
        log = self.path / f"harness-{len(self.started)}.out"
        started = Started(self, argv, harness_env(), log)
        self.started.append(started)
        return started

    def _remember(self, output: str) -> None:
        self.run_ids.update(RUN_LINE.findall(output))

    # podman and what a run leaves
    def podman(self, *args: str, timeout: float = PODMAN_TIMEOUT, check: bool = True) -> str:
        proc = subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc.stdout

    def user_image(self, ref: str) -> None:
        """An image the user made under ref (no harness label): the waitfor program, built here."""
        rootfs = self.path / f"user-image-{secrets.token_hex(3)}"
        build = ["go", "build", "-o", str(rootfs / "waitfor"), "./waitfor"]
        env = {**os.environ, "CGO_ENABLED": "0"}
        subprocess.run(build, cwd=REPO / "services" / "thirdparty", env=env, check=True, timeout=300)
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(rootfs / "image.tar"), "waitfor"], check=True)
        self.podman(
            "import", "--change", 'ENTRYPOINT ["/waitfor"]', str(rootfs / "image.tar"), ref, timeout=120
        )

    def containers(self, run_id: str) -> list[str]:
        out = self.podman("ps", "--all", "--filter", f"label={RUN_LABEL}={run_id}", "--format", "{{.Names}}")
        return sorted(out.split())

    def pods(self, run_id: str) -> list[str]:
        out = self.podman("pod", "ps", "--filter", f"label={RUN_LABEL}={run_id}", "--format", "{{.Name}}")
        return sorted(out.split())

    def networks(self, run_id: str) -> list[str]:
        out = self.podman("network", "ls", "--filter", f"label={RUN_LABEL}={run_id}", "--format", "{{.Name}}")
        return sorted(out.split())

    def kind_nodes(self, run_id: str) -> list[str]:
        """Node containers of the run's own kind cluster (e2eh-<run id>)."""
        out = self.podman("ps", "--all", "--filter", f"label={KIND_CLUSTER_LABEL}={PREFIX}-{run_id}",
                          "--format", "{{.Names}}")  # fmt: skip
        return sorted(out.split())

    def run_dir(self, run_id: str) -> Path:
        return self.path / ".e2e" / "runs" / run_id

    def leftovers(self, run_id: str) -> list[str]:
        """Everything run_id left behind that a finished run must not leave."""
        assert run_id, "no run id"
        found = [f"container {c}" for c in self.containers(run_id)]
        found += [f"kind node {n}" for n in self.kind_nodes(run_id)]
        vols = json.loads(self.podman("volume", "ls", "--format", "json") or "[]") or []
        found += [
            f"volume {v['Name']} of a kind node"
            for v in vols
            if any(key.startswith(f"{PREFIX}-{run_id}-") for key in (v.get("Labels") or {}))
        ]
        found += [f"volume {v}" for v in self.podman("volume", "ls", "--quiet", "--filter",
                                                    f"label={RUN_LABEL}={run_id}").split()]  # fmt: skip
        found += [f"pod {p}" for p in self.pods(run_id)]
        found += [f"network {n}" for n in self.networks(run_id)]
        found += [f"archive {a}" for a in sorted((self.path / ".e2e" / "archives").glob("*.tar"))]
        if self.run_dir(run_id).exists():
            found.append(f"run dir {self.run_dir(run_id)}")
        found += [f"process {pid} (the suite's pytest)" for pid in suite_processes(run_id)]
        return found

    def present(self, run_id: str) -> dict[str, bool]:
        """Whether each kind of object of a (kept or live) run is still there."""
        return {
            "containers": bool(self.containers(run_id)),
            "network": bool(self.networks(run_id)),
            "run dir": self.run_dir(run_id).is_dir(),
        }

    def sweep(self) -> None:
        """Safety net after a failed case: stop our processes, remove our runs' objects."""
        for started in self.started:
            started.kill()
            self._remember(started.output())
        for run_id in sorted(self.run_ids):
            for name in self.containers(run_id):  # one per call: see test_stale_clusters.stand_ins
                self.podman("rm", "--force", "--time", "0", name, check=False, timeout=120)
            for node in self.kind_nodes(run_id):
                self.podman("rm", "--force", "--volumes", node, check=False, timeout=120)
            for pod in self.pods(run_id):
                self.podman("pod", "rm", "--force", pod, check=False, timeout=120)
            for net in self.networks(run_id):
                self.podman("network", "rm", "--force", net, check=False)
            runlock.unmark_kept(run_id)


class RootFactory:
    """Makes isolated roots under one base directory; sweeps them all at the end."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.roots: list[Root] = []

    def make(self, name: str) -> Root:
        path = self.base / f"{name}-{secrets.token_hex(2)}"
        (path / "manifests").mkdir(parents=True)
        for manifest in sorted((REPO / "manifests").glob("*.yaml")):
            shutil.copy2(manifest, path / "manifests" / manifest.name)
        root = Root(path, isolated_config(path))
        root.write_config()
        self.roots.append(root)
        return root

    def sweep(self) -> None:
        for root in self.roots:
            root.sweep()


def free_listening_socket() -> socket.socket:
    """A socket listening on a free 127.0.0.1 port (the caller closes it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


def lines_with(output: str, *needles: str) -> list[str]:
    return [line for line in output.splitlines() if all(n in line for n in needles)]


def diagnostics_files(outcome: Outcome) -> set[str]:
    diag = outcome.artifacts / "diagnostics"
    return {str(p.relative_to(diag)) for p in diag.rglob("*") if p.is_file()}


def suite_processes(run_id: str) -> list[int]:
    """Processes still running the suite of run_id (an early pytest carries the run's results path)."""
    return processes_with_env(
        lambda entry: entry.startswith(b"E2E_RESULTS_FILE=") and run_id.encode() in entry
    )


def processes_with_env(match: Callable[[bytes], bool]) -> list[int]:
    """This user's processes with an environment entry that matches."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if any(match(e) for e in environ):
            pids.append(int(proc.name))
    return pids
