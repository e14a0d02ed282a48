"""What the harness tells the suite's pytest process, by environment variable.

Kept apart from the plugins that read them, so the harness names them without
importing pytest (which costs its start a third of a second).
"""

from __future__ import annotations

SERIAL_ENV = "E2E_SERIAL_MARKER"
"""The config's tests.serial_marker."""
RESULTS_ENV = "E2E_RESULTS_FILE"
"""Every test's outcomes, one JSON line each (infra.pytest_plugin.pytest_results)."""
DEFER_ENV = "E2E_DEFER_MARKER"
"""Tests with this marker are left for the serial run; how many is written to DEFERRED_ENV's file."""
DEFERRED_ENV = "E2E_DEFERRED_FILE"
PER_TEST_ENV = "E2E_PER_TEST_DIR"
"""--per-test: where each test's own counters go (infra.gocover.pertest)."""
START_GATE_ENV = "E2E_START_GATE"
"""A pytest started while setup is under way collects, then waits for this file: "go" or why not."""
START_DEADLINE_ENV = "E2E_START_DEADLINE"
"""How many seconds it waits for that file at most."""
HARNESS_PID_ENV = "E2E_HARNESS_PID"
"""The harness that started this pytest early: once it is gone (killed), the pytest ends too."""
