"""Go coverage: counters from the running services, flushed on a signal, reported.

    coverflush      the flush hook built into -cover binaries and the signal that
                    triggers it; what builds and platforms use of coverage
    gocoverage      graceful stop, counters checked, text/func/HTML reports
    pertest         pytest plugin of `--per-test` coverage (`-p infra.gocover.pertest`)
    pertest_report  which E2E test covered what

May import: coverflush only the core (infra/*.py) (it names platforms' Context in
annotations only); the rest the core, infra.builds and infra.platforms.
"""
