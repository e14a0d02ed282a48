"""Subcommands beyond the run itself: coverage reports, cleanup, doctor, bench."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from infra import config as config_mod
from infra.proc import SubprocessRunner

if TYPE_CHECKING:
    Sub = argparse._SubParsersAction[argparse.ArgumentParser]


def cmd_coverage_report(ns: argparse.Namespace) -> int:
    from infra import gocoverage

    cfg = config_mod.load(ns.config)
    out = Path(ns.output) if ns.output else cfg.root / "coverage" / "report"
    run_id = "report-" + time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    gocoverage.report_from_dir(
        Path(ns.input), out, cfg.path(cfg.coverage.go_module), SubprocessRunner(), run_id
    )
    return 0


def register(sub: Sub) -> None:
    cr = sub.add_parser("coverage-report", help="rebuild Go coverage reports from existing covdata")
    cr.add_argument("--input", required=True, help="covdata dir (per-service subdirs)")
    cr.add_argument("--output", default="", help="report dir (default: coverage/report)")
    cr.set_defaults(func=cmd_coverage_report)
    register_more(sub)


def cmd_doctor(ns: argparse.Namespace) -> int:
    from infra import doctor
    from infra.console import say
    from infra.platform import choose
    from infra.stack import make_podman

    cfg = config_mod.load(ns.config)
    runner = SubprocessRunner()
    podman = make_podman(cfg, runner, cfg.root)
    platform = choose(ns.platform or cfg.platform.default, cfg, podman)
    say(f"platform: {platform.name} ({platform.reason})")
    checks = doctor.run_checks(cfg, runner, podman, cfg.root, platform.name)
    for check in checks:
        say(check.line())
    return 0 if all(c.ok for c in checks) else 1


def register_more(sub: Sub) -> None:
    dr = sub.add_parser("doctor", help="check podman, Go, kind, ports and disk")
    dr.add_argument("--platform", choices=["auto", "kind", "podman"], default=None)
    dr.set_defaults(func=cmd_doctor)
    register_cleanup(sub)
    register_bench(sub)


def cmd_clean_stale_clusters(ns: argparse.Namespace) -> int:
    from infra import cleanup
    from infra.console import say
    from infra.stack import make_podman

    cfg = config_mod.load(ns.config)
    runner = SubprocessRunner()
    report = cleanup.clean_stale_clusters(
        runner,
        make_podman(cfg, runner, cfg.root),
        older_than=cleanup.parse_age(ns.older_than),
        dry_run=ns.dry_run,
        all_=ns.all,
        provider=cfg.platform.kind_provider,
        scratch=cfg.root / ".e2e" / "scratch",
    )
    for line in report.lines(ns.dry_run):
        say(line)
    return 0


def cmd_cleanup(ns: argparse.Namespace) -> int:
    from infra import cleanup
    from infra.console import say
    from infra.stack import make_podman

    cfg = config_mod.load(ns.config)
    runner = SubprocessRunner()
    podman = make_podman(cfg, runner, cfg.root)
    clusters = cleanup.clean_stale_clusters(
        runner,
        podman,
        older_than=cleanup.parse_age(ns.older_than),
        dry_run=ns.dry_run,
        all_=False,
        provider=cfg.platform.kind_provider,
        scratch=cfg.root / ".e2e" / "scratch",
    )
    rest = cleanup.clean_podman(podman, cfg.root, dry_run=ns.dry_run, images=not ns.keep_images)
    for line in clusters.lines(ns.dry_run)[: None if clusters.removed or clusters.left else 0]:
        say(line)
    for line in rest.lines(ns.dry_run):
        say(line)
    return 0


def register_cleanup(sub: Sub) -> None:
    sc = sub.add_parser("clean-stale-clusters", help="delete stale kind clusters the harness created")
    sc.add_argument("--older-than", default="2h", help="age like 2h, 30m, 0s (default 2h)")
    sc.add_argument("--dry-run", action="store_true", help="list, remove nothing")
    sc.add_argument("--all", action="store_true", help="every harness cluster regardless of age")
    sc.set_defaults(func=cmd_clean_stale_clusters)
    cl = sub.add_parser("cleanup", help="remove leftovers of earlier runs")
    cl.add_argument("--older-than", default="2h", help="kind clusters: minimum age (default 2h)")
    cl.add_argument("--dry-run", action="store_true", help="list, remove nothing")
    cl.add_argument("--keep-images", action="store_true", help="keep the harness's cached images")
    cl.set_defaults(func=cmd_cleanup)


def cmd_bench(ns: argparse.Namespace) -> int:
    from infra import bench

    root = config_mod.load(ns.config).root
    bench.bench(ns.config, ns.repeat, Path(ns.output) if ns.output else root / "artifacts" / "bench.json")
    return 0


def register_bench(sub: Sub) -> None:
    bp = sub.add_parser("bench", help="time setup cold/warm, parallel/sequential on podman")
    bp.add_argument("--repeat", type=int, default=3, help="runs per mode (median reported)")
    bp.add_argument("--output", default="", help="default: artifacts/bench.json")
    bp.set_defaults(func=cmd_bench)
