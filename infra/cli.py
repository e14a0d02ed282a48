"""`python -m infra <command>`: the entry point nox sessions and invoke tasks call."""

from __future__ import annotations

import argparse
import logging
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from infra import config as config_mod
from infra.builds import gotool
from infra.config import Config, ConfigError
from infra.console import say
from infra.names import InvalidName
from infra.paths import RunPaths, artifacts_dir, images_archive
from infra.podman_cli import Podman
from infra.proc import CommandError, SubprocessRunner
from infra.run import options as run_options

GO_TIMEOUT = 3600.0
NODE_IMAGE_GO = gotool.Requirement("1.26", "Kubernetes v1.37 (infra/nodeimage/recipe.py)")


def _tools(ns: argparse.Namespace) -> tuple[Config, SubprocessRunner, Podman]:
    from infra.platforms.stack import make_podman

    cfg, runner = config_mod.load(ns.config), SubprocessRunner()
    return cfg, runner, make_podman(cfg, runner, cfg.root)


def _go(cfg: Config, minimum: gotool.Requirement | None = None) -> gotool.GoChoice:
    """Resolve and activate the Go this command runs (infra.builds.gotool); said on stderr."""
    choice = gotool.ensure(gotool.config_go_mods(cfg), minimum=minimum)
    logging.getLogger("infra.gotool").info("go: %s", choice.line())
    return choice


def cmd_e2e(ns: argparse.Namespace) -> int:
    from infra.run.run import Options, e2e

    then: Literal["keep", "test"] = "keep" if ns.command == "up" else "test"
    return e2e(
        Options(config=ns.config, then=then, pytest_args=tuple(ns.pytest_args), **run_options.values(ns))
    )


def cmd_down(ns: argparse.Namespace) -> int:
    from infra import state
    from infra.cleanup import runlock
    from infra.platforms.stack import platform_from_state

    root = config_mod.load(ns.config).root
    st = state.load(RunPaths(root, ns.run_id).state_file if ns.run_id else None, root=root)
    platform_from_state(st).teardown()
    runlock.unmark_kept(st.run_id)
    shutil.rmtree(st.path.parent, ignore_errors=True)
    say(f"removed the stack of run {st.run_id} ({st.platform})")
    return 0


def cmd_images(ns: argparse.Namespace) -> int:
    from infra.builds import image_tasks
    from infra.gocover import coverflush

    cfg, runner, podman = _tools(ns)
    _go(cfg)
    if ns.coverage:
        coverflush.check_mains(cfg)
    names = [ns.service] if ns.command != "images" else cfg.names()
    plan, _ = image_tasks.build_all(
        cfg, runner, podman, coverage=ns.coverage, services=names, force=ns.rebuild, root=cfg.root
    )
    if ns.command != "build-image":
        archive = Path(ns.output) if ns.output else images_archive(cfg.root)
        image_tasks.save(podman, plan, names, archive, cfg.timeouts.load)
    return 0


def cmd_load_image(ns: argparse.Namespace) -> int:
    from infra.builds import image_tasks

    cfg, runner, podman = _tools(ns)
    archive = Path(ns.archive) if ns.archive else images_archive(cfg.root)
    image_tasks.load(runner, podman, archive, ns.cluster, cfg.platform.kind_provider, cfg.timeouts.load)
    return 0


def cmd_coverage_report(ns: argparse.Namespace) -> int:
    from infra.gocover import gocoverage

    cfg = config_mod.load(ns.config)
    _go(cfg)
    out = Path(ns.output) if ns.output else cfg.root / "coverage" / "report"
    run_id = "report-" + time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    modules = cfg.coverage_modules()
    gocoverage.report_from_dir(Path(ns.input), out, modules, SubprocessRunner(), run_id)
    return 0


def cmd_doctor(ns: argparse.Namespace) -> int:
    from infra.platforms.platform import choose
    from infra.run import doctor

    cfg, runner, podman = _tools(ns)
    platform = choose(ns.platform, cfg, podman)
    say(f"platform: {platform.name} ({platform.reason})")
    checks = doctor.run_checks(cfg, runner, podman, cfg.root, platform.name)
    for check in checks:
        say(check.line())
    return 0 if all(c.ok for c in checks) else 1


def cmd_cleanup(ns: argparse.Namespace) -> int:
    """clean-stale-clusters: kind's; cleanup: kind's and podman's, or the one --platform names."""
    from infra.cleanup import cleanup
    from infra.platforms.platform import Sweep
    from infra.platforms.stack import platform_class

    cfg, runner, podman = _tools(ns)
    names = [ns.platform] if getattr(ns, "platform", None) else ["kind", "podman"]
    if ns.command == "clean-stale-clusters":
        names = ["kind"]
    removed: list[str] = []
    left: list[str] = []
    sweep = Sweep(cleanup.parse_age(ns.older_than), ns.dry_run, getattr(ns, "all", False),
                  getattr(ns, "keep_images", False))  # fmt: skip
    for name in names:
        got = platform_class(name).clean(cfg, runner, podman, sweep)
        removed, left = removed + got[0], left + got[1]
    for line in cleanup.Report(removed, left).lines(ns.dry_run):
        say(line)
    return 0


def cmd_node_image(ns: argparse.Namespace) -> int:
    from infra.nodeimage import cache
    from infra.run.run import EXIT_INTERRUPTED, Interrupted, interruptible

    cfg, runner, podman = _tools(ns)
    _go(cfg, NODE_IMAGE_GO)
    try:
        with interruptible():  # Ctrl-C/SIGTERM: stop the step under way, remove what it left
            cache.ensure(
                runner, podman, rebuild=ns.rebuild, report=artifacts_dir(cfg.root) / "node-image.json"
            )
    except Interrupted as sig:
        say(
            f"interrupted ({sig}): the build container and intermediate image are removed; "
            "run it again to start over"
        )
        return EXIT_INTERRUPTED
    return 0


def cmd_local_cluster(ns: argparse.Namespace) -> int:
    """A kind cluster fed by a registry (`--platform cluster` on this machine): up, down, or env."""
    from infra.builds import registry
    from infra.platforms import local_cluster

    cfg, runner, podman = _tools(ns)
    lc = local_cluster.LocalCluster(ns.name, ns.port)
    if ns.action == "down":
        for line in local_cluster.down(runner, podman, lc):
            say(line)
        return 0
    if ns.action == "up":
        if not registry.binary_path().is_file():
            _go(cfg)
            say(f"registry {registry.VERSION}: building once from the Go module proxy (a few minutes)")
        for line in local_cluster.up(runner, podman, lc, workers=ns.workers):
            say(line)
    else:
        has_cluster, has_registry = local_cluster.status(runner, podman, lc)
        if not (has_cluster and has_registry):
            say(f"local cluster {lc.name} is not up (cluster: {has_cluster}, registry: {has_registry}); "
                "next: `inv local-cluster up`")  # fmt: skip
            return 1
    say("# point --platform cluster at it:")
    for line in lc.exports():
        print(line)
    return 0


def cmd_render_tools(ns: argparse.Namespace) -> int:
    """The pinned tools that render manifests: helm built once (cached), kustomize from the wheel."""
    from infra.builds import rendertools

    if not rendertools.helm_path().is_file():
        say(f"helm {rendertools.HELM_VERSION}: building once from the Go module proxy (a few minutes)")
    mods = (
        gotool.config_go_mods(config_mod.load(ns.config))
        if ns.config or config_mod.DEFAULT_CONFIG.exists()
        else []
    )
    logging.getLogger("infra.gotool").info("go: %s", gotool.ensure(mods).line())  # helm is built with it
    say(f"helm {rendertools.HELM_VERSION}: {rendertools.helm(SubprocessRunner())}")
    say(f"kustomize: {rendertools.kubectl()} kustomize")
    return 0


def cmd_bench(ns: argparse.Namespace) -> int:
    from infra.run import bench

    cfg = config_mod.load(ns.config)
    _go(cfg)
    out = Path(ns.output) if ns.output else artifacts_dir(cfg.root) / "bench.json"
    if ns.platform == "kind":
        bench.bench_kind(ns.config, ns.repeat, out)
    elif ns.platform == "cluster":
        bench.bench_cluster(ns.config, ns.repeat, out)
    else:
        bench.bench(ns.config, ns.repeat, out)
    return 0


def cmd_go(ns: argparse.Namespace) -> int:
    """`python -m infra go -- ARGS`: the Go the harness resolves, for the module in the current directory."""
    mods = [Path.cwd() / "go.mod"]
    if ns.config or config_mod.DEFAULT_CONFIG.exists():
        mods += gotool.config_go_mods(config_mod.load(ns.config))
    logging.getLogger("infra.gotool").info("go: %s", gotool.ensure(mods).line())
    res = SubprocessRunner().run(["go", *ns.pytest_args], timeout=GO_TIMEOUT, check=False, capture=False)
    return res.returncode


def cmd_init(ns: argparse.Namespace) -> int:
    """Write e2e.toml, a smoke test and the base kind config for the Go repo in DIR (never overwriting)."""
    from infra.run import scaffold

    written = scaffold.init(Path(ns.directory), SubprocessRunner())
    for item in written:
        say(item.line())
    cfg = config_mod.load(written[0].path)  # what was written (or kept) must load
    say(f"{cfg.source_file}: {len(cfg.services)} service(s): {', '.join(cfg.names())}")
    say(f"next: nox -s e2e -- --config {cfg.source_file}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m infra", description="E2E harness for Go services")
    p.add_argument("--config", default=None, help="config file (default: e2e.toml)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every command run")
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, func: object, helptext: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=helptext)
        sp.set_defaults(func=func)
        return sp

    for name, helptext in (
        ("e2e", "build, bring up, run e2e/, tear down"),
        ("up", "bring the stack up, keep it"),
    ):
        sp = command(name, cmd_e2e, helptext)
        run_options.add_arguments(sp, name)

    command("down", cmd_down, "remove a stack that `up` or --keep left").add_argument(
        "--run-id", default="", help="default: the newest run"
    )
    for name, helptext in (
        ("images", "build all images and save one archive"),
        ("build-image", "build one service image"),
        ("save-image", "build and save one service image"),
    ):
        sp = command(name, cmd_images, helptext)
        if name != "images":
            sp.add_argument("service")
        sp.add_argument("--coverage", action="store_true")
        sp.add_argument("--rebuild", action="store_true")
        sp.add_argument("--output", default="", help="archive path")
    ld = command("load-image", cmd_load_image, "kind load image-archive into a cluster")
    ld.add_argument("--cluster", required=True)
    ld.add_argument("--archive", default="")

    cr = command("coverage-report", cmd_coverage_report, "rebuild Go coverage reports from existing covdata")
    cr.add_argument("--input", required=True, help="covdata dir (per-service subdirs)")
    cr.add_argument("--output", default="", help="report dir (default: coverage/report)")
    command("doctor", cmd_doctor, "check podman, Go, kind, ports and disk").add_argument(
        "--platform", choices=run_options.PLATFORMS, default=None
    )
    for name, helptext in (
        ("clean-stale-clusters", "delete stale kind clusters the harness created"),
        ("cleanup", "remove leftovers of earlier runs"),
    ):
        sp = command(name, cmd_cleanup, helptext)
        sp.add_argument("--older-than", default="2h", help="kind clusters: minimum age like 2h, 30m, 0s")
        sp.add_argument("--dry-run", action="store_true", help="list, remove nothing")
    sub.choices["clean-stale-clusters"].add_argument(
        "--all", action="store_true", help="every harness cluster regardless of age"
    )
    sub.choices["cleanup"].add_argument(
        "--keep-images", action="store_true", help="keep the harness's cached images"
    )
    sub.choices["cleanup"].add_argument(
        "--platform", choices=["podman", "kind", "cluster"], default=None,
        help="cluster: the harness's own namespaces on the E2E_CONTEXT cluster, nothing else",
    )  # fmt: skip
    command("node-image", cmd_node_image, "build or load the offline kind node image").add_argument(
        "--rebuild", action="store_true", help="build even when the image or its cache archive exists"
    )
    lcp = command("local-cluster", cmd_local_cluster, "a kind cluster fed by a registry: up, down, env")
    lcp.add_argument("action", choices=["up", "down", "env"])
    lcp.add_argument("--name", default="e2e-local", help="the kind cluster's name")
    lcp.add_argument("--port", type=int, default=5001, help="the registry's port on 127.0.0.1")
    lcp.add_argument("--workers", type=int, default=0, help="worker nodes beside the control plane")
    command("render-tools", cmd_render_tools, "build (once) the pinned helm; show kustomize's kubectl")
    bp = command("bench", cmd_bench, "time setup cold/warm, parallel/sequential on podman")
    bp.add_argument("--repeat", type=int, default=3, help="runs per mode (median reported)")
    bp.add_argument("--output", default="", help="default: artifacts/bench.json")
    bp.add_argument(
        "--platform", choices=["podman", "kind", "cluster"], default="podman", help="what to time"
    )

    command("init", cmd_init, "write e2e.toml and a smoke test for the Go repo in DIR").add_argument(
        "directory", nargs="?", default=".", help="the Go repo (default: .)"
    )
    command("go", cmd_go, "run the Go the harness resolved: `go -- test ./...` (see `doctor`)")

    for sp in sub.choices.values():  # `nox -s e2e -- --config X` puts it after the command
        sp.add_argument("--config", default=argparse.SUPPRESS, help="config file (default: e2e.toml)")
    return p


def _run_command(args: Sequence[str]) -> bool:
    """Whether argv names a run (e2e, up): its every exit writes result.json."""
    words = [a for a in args if not a.startswith("-")]
    return bool(words) and any(w in ("e2e", "up") for w in words[:2])


def _config_arg(args: Sequence[str]) -> str | None:
    for i, a in enumerate(args):
        if a == "--config" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    pytest_args: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, pytest_args = args[:cut], args[cut + 1 :]
    try:
        ns = parser().parse_args(args)
    except SystemExit as exit_:
        if exit_.code == 2 and _run_command(args):  # a run's usage error still ends with its result
            from infra.run.run import config_root, refuse

            return refuse(config_root(_config_arg(args)), ConfigError(f"usage: {shlex.join(args)}"))
        raise
    ns.pytest_args = pytest_args
    if ns.verbose or ns.command not in ("e2e", "up"):
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
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
