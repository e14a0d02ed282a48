"""invoke tasks: thin adapters over `python -m infra` (see `inv -l`)."""

from __future__ import annotations

from invoke import Collection, Exit, task

from infra.run.options import task_help

CONFIG = "config file (default: e2e.toml)"
COVERAGE = "build -cover binaries"


def _infra(command: str, *positional: str, config: str = "", **flags: str | bool) -> None:
    """Run `python -m infra COMMAND`; a flag given as `older_than="2h"` becomes `--older-than 2h`."""
    from infra.cli import main

    argv = [command, *positional] + (["--config", config] if config else [])
    for name, value in flags.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value:
            argv += [flag, str(value)]
    code = main(argv)
    if code:
        raise Exit(code=code)


@task(help={"config": CONFIG, "coverage": COVERAGE, "rebuild": "rebuild even if up to date"})
def images(c, config="", coverage=False, rebuild=False):
    """Build every service image and save them to one archive."""
    _infra("images", config=config, coverage=coverage, rebuild=rebuild)


@task(help={"service": "service name from e2e.toml", "config": CONFIG, "coverage": COVERAGE})
def build_image(c, service, config="", coverage=False):
    """Build one service image (skipped when its content tag exists)."""
    _infra("build-image", service, config=config, coverage=coverage)


@task(help={"service": "service name", "output": "archive path", "config": CONFIG, "coverage": COVERAGE})
def save_image(c, service, output="", config="", coverage=False):
    """Build one service image and podman-save it as a docker-archive."""
    _infra("save-image", service, config=config, output=output, coverage=coverage)


@task(help={"cluster": "kind cluster name", "archive": "archive (default: inv images')", "config": CONFIG})
def load_image(c, cluster, archive="", config=""):
    """Load an image archive into a kind cluster (kind load image-archive)."""
    _infra("load-image", config=config, cluster=cluster, archive=archive)


@task(help={**task_help("platform", "reuse", "coverage"), "config": CONFIG})
def up(c, platform="", reuse="", config="", coverage=False):
    """Bring the stack up and keep it (then `pytest e2e/`, then `inv down`)."""
    _infra("up", config=config, platform=platform, reuse=reuse, coverage=coverage)


@task(help={"run_id": "run to remove (default: the newest)", "config": CONFIG})
def down(c, run_id="", config=""):
    """Remove a stack that `inv up` or --keep left running."""
    _infra("down", config=config, run_id=run_id)


@task(
    help={
        "input": "directory holding covdata (per-service subdirs)",
        "output": "report dir",
        "config": CONFIG,
    }
)
def coverage_report(c, input, output="", config=""):
    """Rebuild text, func and HTML Go coverage reports from existing covdata."""
    _infra("coverage-report", config=config, input=input, output=output)


@task(
    help={
        "older_than": "age like 2h, 30m, 0s",
        "dry_run": "list, remove nothing",
        "all": "every harness cluster regardless of age",
        "config": CONFIG,
    }
)
def clean_stale_clusters(c, older_than="2h", dry_run=False, all=False, config=""):
    """Delete stale kind clusters this harness created (never anyone else's)."""
    _infra("clean-stale-clusters", config=config, older_than=older_than, dry_run=dry_run, all=all)


@task(help={"config": CONFIG, "dry_run": "list, remove nothing"})
def cleanup(c, config="", dry_run=False):
    """Remove leftovers of earlier runs: clusters, containers, networks, images, archives."""
    _infra("cleanup", config=config, dry_run=dry_run)


@task(help={"rebuild": "build even when the image or its cache archive exists", "config": CONFIG})
def node_image(c, rebuild=False, config=""):
    """Build the offline kind node image, or load it from the cache archive."""
    _infra("node-image", config=config, rebuild=rebuild)


@task(
    help={
        "action": "up, down or env",
        "name": "the kind cluster's name",
        "port": "the registry's port on 127.0.0.1",
        "workers": "worker nodes beside the control plane",
        "config": CONFIG,
    }
)
def local_cluster(c, action, name="e2e-local", port=5001, workers=0, config=""):
    """A kind cluster fed by a registry for --platform cluster: up (prints the E2E_* exports), down, env."""
    _infra("local-cluster", action, config=config, name=name, port=str(port), workers=str(workers))


@task(help={"config": CONFIG})
def render_tools(c, config=""):
    """Build the pinned helm once (cached by version) and show kustomize's kubectl."""
    _infra("render-tools", config=config)


@task(help={**task_help("platform"), "config": CONFIG})
def doctor(c, platform="", config=""):
    """Check podman, Go, kind, ports and disk before a run; one line per problem."""
    _infra("doctor", config=config, platform=platform)


@task(help={"directory": "the Go repo to look at (`.`: this one)"})
def init(c, directory):  # invoke's positional arguments are required: `inv init .`
    """Write a commented e2e.toml and a smoke test for a Go repo (never overwrites a file)."""
    _infra("init", directory)


ns = Collection(
    init,
    images,
    build_image,
    save_image,
    load_image,
    up,
    down,
    coverage_report,
    clean_stale_clusters,
    cleanup,
    node_image,
    local_cluster,
    render_tools,
    doctor,
)
