"""One run: setup, pytest e2e/, [coverage], diagnostics on failure, teardown or keep."""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Literal

from infra import config as config_mod
from infra import state, waits
from infra.builds import gotool, third_party
from infra.builds.build import go_version, plan_images
from infra.cleanup import runlock
from infra.config import Config, ConfigError
from infra.console import PhaseReporter, phase_table, say
from infra.gocover import coverflush, gocoverage, pertest_report
from infra.names import InvalidName, new_run_id, resource_name
from infra.paths import RunPaths, artifacts_dir, coverage_dir, mark_outputs, point_latest, state_dir
from infra.phases import Timeline
from infra.platforms import manifests, ports
from infra.platforms.platform import Context, Request, choose
from infra.platforms.stack import Stack, bring_up, make_platform, make_podman, platform_class
from infra.proc import CommandError, SubprocessRunner
from infra.run import diagnostics, doctor, suite_check, testrun

log = logging.getLogger("infra.run")

EXIT_OK, EXIT_USAGE, EXIT_INFRA, EXIT_COVERAGE, EXIT_INTERRUPTED = 0, 2, 4, 6, 130
EXIT_CATEGORIES = {
    EXIT_OK: "passed",
    1: "tests failed",
    EXIT_USAGE: "usage or config error",
    EXIT_INFRA: "infrastructure failure",
    EXIT_COVERAGE: "coverage failure",
    EXIT_INTERRUPTED: "interrupted",
}
"""nox turns every non-zero exit into 1: the category is also the last line and in result.json."""
KEEP_ENV = "E2E_KEEP_ON_FAILURE"


@dataclass(frozen=True)
class Options:
    config: str | None = None
    platform: str | None = None
    keep: bool = False
    reuse: str = ""
    sequential: bool = False
    coverage: bool = False
    fail_under: float | None = None
    pytest_args: tuple[str, ...] = ()
    then: Literal["test", "keep", "teardown"] = "test"  # after setup: e2e, `inv up`, bench
    force_build: bool = False
    root: Path | None = None
    per_test: bool = False  # coverage of every test on its own (serial run, flushes around each test)


class Interrupted(KeyboardInterrupt):
    pass


@contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM acts like Ctrl-C; the same signal again exits at once (cleanup finds the rest).

    A different second signal is the same interrupt passed on: nox answers Ctrl-C
    by sending SIGTERM to its child a moment later, and the teardown must go on.
    """
    first: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        waits.CANCEL.set()  # every wait, command and the setup DAG stop at once
        if first and signum == first[0]:
            sys.stderr.write("\ninterrupted twice: exiting now; `nox -s cleanup` removes what is left\n")
            os._exit(EXIT_INTERRUPTED)
        if first:
            sys.stderr.write(f"\n{signal.Signals(signum).name} after {signal.Signals(first[0]).name}: "
                             "already tearing down\n")  # fmt: skip
            return
        first.append(signum)
        raise Interrupted(signal.Signals(signum).name)

    waits.CANCEL.clear()
    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _setup_logging(paths: RunPaths) -> logging.Handler:
    paths.artifacts.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(paths.artifacts / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    return handler


def e2e(opts: Options) -> int:
    cfg: Config | None = None
    try:  # config and manifest mistakes: exit 2 before a run starts or anything is built
        cfg = config_mod.load(opts.config)
        docs = manifests.load_docs(cfg)
        notices = manifests.check(cfg, docs, coverage=opts.coverage)
        if opts.then == "test":
            notices += suite_check.check(cfg)
        if opts.coverage:
            coverflush.check_mains(cfg)
        if opts.per_test:
            check_per_test(cfg, opts)
    except (ConfigError, manifests.ManifestError, InvalidName) as err:
        return refuse(opts.root or (cfg.root if cfg else config_root(opts.config)), err)
    for notice in notices:
        say(notice)
    return Run(cfg, opts, docs).execute()


def config_root(config: str | None) -> Path:
    """Where a run's artifacts go when its config did not load: beside the file, as they would."""
    return Path(config).parent if config else Path.cwd()


def check_per_test(cfg: Config, opts: Options) -> None:
    """--per-test needs coverage, the flush file in every service and one test at a time."""
    problems = []
    if not opts.coverage:
        problems.append("--per-test needs --coverage (`nox -s e2e_coverage -- --per-test`)")
    if not coverflush.enabled(cfg):
        problems.append(f'coverage.flush_signal is "off" in {cfg.source_file}: set a signal, e.g. "SIGUSR1"')
    problems += [
        f"service {s.name!r} is built from its own Containerfile: the harness cannot add the flush file"
        for s in cfg.services
        if s.containerfile is not None
    ]
    if testrun.has_workers(opts.pytest_args):
        problems.append("--per-test runs the tests one at a time: drop -n from the pytest arguments")
    if problems:
        raise ConfigError("--per-test cannot run:\n  " + "\n  ".join(problems))


class Run:
    def __init__(self, cfg: Config, opts: Options, docs: list[manifests.Doc] | None = None) -> None:
        self.cfg, self.opts = cfg, opts
        self.docs = docs  # loaded once, when the caller has them already
        self.paths = RunPaths((opts.root or cfg.root).resolve(), new_run_id())
        self.timeline = Timeline()
        self.runner = SubprocessRunner()
        self.podman = make_podman(cfg, self.runner, self.paths.root)
        self.stack: Stack | None = None
        self.platform_name = ""
        self.failure: BaseException | None = None
        self.kind_of_failure = ""  # infrastructure | tests | coverage | interrupted
        self.tests: testrun.TestOutcome | None = None
        self.setup_seconds: float | None = None  # from the run's start to the stack being up
        self.setup_cpu_seconds: float | None = None  # the machine's CPU time meanwhile

    def execute(self) -> int:
        mark_outputs(self.paths.root, state_dir(self.paths.root), artifacts_dir(self.paths.root))
        if self.opts.coverage:
            mark_outputs(self.paths.root, coverage_dir(self.paths.root))
        handler = _setup_logging(self.paths)
        lock = runlock.hold(self.paths.run_id)  # cleanup leaves a live run alone
        point_latest(self.paths.root / "artifacts" / "latest", Path(self.paths.run_id))
        say(f"run {self.paths.run_id}: artifacts in {self.paths.artifacts}")
        code = EXIT_INFRA
        try:
            with interruptible():
                try:
                    code = self._main()
                except Interrupted as sig:
                    self.failure, self.kind_of_failure = sig, "interrupted"
                    say(f"interrupted ({sig}): tearing down what this run created")
                    code = EXIT_INTERRUPTED
                except Exception as err:
                    log.exception("the run failed")
                    self.failure, self.kind_of_failure = err, "infrastructure"
                    say(f"error: {err}")
                    code = EXIT_INFRA
                finally:
                    self._finish(code)
        finally:
            logging.getLogger().removeHandler(handler)
            runlock.release(lock, self.paths.run_id)
            write_result(self.paths, code)
        return code

    def _main(self) -> int:
        cfg, opts = self.cfg, self.opts
        choice = choose(opts.platform, cfg, self.podman)
        self.platform_name = choice.name
        say(f"platform: {choice.name} ({choice.reason})")
        try:
            say(f"go: {gotool.ensure(gotool.config_go_mods(cfg), self.runner).line()}")
        except gotool.GoNotFound as err:
            self.failure, self.kind_of_failure = err, "infrastructure"
            say(f"error: {err}")
            return EXIT_INFRA
        request = Request(
            cfg, self._docs, coverage=opts.coverage, reuse=opts.reuse, keeps_stack=opts.then == "keep"
        )
        refused = platform_class(choice.name).refusals(request)
        if refused:
            self.failure = ConfigError(refused[0])
            for line in refused:
                say(f"error: {line}")
            return EXIT_USAGE
        suite: testrun.Suite | None = None
        try:
            with self.timeline.timed("plan"):
                host_ports = ports.allocate(cfg)
                plan = plan_images(
                    cfg, coverage=opts.coverage, toolchain=go_version(self.runner), runner=self.runner
                )
                via = platform_class(choice.name).coverage_via
                pulled = coverflush.resolve(opts.coverage, cfg, via) is coverflush.CoverageMode.PULL
                pull_port = cfg.coverage.pull_port if pulled else 0
                rendered = manifests.render(
                    cfg, self._docs(), plan, coverage=opts.coverage, pull_port=pull_port
                )
            runlock.use_images(self.paths.run_id, [str(r) for r in plan.stand_ins])
            for name, ref in plan.refs.items():
                say(f"image {name}: {ref}")
            ctx = Context(
                config=cfg,
                paths=self.paths,
                runner=self.runner,
                podman=self.podman,
                coverage=opts.coverage,
                coverage_via=via,
                host_ports=host_ports,
                cluster=opts.reuse or resource_name(self.paths.run_id),
                reuse=bool(opts.reuse),
                rendered=rendered,
            )
            if opts.coverage:
                gocoverage.prepare_dirs(self.paths.covdata, cfg.names())
            platform = make_platform(choice.name, ctx)
            self.stack = Stack(cfg, self.paths, platform, plan)
            (self.paths.artifacts / "manifests.rendered.yaml").write_text(rendered.yaml())
            suite = self._suite() if opts.then == "test" else None
            if suite is not None and suite.one_process_because:
                say(f"tests: {suite.one_process_because}")
            early = None
            if suite is not None and not opts.sequential:  # pytest starts up while the stack deploys

                def early() -> None:
                    # a suite may read the state as it collects: endpoints are known, deploys under way
                    assert self.stack is not None
                    state.write(self.paths, self.stack.state("under way"), latest=False)
                    suite.start_early(wait_seconds=setup_deadline(cfg))

            with PhaseReporter() as reporter:
                bring_up(
                    self.stack,
                    runner=self.runner,
                    podman=self.podman,
                    timeline=self.timeline,
                    reporter=reporter,
                    parallel=not opts.sequential,
                    cancel=waits.CANCEL,
                    force_build=opts.force_build,
                    preflight=lambda: doctor.preflight(
                        cfg, self.runner, self.podman, self.paths.root, choice.name
                    ),
                    images_ready=early,
                )
        except BaseException as err:
            if suite is not None:
                suite.abandon(type(err).__name__)
            if not isinstance(err, Exception):
                raise
            self.failure, self.kind_of_failure = err, "infrastructure"
            say(f"SETUP FAILED: {err}")
            return EXIT_INFRA
        self.setup_seconds = self.timeline.now()
        self.setup_cpu_seconds = self.timeline.cpu_now()
        state.write(self.paths, self.stack.state())
        for name, url in self.stack.endpoints().items():
            say(f"endpoint {name}: {url}")
        if suite is None:
            return EXIT_OK
        with self.timeline.timed("tests"):
            self.tests = suite.run()
        code = self.tests.exit_code
        if code not in (0, testrun.NO_TESTS):
            self.kind_of_failure = "tests"
        if opts.coverage:
            code = self._coverage(code)
        return code

    def _suite(self) -> testrun.Suite:
        return testrun.Suite(
            self.cfg,
            self.runner,
            state_file=self.paths.state_file,
            artifacts=self.paths.artifacts,
            extra=self.opts.pytest_args,
            per_test=self._per_test_dir() if self.opts.per_test else None,
            times_file=state_dir(self.paths.root) / "test-seconds.json",
        )

    def _docs(self) -> list[manifests.Doc]:
        if self.docs is None:
            self.docs = manifests.load_docs(self.cfg)
        return self.docs

    def _per_test_dir(self) -> Path:
        return self.paths.coverage_run / "per-test" / "covdata"

    def _coverage(self, code: int) -> int:
        assert self.stack is not None
        mode = "per-test" if self.opts.per_test else "suite"
        try:
            with self.timeline.timed("coverage"):
                report = gocoverage.collect_run(self.stack.platform, self.runner, mode)
            say(gocoverage.describe(report))
            if self.opts.per_test:
                with self.timeline.timed("coverage:per-test"):
                    self._per_test_reports(report)
        except (gocoverage.CoverageError, pertest_report.PerTestError, CommandError) as err:
            self.failure, self.kind_of_failure = err, "coverage"
            say(f"COVERAGE FAILED: {err}")
            return code or EXIT_COVERAGE
        threshold = self.opts.fail_under if self.opts.fail_under is not None else self.cfg.coverage.fail_under
        if threshold and report.total_percent < threshold:
            say(
                f"COVERAGE FAILED: total E2E coverage {report.total_percent:.1f}% "
                f"is below --fail-under {threshold:g}%"
            )
            if not self.kind_of_failure:
                self.failure = gocoverage.CoverageError(
                    f"total E2E coverage {report.total_percent:.1f}% is below --fail-under {threshold:g}%"
                )
                self.kind_of_failure = "coverage"
            return code or EXIT_COVERAGE
        return code

    def _per_test_reports(self, report: gocoverage.CoverageReport) -> None:
        out = self.paths.coverage_run / "per-test"
        e2e_dir = self.paths.coverage_run.parent
        assert report.modules is not None
        summary = pertest_report.build(
            self._per_test_dir(), out, report.modules, self.runner,
            run_id=self.paths.run_id, services=self.cfg.names(), total_percent=report.total_percent,
            total_dir=report.out_dir, usual=pertest_report.usual_run(e2e_dir, self.paths.run_id),
        )  # fmt: skip
        pertest_report.publish(out, e2e_dir / "per-test")
        say(pertest_report.describe(summary))
        say(f"  reports: {out}/index.html, {e2e_dir / 'per-test'}/summary.json")
        if summary["errors"]:
            raise pertest_report.PerTestError(
                "no per-test coverage for: "
                + "; ".join(f"{n}: {e}" for n, e in summary["errors"].items())
                + "\nnext: see the flush error above (the services' logs are in the diagnostics)"
            )

    def _finish(self, code: int) -> None:
        failed = bool(self.kind_of_failure)
        if failed:
            self._diagnostics()  # before anything is removed
        keep = self.opts.keep or self.opts.then == "keep" or (failed and os.environ.get(KEEP_ENV) == "1")
        if self.stack is not None and keep:
            if self.setup_seconds is None:  # setup failed: `inv down --run-id` works as printed
                state.write(self.paths, self.stack.state("failed"), latest=False)
            elsewhere = not self.stack.platform.on_this_machine
            runlock.mark_kept(self.paths.run_id, remove_command(self.cfg, self.paths), elsewhere=elsewhere)
            self._print_kept()
        elif self.stack is not None:
            with self.timeline.timed("teardown"):
                try:
                    self.stack.platform.teardown()
                except Exception as err:  # noqa: BLE001 - report; cleanup finishes it
                    say(f"teardown failed: {err}; next: nox -s cleanup")
                else:  # the run dir holds state, kubeconfig and hostPath dirs
                    shutil.rmtree(self.paths.run_dir, ignore_errors=True)
        if self.stack is not None:  # a kept stack runs the new images too
            self.podman.remove_displaced()  # what this run's (or an earlier one's) rebuilds untagged
        if self.stack is not None and not keep:  # the stand-ins no other live run uses
            with runlock.images_lock():  # no run notes one between the check and the removal
                others = runlock.images_used_by_others(self.paths.run_id)
                gone = third_party.remove_stand_ins(
                    self.podman, [r for r in self.stack.plan.stand_ins if str(r) not in others]
                )
            log.info("stand-ins removed at teardown: %s", ", ".join(map(str, gone)) or "none")
        self.paths.archive.unlink(missing_ok=True)
        self._write_timings()
        self._write_summary(code)

    def _diagnostics(self) -> None:
        platform = self.stack.platform if self.stack else None
        with self.timeline.timed("diagnostics"):
            where = diagnostics.collect(
                self.paths.diagnostics,
                config=self.cfg,
                platform=platform,
                rendered=self.stack.rendered if self.stack else None,
                timeline=self.timeline,
                error=self.failure,
            )
        say(f"diagnostics: {where}")

    def _print_kept(self) -> None:
        assert self.stack is not None
        say(f"kept the stack of run {self.paths.run_id} ({self.stack.platform.name}):")
        for name, url in self.stack.endpoints().items():
            say(f"  {name}: {url}")
        for line in kept_hints(self.cfg, self.paths, self.stack.platform.inspect_command()):
            say(f"  {line}")

    def _write_timings(self) -> None:
        total = self.timeline.now()
        data = {
            "run_id": self.paths.run_id,
            "platform": self.platform_name,
            "mode": "sequential" if self.opts.sequential else "parallel",
            "coverage": self.opts.coverage,
            "built": self.stack.built if self.stack else {},
            "setup_seconds": round(self.setup_seconds, 3) if self.setup_seconds is not None else None,
            "setup_cpu_seconds": round(self.setup_cpu_seconds, 2)
            if self.setup_cpu_seconds is not None
            else None,
            "phases": [t.as_dict() for t in sorted(self.timeline.timings, key=lambda t: t.start)],
            "total_seconds": round(total, 3),
        }
        (self.paths.artifacts / "timings.json").write_text(json.dumps(data, indent=2))
        phase_table(self.timeline.timings, total)

    def _write_summary(self, code: int) -> None:
        lines = [f"# E2E run {self.paths.run_id}", "", f"- platform: {self.platform_name or 'not chosen'}"]
        lines += summary_lines(code, self.kind_of_failure, self.failure, self.tests, self.cfg.timeouts.tests)
        if self.kind_of_failure in ("infrastructure", "tests", "coverage"):
            lines.append(f"- diagnostics: {self.paths.diagnostics}")
        text = "\n".join(lines) + "\n"
        (self.paths.artifacts / "summary.md").write_text(text)
        say("")
        say(text.rstrip())
        say(f"artifacts: {self.paths.artifacts}")


def summary_lines(
    code: int, kind: str, failure: BaseException | None, tests: testrun.TestOutcome | None, timeout: float
) -> list[str]:
    """summary.md's one `result:` line (what the exit code says), then what the tests did."""
    t = tests
    counts = (
        f"{len(t.passed)} passed, {len(t.flaky)} flaky, {len(t.failed)} failed, "
        f"{len(t.hung)} hung, {len(t.skipped)} skipped"
        if t is not None
        else ""
    )
    if kind == "interrupted":
        result = "**INTERRUPTED**"
    elif kind == "infrastructure":
        result = "**INFRASTRUCTURE FAILURE** (setup never finished; no test ran)"
        if t is not None:
            result = "**INFRASTRUCTURE FAILURE**"
    elif kind == "coverage":
        result = f"**COVERAGE FAILURE**: {failure or 'below threshold'}"
    elif t is not None and t.exit_code in testrun.PYTEST_COULD_NOT_RUN and not t.failed:
        why = "usage or internal error; see the console or run.log"
        result = f"**PYTEST COULD NOT RUN** (exit {t.exit_code}: {why})"
    elif (t is not None and t.exit_code == testrun.NO_TESTS) or (t is not None and not t.ran and code == 0):
        result = "**NO TEST RAN** (pytest collected none; check tests.path, -k and -m)"
    elif t is not None and code == EXIT_OK:
        result = f"passed: {counts}"
    elif t is not None:
        result = f"**TESTS FAILED**: {counts}"
    else:
        result = EXIT_CATEGORIES.get(code, f"exit {code}")
    lines = [f"- result: {result}"]
    if failure is not None and kind != "interrupted":
        lines.append(f"- error: {_first_lines(failure)}")
    if t is not None and not result.startswith(("passed", "**TESTS FAILED")):
        lines.append(f"- tests: {counts}")
    if t is not None:
        if t.timed_out:
            lines += [
                f"- **hung** (still running when timeouts.tests, {timeout:g} s, ran out): `{n}`"
                for n in t.hung
            ] or [f"- the suite outlived timeouts.tests ({timeout:g} s)"]
        lines += [f"- **flaky** (failed, then passed on rerun): `{n}`: {m}" for n, m in t.flaky]
        lines += [
            f"- **{'failed** (failed twice)' if '::' in n else 'could not collect**'}: `{n}`: {m}"
            for n, m in t.failed
        ]
    return lines


def write_result(paths: RunPaths, code: int) -> None:
    """result.json and the last line, `exit N: category`: what CI reads whatever ended the run."""
    category = EXIT_CATEGORIES.get(code, f"pytest exit {code}")
    result = {"run_id": paths.run_id, "exit_code": code, "category": category}
    paths.artifacts.mkdir(parents=True, exist_ok=True)
    (paths.artifacts / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    say(f"exit {code}: {category} ({paths.artifacts / 'result.json'})")


def refuse(root: Path, err: BaseException, code: int = EXIT_USAGE) -> int:
    """A run refused before it started still gets its run id, result.json, summary and `latest`."""
    paths = RunPaths(root.resolve(), new_run_id())
    mark_outputs(paths.root, artifacts_dir(paths.root))
    paths.artifacts.mkdir(parents=True, exist_ok=True)
    point_latest(paths.root / "artifacts" / "latest", Path(paths.run_id))
    say(f"run {paths.run_id}: artifacts in {paths.artifacts}")
    say(str(err))
    lines = [
        f"# E2E run {paths.run_id}",
        "",
        "- platform: not chosen",
        f"- result: **REFUSED** before anything started ({EXIT_CATEGORIES[code]})",
        f"- error: {_first_lines(err, 8)}",
    ]
    (paths.artifacts / "summary.md").write_text("\n".join(lines) + "\n")
    write_result(paths, code)
    return code


def setup_deadline(cfg: Config) -> float:
    """The longest a setup can take: what an early pytest waits for at most (the run ends it sooner)."""
    t = cfg.timeouts
    return t.pull + t.build * 2 + t.cluster + t.load + (t.job + t.deploy + t.ready) * len(cfg.services)


def kept_hints(cfg: Config, paths: RunPaths, inspect: str) -> list[str]:
    """Commands that work as printed, from any directory: absolute paths, this Python."""
    suite = shlex.quote(str(cfg.path(cfg.tests.path).resolve()))
    state_file = shlex.quote(str(paths.state_file.resolve()))
    return [
        f"run the suite:  E2E_STATE_FILE={state_file} {_this_python()} -m pytest {suite}",
        f"inspect:        {inspect}",
        f"remove it:      {remove_command(cfg, paths)}",
    ]


def remove_command(cfg: Config, paths: RunPaths) -> str:
    """`down` for this run, from any directory (kept markers hold it: cleanup repeats it)."""
    config = shlex.quote(str(cfg.source_file))
    return f"{_this_python()} -m infra --config {config} down --run-id {paths.run_id}"


def _this_python() -> str:
    """This Python, able to import this harness from anywhere."""
    harness_root = shlex.quote(str(Path(__file__).resolve().parents[2]))
    return f"PYTHONPATH={harness_root} {shlex.quote(sys.executable)}"


def _first_lines(err: BaseException | None, count: int = 4) -> str:
    lines = [ln.strip() for ln in str(err or "").splitlines() if ln.strip()]
    return "`" + " / ".join(lines[:count]) + "`"
