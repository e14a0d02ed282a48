"""One run and its phases, and the commands built on runs.

    run           setup, pytest, [coverage], diagnostics on failure, teardown or keep
    options       the run's options, declared once (argparse, the invoke tasks' help, Options)
    testrun       the E2E suite: parallel first, the serial group after, a summary
    diagnostics   what a failed run leaves for a human to read
    doctor        preflight: can this machine run the harness (the first phase of a run)
    bench         `nox -s bench`: the harness against the floor of the same work
    scaffold      `inv init [DIR]`: a first e2e.toml and smoke test for a Go repo

May import: every part of infra (not the adapters cli.py and __main__.py).
"""
