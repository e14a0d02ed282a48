"""The run's options, declared once: argparse (`python -m infra e2e|up`), the invoke tasks' help and
the Options a run gets all come from this table.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

PLATFORMS = ("auto", "kind", "podman", "cluster")


@dataclass(frozen=True)
class RunOption:
    name: str  # the command line's (--name) and the invoke task's parameter
    help: str
    commands: tuple[str, ...] = ("e2e", "up")
    flag: bool = False  # a switch (store_true), else a value
    choices: tuple[str, ...] = ()
    default: Any = None
    metavar: str | None = None
    number: bool = False  # a float value
    field: str = ""  # the Options field, when it is not `name`

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


RUN_OPTIONS = (
    RunOption("platform", "where the stack runs: " + ", ".join(PLATFORMS), choices=PLATFORMS),
    RunOption("reuse", "use existing kind cluster NAME", default="", metavar="NAME"),
    RunOption("coverage", "build -cover binaries, collect Go coverage", flag=True),
    RunOption("keep", "keep the stack up afterwards", commands=("e2e",), flag=True),
    RunOption("sequential", "run setup phases one by one", commands=("e2e",), flag=True),
    RunOption(
        "fail_under", "fail when e2e coverage is under PCT", commands=("e2e",), number=True, metavar="PCT"
    ),
    RunOption(
        "rebuild",
        "rebuild every image the harness builds (services, stand-ins) even if up to date",
        commands=("e2e",),
        flag=True,
        field="force_build",
    ),
    RunOption(
        "per_test",
        "with --coverage: run the tests one at a time, each one's Go coverage on its own "
        "(coverage/e2e/per-test/)",
        commands=("e2e",),
        flag=True,
    ),
)


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    for opt in RUN_OPTIONS:
        if command not in opt.commands:
            continue
        if opt.flag:
            parser.add_argument(opt.option, action="store_true", help=opt.help)
        else:
            parser.add_argument(
                opt.option,
                choices=opt.choices or None,
                default=opt.default,
                type=float if opt.number else str,
                metavar=opt.metavar,
                help=opt.help,
            )


def values(ns: argparse.Namespace) -> dict[str, Any]:
    """The Options fields the command line set (those of its command, else their defaults)."""
    return {
        opt.field or opt.name: getattr(ns, opt.name, False if opt.flag else opt.default)
        for opt in RUN_OPTIONS
    }


def task_help(*names: str) -> dict[str, str]:
    """The invoke task's help for these options."""
    table = {opt.name: opt.help for opt in RUN_OPTIONS}
    return {name: table[name] for name in names}
