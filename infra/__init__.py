"""The E2E harness engine: every behaviour lives here, typed and importable.

The modules directly in infra/ are the core every part uses: the subprocess
chokepoint (proc), the podman and kind command lines (podman_cli, kind_cli),
names, image references (images), e2e.toml (config), paths, the run-state
file (state), deadlines (waits), the phase DAG (phases), a preflight's findings (checks)
and the console. The
core imports nothing else in infra. cli.py (`python -m infra`) and __main__.py
are the thin adapters over the parts; they may import everything.

The parts, each a subpackage that says what it holds and may import:

    nodeimage/      the kind node image built offline
    cleanup/        what earlier runs left behind, and which runs are alive
    builds/         images and builds: go build, podman import or build, the Go toolchain
    platforms/      where the stack runs (kind, podman) and how it is brought up
    gocover/        Go coverage: flushed from running services, reported
    pytest_plugin/  the plugins the harness loads into the E2E suite
    run/            one run and its phases, and the commands around it

tests/test_layout.py holds these import rules and fails when one is broken.
"""
