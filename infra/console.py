"""Progress as it happens: a live phase view on a terminal, plain lines in CI."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable

from rich.console import Console
from rich.live import Live
from rich.table import Table

from infra.phases import Timing

console = Console(stderr=False, highlight=False, soft_wrap=True)


def say(msg: str) -> None:
    console.print(msg, markup=False)


def _interactive() -> bool:
    return console.is_terminal and not os.environ.get("CI") and sys.stdout.isatty()


class PhaseReporter:
    """Reports each phase's start and end with elapsed time."""

    def __init__(self, live: bool | None = None) -> None:
        self.live_enabled = _interactive() if live is None else live
        self.lock = threading.Lock()
        self.rows: dict[str, Timing | None] = {}  # None: still running
        self._live: Live | None = None

    def __enter__(self) -> PhaseReporter:
        if self.live_enabled:
            self._live = Live(self._table(), console=console, refresh_per_second=8, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def started(self, name: str, at: float) -> None:
        with self.lock:
            self.rows[name] = None
            self._update(f"[{at:7.2f}s] > {name}")

    def finished(self, timing: Timing) -> None:
        mark = {"ok": "ok", "failed": "FAILED", "skipped": "skipped"}[timing.status]
        with self.lock:
            self.rows[timing.name] = timing
            self._update(f"[{timing.end:7.2f}s] {mark:>7} {timing.name} ({timing.seconds:.2f}s)")

    def _update(self, line: str) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.console.print(line, markup=False)
        else:
            say(line)

    def _table(self) -> Table:
        table = Table(title="setup", expand=False)
        for col in ("phase", "state", "seconds"):
            table.add_column(col)
        for name, timing in self.rows.items():
            table.add_row(
                name, timing.status if timing else "running", f"{timing.seconds:.2f}" if timing else ""
            )
        return table


def phase_table(timings: Iterable[Timing], total: float) -> None:
    table = Table(title="phases")
    for col in ("phase", "status", "start", "end", "seconds"):
        table.add_column(col, justify="right" if col in ("start", "end", "seconds") else "left")
    for t in sorted(timings, key=lambda t: (t.start, t.name)):
        table.add_row(t.name, t.status, f"{t.start:.2f}", f"{t.end:.2f}", f"{t.seconds:.2f}")
    table.add_row("total", "", "", "", f"{total:.2f}")
    console.print(table)
