"""The run's options come from one table: the command line, the invoke task and Options agree."""

from __future__ import annotations

import dataclasses

from infra.cli import parser as build_parser
from infra.run import options
from infra.run.run import Options


def test_every_option_is_a_field_of_options_and_a_flag_of_its_commands() -> None:
    fields = {f.name for f in dataclasses.fields(Options)}
    parser = build_parser()
    for opt in options.RUN_OPTIONS:
        assert (opt.field or opt.name) in fields, opt
        for command in ("e2e", "up"):
            ns = parser.parse_args([command])
            assert hasattr(ns, opt.name) == (command in opt.commands), (command, opt)


def test_the_command_line_gives_the_run_its_options() -> None:
    ns = build_parser().parse_args(
        ["e2e", "--platform", "cluster", "--coverage", "--rebuild", "--fail-under", "70"]
    )
    got = Options(**options.values(ns))
    assert (got.platform, got.coverage, got.force_build, got.fail_under) == ("cluster", True, True, 70.0)
    assert (got.keep, got.per_test, got.reuse) == (False, False, "")
    up = Options(**options.values(build_parser().parse_args(["up", "--platform", "kind"])))
    assert (up.platform, up.keep, up.force_build) == ("kind", False, False)


def test_the_invoke_task_shows_the_same_help() -> None:
    import tasks

    helps = tasks.up.help
    for name in ("platform", "reuse", "coverage"):
        assert helps[name] == next(o.help for o in options.RUN_OPTIONS if o.name == name)
