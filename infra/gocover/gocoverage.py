"""Go coverage from the running services: graceful stop, check, text/func/HTML reports.

Counters are written only when a -cover binary's main returns (or os.Exit
runs): a killed pod writes none, so every service's counters are checked and
a missing one is an error that names the service, never a silent 0%.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infra.builds.build import COVER_FLAGS
from infra.console import say
from infra.gocover import coverflush
from infra.paths import make_open_dir
from infra.platforms.platform import Platform
from infra.proc import Runner

log = logging.getLogger("infra.gocoverage")
TOTAL = re.compile(r"^total:\s+\(statements\)\s+([\d.]+)%", re.MULTILINE)
GO_TIMEOUT = 600


class CoverageError(Exception):
    pass


@dataclass
class CoverageReport:
    out_dir: Path
    modules: Modules | None = None  # where the reports resolved packages (per-test reuses it)
    services: dict[str, float] = field(default_factory=dict)
    total_percent: float = 0.0
    unit_percent: float = 0.0
    merged_percent: float = 0.0


@dataclass(frozen=True)
class Modules:
    """Where the reports resolve packages: one module, or a workspace of every service's module."""

    cwd: Path
    env: Mapping[str, str]
    all: tuple[Path, ...]


def modules_for(modules: Sequence[Path], out_dir: Path, runner: Runner) -> Modules:
    """Several modules: a go.work of the harness's own (outside the repo) that uses them all."""
    resolved = tuple(m.resolve() for m in modules)
    if len(resolved) == 1:
        return Modules(resolved[0], {}, resolved)
    env = {"GOWORK": str(_fresh_dir(out_dir / "gowork") / "go.work")}  # not the repo's own go.work
    runner.run(["go", "work", "init", *map(str, resolved)], timeout=GO_TIMEOUT, cwd=out_dir, env=env)
    return Modules(resolved[0], env, resolved)


def _go(runner: Runner, where: Modules, *args: str) -> str:
    return runner.run(["go", *args], timeout=GO_TIMEOUT, cwd=where.cwd, env=where.env).stdout


def func_total(func_txt: str) -> float:
    match = TOTAL.search(func_txt)
    if not match:
        raise CoverageError(f"no 'total:' line in `go tool cover -func` output:\n{func_txt[-500:]}")
    return float(match.group(1))


def prepare_dirs(covdata: Path, services: list[str]) -> None:
    """GOCOVERDIR must exist and be writable by the container user before the binaries start."""
    for name in services:
        make_open_dir(covdata / name)


def check_counters(service_dirs: Mapping[str, Path], stops: Mapping[str, str] | None = None) -> None:
    """Every service must have written counters; name the ones that did not."""
    missing = []
    for name, path in sorted(service_dirs.items()):
        if not any(path.glob("covcounters.*")):
            how = (stops or {}).get(name, "")
            missing.append(
                f"service {name!r} wrote no coverage counters to {path}"
                + (f" (stop: {how})" if how else "")
                + ": it was killed instead of stopped (SIGKILL, OOM, grace period too short) and was not "
                "running (or flushing was off) when the harness flushed the counters before the stop, "
                "did not return from main on SIGTERM, or GOCOVERDIR was not writable"
            )
    if missing:
        raise CoverageError("\n".join(missing) + "\nnext: check the service's logs in the diagnostics")


def build_reports(
    service_dirs: Mapping[str, Path], out_dir: Path, modules: Sequence[Path], runner: Runner
) -> CoverageReport:
    """Per service, all of E2E, unit tests, and merged: coverage.txt, func.txt, index.html each."""
    out_dir.mkdir(parents=True, exist_ok=True)
    module = modules_for(modules, out_dir, runner)
    report = CoverageReport(out_dir, module)
    dirs = {n: p.resolve() for n, p in service_dirs.items()}
    for name, path in sorted(dirs.items()):
        report.services[name] = _text_func_html(runner, module, str(path), out_dir, f"{name}.")
        pct = _go(runner, module, "tool", "covdata", "percent", f"-i={path}")  # per package
        (out_dir / f"{name}.percent.txt").write_text(coverflush.without_flush_package(pct))
    joined = ",".join(str(p) for p in dirs.values())
    report.total_percent = _text_func_html(runner, module, joined, out_dir, "")
    unit_root = _fresh_dir(out_dir / "unit-covdata")
    unit_dirs = []
    for i, mod in enumerate(module.all):  # each module's own tests, as `go test ./...` there runs them
        unit_dirs.append(unit_dir := _fresh_dir(unit_root / str(i)))
        runner.run(
            ["go", "test", "-count=1", *COVER_FLAGS, "./...", "-args", f"-test.gocoverdir={unit_dir}"],
            timeout=GO_TIMEOUT,
            cwd=mod,
            hint=f"the unit tests of the services fail: run `go test ./...` in {mod}",
        )
    units = ",".join(map(str, unit_dirs))
    report.unit_percent = _text_func_html(runner, module, units, out_dir, "unit.")
    merged = _fresh_dir(out_dir / "merged-covdata")
    _go(runner, module, "tool", "covdata", "merge", f"-i={units},{joined}", f"-o={merged}")
    report.merged_percent = _text_func_html(runner, module, str(merged), out_dir, "merged.")
    return report


def _fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path.resolve()


def _text_func_html(runner: Runner, module: Modules, inputs: str, out_dir: Path, prefix: str) -> float:
    txt, func, html = (out_dir / f"{prefix}{n}" for n in ("coverage.txt", "func.txt", "index.html"))
    _go(runner, module, "tool", "covdata", "textfmt", f"-i={inputs}", f"-o={txt}")
    txt.write_text(coverflush.without_flush_package(txt.read_text()))  # the harness's, not the team's
    func_out = _go(runner, module, "tool", "cover", f"-func={txt}")
    func.write_text(func_out)
    _go(runner, module, "tool", "cover", f"-html={txt}", "-o", str(html))
    return func_total(func_out)


def write_summary(report: CoverageReport, run_id: str, mode: str = "suite") -> Path:
    """mode: suite (the usual run) or per-test (flushed around every test)."""
    data = {
        "run_id": run_id,
        "mode": mode,
        "services": {n: {"percent": p} for n, p in sorted(report.services.items())},
        "total_percent": report.total_percent,
        "unit_percent": report.unit_percent,
        "merged_percent": report.merged_percent,
    }
    path = report.out_dir / "summary.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def describe(report: CoverageReport) -> str:
    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:5.1f}%"

    lines = ["Go coverage (statements):", f"  {'':<12} {'e2e':>7} {'unit':>7} {'combined':>9}"]
    lines.append(
        f"  {'total':<12} {fmt(report.total_percent):>7} {fmt(report.unit_percent):>7} "
        f"{fmt(report.merged_percent):>9}"
    )
    lines += [f"  {name:<12} {fmt(pct):>7}" for name, pct in sorted(report.services.items())]
    lines.append(f"  reports: {report.out_dir}/index.html (e2e), merged.index.html, unit.index.html")
    return "\n".join(lines)


def flush_before_stop(platform: Platform) -> None:
    """Counters on disk before the stop: a process killed or crashing on its way out loses nothing."""
    if not platform.ctx.coverage_mode.flushes:
        return
    try:
        flushed = platform.flush_coverage(None)
    except Exception as err:  # noqa: BLE001 - the graceful stop still writes counters: say, go on
        say(f"coverage: the flush before the stop failed ({err}); counters now come from the graceful stop")
        return
    skipped = sorted(set(platform.ctx.config.names()) - set(flushed))
    log.info("coverage flushed before the stop: %s; not flushed: %s", sorted(flushed), skipped)


def collect_run(platform: Platform, runner: Runner, mode: str = "suite") -> CoverageReport:
    """Flush, stop gracefully, check counters, build reports per run and as coverage/e2e/ latest."""
    flush_before_stop(platform)
    stops = platform.stop_gracefully()
    cfg, paths = platform.ctx.config, platform.ctx.paths
    dirs = {s.name: paths.covdata / s.name for s in cfg.services}
    check_counters(dirs, stops)
    report = build_reports(dirs, paths.coverage_run, cfg.coverage_modules(), runner)
    write_summary(report, paths.run_id, mode)
    publish_latest(report.out_dir, report.out_dir.parent)
    return report


def publish_latest(run_dir: Path, e2e_dir: Path) -> None:
    """Copy a run's report files to coverage/e2e/ (the newest run's reports)."""
    for path in run_dir.iterdir():
        if path.is_file():
            shutil.copy2(path, e2e_dir / path.name)


def report_from_dir(
    input_dir: Path, out_dir: Path, modules: Sequence[Path], runner: Runner, run_id: str
) -> CoverageReport:
    """`inv coverage-report --input DIR`: per-service subdirs, or covdata files directly."""
    if not input_dir.is_dir():
        raise CoverageError(f"--input {input_dir} is not a directory")
    subdirs = {p.name: p for p in sorted(input_dir.iterdir()) if p.is_dir() and any(p.glob("covmeta.*"))}
    if not subdirs and any(input_dir.glob("covmeta.*")):
        subdirs = {input_dir.name: input_dir}
    if not subdirs:
        raise CoverageError(
            f"no covdata (covmeta.* files) under {input_dir}; next: point --input at a run's covdata"
        )
    check_counters(subdirs)
    report = build_reports(subdirs, out_dir, modules, runner)
    write_summary(report, run_id)
    say(describe(report))
    return report
