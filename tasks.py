"""invoke tasks: thin adapters over `python -m infra` (see `inv -l`)."""

from __future__ import annotations

import sys

from invoke import Collection, Context, Exit, task

CONFIG_HELP = "config file (default: e2e.toml)"


def _infra(c: Context, config: str, *args: str) -> None:
    from infra.cli import main

    argv = (["--config", config] if config else []) + [a for a in args if a]
    code = main(argv)
    if code:
        raise Exit(code=code)


@task(
    help={"config": CONFIG_HELP, "coverage": "build -cover binaries", "rebuild": "rebuild even if up to date"}
)
def images(c, config="", coverage=False, rebuild=False):
    """Build every service image and save them to one archive."""
    _infra(c, config, "images", "--coverage" if coverage else "", "--rebuild" if rebuild else "")


@task(
    help={"service": "service name from e2e.toml", "config": CONFIG_HELP, "coverage": "build -cover binaries"}
)
def build_image(c, service, config="", coverage=False):
    """Build one service image (skipped when its content tag exists)."""
    _infra(c, config, "build-image", service, "--coverage" if coverage else "")


@task(help={"service": "service name", "output": "archive path", "config": CONFIG_HELP, "coverage": "-cover"})
def save_image(c, service, output="", config="", coverage=False):
    """Build one service image and podman-save it as a docker-archive."""
    _infra(
        c,
        config,
        "save-image",
        service,
        *(["--output", output] if output else []),
        "--coverage" if coverage else "",
    )


@task(
    help={
        "cluster": "kind cluster name",
        "archive": "docker-archive path (default: inv images')",
        "config": CONFIG_HELP,
    }
)
def load_image(c, cluster, archive="", config=""):
    """Load an image archive into a kind cluster (kind load image-archive)."""
    _infra(c, config, "load-image", "--cluster", cluster, *(["--archive", archive] if archive else []))


@task(
    help={
        "platform": "kind, podman or auto",
        "reuse": "existing kind cluster NAME",
        "config": CONFIG_HELP,
        "coverage": "build -cover binaries",
    }
)
def up(c, platform="", reuse="", config="", coverage=False):
    """Bring the stack up and keep it (then `pytest e2e/`, then `inv down`)."""
    _infra(
        c,
        config,
        "up",
        *(["--platform", platform] if platform else []),
        *(["--reuse", reuse] if reuse else []),
        "--coverage" if coverage else "",
    )


@task(help={"run_id": "run to remove (default: the newest)", "config": CONFIG_HELP})
def down(c, run_id="", config=""):
    """Remove a stack that `inv up` or --keep left running."""
    _infra(c, config, "down", *(["--run-id", run_id] if run_id else []))


@task(
    help={
        "input": "directory holding covdata (per-service subdirs)",
        "output": "report directory",
        "config": CONFIG_HELP,
    }
)
def coverage_report(c, input, output="", config=""):
    """Rebuild text, func and HTML Go coverage reports from existing covdata."""
    _infra(c, config, "coverage-report", "--input", input, *(["--output", output] if output else []))


@task(
    help={
        "older_than": "age like 2h, 30m, 0s",
        "dry_run": "list, remove nothing",
        "all": "every harness cluster regardless of age",
        "config": CONFIG_HELP,
    }
)
def clean_stale_clusters(c, older_than="2h", dry_run=False, all=False, config=""):
    """Delete stale kind clusters this harness created (never anyone else's)."""
    _infra(
        c,
        config,
        "clean-stale-clusters",
        "--older-than",
        older_than,
        "--dry-run" if dry_run else "",
        "--all" if all else "",
    )


@task(help={"config": CONFIG_HELP, "dry_run": "list, remove nothing"})
def cleanup(c, config="", dry_run=False):
    """Remove leftovers of earlier runs: clusters, containers, networks, images, archives."""
    _infra(c, config, "cleanup", "--dry-run" if dry_run else "")


@task(help={"platform": "kind, podman or auto", "config": CONFIG_HELP})
def doctor(c, platform="", config=""):
    """Check podman, Go, kind, ports and disk before a run; one line per problem."""
    _infra(c, config, "doctor", *(["--platform", platform] if platform else []))


ns = Collection(
    images,
    build_image,
    save_image,
    load_image,
    up,
    down,
    coverage_report,
    clean_stale_clusters,
    cleanup,
    doctor,
)

if __name__ == "__main__":  # pragma: no cover
    sys.exit("run with `inv`")
