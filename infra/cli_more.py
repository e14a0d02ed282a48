"""Subcommands beyond the run itself: coverage reports, cleanup, doctor, bench."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from infra import config as config_mod
from infra.proc import SubprocessRunner

Sub = argparse._SubParsersAction  # type: ignore[type-arg]


def cmd_coverage_report(ns: argparse.Namespace) -> int:
    from infra import gocoverage

    cfg = config_mod.load(ns.config)
    out = Path(ns.output) if ns.output else cfg.root / "coverage" / "report"
    run_id = "report-" + time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    gocoverage.report_from_dir(Path(ns.input), out, cfg.path(cfg.coverage.go_module), SubprocessRunner(), run_id)
    return 0


def register(sub: Sub) -> None:
    cr = sub.add_parser("coverage-report", help="rebuild Go coverage reports from existing covdata")
    cr.add_argument("--input", required=True, help="covdata dir (per-service subdirs)")
    cr.add_argument("--output", default="", help="report dir (default: coverage/report)")
    cr.set_defaults(func=cmd_coverage_report)
