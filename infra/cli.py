"""`python -m infra <command>`: the entry point nox sessions and invoke tasks call."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from infra import config as config_mod
from infra.config import ConfigError
from infra.console import say
from infra.names import InvalidName
from infra.proc import CommandError, SubprocessRunner

Handler = Callable[[argparse.Namespace], int]


def _cfg(ns: argparse.Namespace) -> config_mod.Config:
    return config_mod.load(ns.config)


def _verbose_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)


def cmd_e2e(ns: argparse.Namespace) -> int:
    from infra.run import Options, e2e

    return e2e(
        Options(
            config=ns.config,
            platform=ns.platform,
            keep=ns.keep,
            reuse=ns.reuse,
            sequential=ns.sequential,
            coverage=ns.coverage,
            fail_under=ns.fail_under,
            pytest_args=tuple(ns.pytest_args),
            force_build=ns.rebuild,
        )
    )


def cmd_up(ns: argparse.Namespace) -> int:
    from infra.run import Options, e2e

    return e2e(
        Options(config=ns.config, platform=ns.platform, reuse=ns.reuse, coverage=ns.coverage, run_tests=False)
    )


def cmd_down(ns: argparse.Namespace) -> int:
    from infra import runlock, state
    from infra.stack import platform_from_state

    root = _cfg(ns).root
    path = root / ".e2e" / "runs" / ns.run_id / "state.json" if ns.run_id else None
    st = state.load(path, root=root)
    platform_from_state(st).teardown()
    runlock.unmark_kept(st.run_id)
    shutil.rmtree(st.path.parent, ignore_errors=True)
    say(f"removed the stack of run {st.run_id} ({st.platform})")
    return 0


def cmd_images(ns: argparse.Namespace) -> int:
    from infra import image_tasks
    from infra.stack import make_podman

    cfg, runner = _cfg(ns), SubprocessRunner()
    podman = make_podman(cfg, runner, cfg.root)
    names = [ns.service] if getattr(ns, "service", None) else cfg.names()
    plan, _ = image_tasks.build_all(
        cfg, runner, podman, coverage=ns.coverage, services=names, force=ns.rebuild, root=cfg.root
    )
    if ns.save or ns.command == "images":
        archive = Path(ns.output) if ns.output else cfg.root / ".e2e" / "archives" / image_tasks.ARCHIVE_NAME
        image_tasks.save(podman, plan, names, archive, cfg.timeouts.load)
    return 0


def cmd_load_image(ns: argparse.Namespace) -> int:
    from infra import image_tasks

    cfg = _cfg(ns)
    archive = Path(ns.archive) if ns.archive else cfg.root / ".e2e" / "archives" / image_tasks.ARCHIVE_NAME
    from infra.stack import make_podman

    runner = SubprocessRunner()
    env = dict(make_podman(cfg, runner, cfg.root).env)
    image_tasks.load(runner, archive, ns.cluster, cfg.platform.kind_provider, cfg.timeouts.load, env)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m infra", description="E2E harness for Go services")
    p.add_argument("--config", default=None, help="config file (default: e2e.toml)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every command run")
    sub = p.add_subparsers(dest="command", required=True)

    def run_flags(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--platform", choices=["auto", "kind", "podman"], default=None)
        sp.add_argument("--reuse", default="", metavar="NAME", help="use existing kind cluster NAME")
        sp.add_argument("--coverage", action="store_true", help="build -cover binaries, collect coverage")

    e = sub.add_parser("e2e", help="build, bring up, run e2e/, tear down")
    run_flags(e)
    e.add_argument("--keep", action="store_true", help="keep the stack up afterwards")
    e.add_argument("--sequential", action="store_true", help="run setup phases one by one")
    e.add_argument("--fail-under", type=float, default=None, metavar="PCT")
    e.add_argument("--rebuild", action="store_true", help="rebuild images even if up to date")
    e.set_defaults(func=cmd_e2e)

    u = sub.add_parser("up", help="bring the stack up and keep it")
    run_flags(u)
    u.set_defaults(func=cmd_up)

    d = sub.add_parser("down", help="remove a stack that `up` or --keep left")
    d.add_argument("--run-id", default="", help="default: the newest run")
    d.set_defaults(func=cmd_down)

    for name, helptext in (
        ("images", "build all images and save one archive"),
        ("build-image", "build one service image"),
        ("save-image", "build and save one service image"),
    ):
        sp = sub.add_parser(name, help=helptext)
        if name != "images":
            sp.add_argument("service")
        sp.add_argument("--coverage", action="store_true")
        sp.add_argument("--rebuild", action="store_true")
        sp.add_argument("--output", default="", help="archive path")
        sp.set_defaults(func=cmd_images, save=name != "build-image")

    ld = sub.add_parser("load-image", help="kind load image-archive into a cluster")
    ld.add_argument("--cluster", required=True)
    ld.add_argument("--archive", default="")
    ld.set_defaults(func=cmd_load_image)
    _extend(sub)
    for sp in sub.choices.values():  # `nox -s e2e -- --config X` puts it after the command
        sp.add_argument("--config", default=argparse.SUPPRESS, help="config file (default: e2e.toml)")
    return p


def _extend(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Commands defined next to what they drive (coverage, cleanup, doctor, bench)."""
    from infra import cli_more

    cli_more.register(sub)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    pytest_args: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, pytest_args = args[:cut], args[cut + 1 :]
    ns = parser().parse_args(args)
    ns.pytest_args = pytest_args
    if ns.verbose or ns.command not in ("e2e", "up"):
        _verbose_logging()
    try:
        code: int = ns.func(ns)
    except (ConfigError, InvalidName, CommandError) as err:
        say(f"error: {err}")
        return 2
    except Exception as err:
        if type(err).__module__.startswith("infra"):
            say(f"error: {err}")
            return 2
        raise
    return code
