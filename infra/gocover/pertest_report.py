"""`--per-test` reports: which E2E test covered what, from the counters infra.gocover.pertest set apart.

coverage/e2e/<run>/per-test/ (and coverage/e2e/per-test/, the newest):
summary.json (tests -> per service percent and covered functions; functions
-> tests; the tests that cover nothing no other test covers; the functions no
test reaches; the run's total beside the usual e2e run's), index.html (a table
of tests by service, each row linking to tests/<slug>.html).
"""

from __future__ import annotations

import bisect
import html
import json
import re
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra import waits
from infra.builds.build import module_path
from infra.gocover import coverflush
from infra.gocover.gocoverage import Modules
from infra.proc import Runner

GO_TIMEOUT = 300
FUNC_LINE = re.compile(r"^(\S+?):(\d+):\s+(\S+)\s+([\d.]+)%$")
TOTAL_LINE = re.compile(r"^total:\s+\(statements\)\s+([\d.]+)%")
WORKERS = 4
RUN_DIR = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{4}$")  # infra.names.new_run_id


class PerTestError(Exception):
    pass


@dataclass
class TestCoverage:
    nodeid: str
    slug: str = ""
    error: str = ""
    percent: dict[str, float] = field(default_factory=dict)
    functions: dict[str, list[str]] = field(default_factory=dict)  # service -> covered functions
    blocks: set[tuple[str, str]] = field(default_factory=set)  # (service, file:range) counted > 0


def parse_func(text: str, module: str) -> tuple[dict[str, float], float]:
    """`go tool cover -func` output -> (function key -> percent, total percent)."""
    funcs: dict[str, float] = {}
    total = 0.0
    for line in text.splitlines():
        total_match = TOTAL_LINE.match(line)
        if total_match:
            total = float(total_match.group(1))
            continue
        m = FUNC_LINE.match(line.strip())
        if m:
            path, number, name, pct = m.groups()
            funcs[f"{path.removeprefix(module + '/')}:{number} {name}"] = float(pct)
    return funcs, total


def profile_blocks(text: str) -> dict[str, tuple[int, int]]:
    """A text profile -> block (file:range) -> (statements, count)."""
    blocks: dict[str, tuple[int, int]] = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) == 3:
            stmts, count = int(parts[1]), int(parts[2])
            old = blocks.get(parts[0], (stmts, 0))
            blocks[parts[0]] = (stmts, old[1] + count)
    return blocks


def _go(runner: Runner, where: Modules, *args: str) -> str:
    return runner.run(["go", *args], timeout=GO_TIMEOUT, cwd=where.cwd, env=where.env).stdout


class FunctionIndex:
    """Which function a profile block is in: the one declared last at or before the block's line.

    Every statement is inside a function, so the declaration lines that `go tool cover -func`
    prints for the whole run (per service) are all that is needed; no `-func` call per test.
    """

    def __init__(self, func_txts: Sequence[str], module: str) -> None:
        starts: dict[str, list[tuple[int, str]]] = {}
        for text in func_txts:
            for line in text.splitlines():
                m = FUNC_LINE.match(line.strip())
                if m:
                    path, number, name, _ = m.groups()
                    key = f"{path.removeprefix(module + '/')}:{number} {name}"
                    starts.setdefault(path, []).append((int(number), key))
        self.starts = {path: sorted(set(items)) for path, items in starts.items()}
        self.keys = sorted({key for items in self.starts.values() for _, key in items})

    def function_of(self, block: str) -> str:
        path, _, where = block.rpartition(":")
        line = int(where.split(".", 1)[0])
        items = self.starts.get(path, [])
        at = bisect.bisect_right(items, (line, "\uffff")) - 1
        return items[at][1] if at >= 0 else f"{path}:? (outside any function)"


def percent(blocks: Mapping[str, tuple[int, int]]) -> float:
    """Statements covered, as `go tool cover -func` rounds its total."""
    total = sum(stmts for stmts, _ in blocks.values())
    covered = sum(stmts for stmts, count in blocks.values() if count > 0)
    return round(100.0 * covered / total, 1) if total else 0.0


def _one_test(
    runner: Runner, module_dir: Modules, funcs: FunctionIndex, root: Path, out_dir: Path, tc: TestCoverage
) -> TestCoverage:
    test_dir = root / tc.slug
    profiles = []
    for service_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
        service = service_dir.name
        if not any(service_dir.glob("covcounters.*")):
            tc.percent[service], tc.functions[service] = 0.0, []  # it was not running
            continue
        txt = out_dir / "profiles" / f"{tc.slug}.{service}.txt"
        _go(runner, module_dir, "tool", "covdata", "textfmt", f"-i={service_dir.resolve()}", f"-o={txt}")
        text = coverflush.without_flush_package(txt.read_text())
        txt.write_text(text)
        blocks = profile_blocks(text)
        covered = [b for b, (_, count) in blocks.items() if count > 0]
        tc.percent[service] = percent(blocks)
        tc.functions[service] = sorted({funcs.function_of(b) for b in covered})
        tc.blocks |= {(service, b) for b in covered}
        profiles.append(text)
    if profiles:
        combined = out_dir / "profiles" / f"{tc.slug}.txt"
        combined.write_text(profiles[0].splitlines(keepends=True)[0] + "".join(
            "".join(p.splitlines(keepends=True)[1:]) for p in profiles
        ))  # fmt: skip
        page = out_dir / "tests" / f"{tc.slug}.html"
        _go(runner, module_dir, "tool", "cover", f"-html={combined}", "-o", str(page))
    return tc


def read_index(root: Path) -> list[TestCoverage]:
    index = root / "tests.jsonl"
    if not index.exists():
        raise PerTestError(f"no per-test index at {index}: no test ran with the per-test plugin")
    tests = []
    for line in index.read_text().splitlines():
        rec = json.loads(line)
        tests.append(TestCoverage(rec["nodeid"], rec.get("slug", ""), rec.get("error", "")))
    return tests


def usual_run(coverage_e2e: Path, this_run: str) -> dict[str, Any] | None:
    """The newest plain e2e_coverage run's summary under coverage/e2e/, to compare totals with."""
    runs = (p for p in coverage_e2e.iterdir() if p.is_dir() and RUN_DIR.match(p.name))  # not per-test/
    for run_dir in sorted(runs, reverse=True):
        summary = run_dir / "summary.json"
        if run_dir.name == this_run or not summary.exists():
            continue
        data = json.loads(summary.read_text())
        if data.get("mode", "suite") == "suite":
            return {"run_id": data.get("run_id", run_dir.name), "total_percent": data["total_percent"]}
    return None


def build(
    root: Path,
    out_dir: Path,
    modules: Modules,
    runner: Runner,
    *,
    run_id: str,
    services: Sequence[str],
    total_percent: float,
    total_dir: Path,
    usual: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Per-test reports from root (infra.gocover.pertest's output) into out_dir; the summary written."""
    module_dir = modules  # the coverage report's: one module, or its go.work of them all
    module = module_path(module_dir.cwd)  # names are shown relative to the first module
    tests = read_index(root)
    shutil.rmtree(out_dir / "tests", ignore_errors=True)
    shutil.rmtree(out_dir / "profiles", ignore_errors=True)
    (out_dir / "tests").mkdir(parents=True)
    (out_dir / "profiles").mkdir()
    todo = [t for t in tests if t.slug and not t.error]
    # every function of the services, and whether the run reached it at all (outside tests too)
    func_txts = {s: total_dir / f"{s}.func.txt" for s in services}
    funcs = FunctionIndex([p.read_text() for p in func_txts.values() if p.exists()], module)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        waits.map_all(pool, lambda t: _one_test(runner, module_dir, funcs, root, out_dir, t), todo)

    by_function: dict[str, list[str]] = {}
    block_tests: dict[tuple[str, str], int] = {}
    for t in todo:
        for fn in sorted({f for fs in t.functions.values() for f in fs}):
            by_function.setdefault(fn, []).append(t.nodeid)
        for b in t.blocks:
            block_tests[b] = block_tests.get(b, 0) + 1
    redundant = [t.nodeid for t in todo if all(block_tests[b] > 1 for b in t.blocks)]
    reached_in_run: dict[str, bool] = dict.fromkeys(funcs.keys, False)
    for path in func_txts.values():
        if path.exists():
            for fn, pct in parse_func(path.read_text(), module)[0].items():
                reached_in_run[fn] = reached_in_run[fn] or pct > 0
    unreached = sorted(fn for fn in reached_in_run if fn not in by_function)

    total_blocks = profile_blocks((total_dir / "coverage.txt").read_text())
    covered = {b for _, b in block_tests}
    all_stmts = sum(s for s, _ in total_blocks.values()) or 1
    union = 100.0 * sum(s for b, (s, _) in total_blocks.items() if b in covered) / all_stmts

    summary: dict[str, Any] = {
        "run_id": run_id,
        "mode": "per-test",
        "services": list(services),
        "tests": {
            t.nodeid: {
                "services": {
                    s: {"percent": t.percent.get(s, 0.0), "functions": t.functions.get(s, [])}
                    for s in services
                },
                "html": f"tests/{t.slug}.html",
            }
            for t in todo
        },
        "functions": dict(sorted(by_function.items())),
        "redundant_tests": redundant,
        "unreached_functions": unreached,
        "reached_only_outside_tests": [fn for fn in unreached if reached_in_run[fn]],
        "total_percent": total_percent,
        "tests_union_percent": round(union, 1),
        "usual": dict(usual) if usual else None,
        "difference_from_usual": round(total_percent - usual["total_percent"], 1) if usual else None,
        "errors": {t.nodeid: t.error for t in tests if t.error},
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "index.html").write_text(render_html(summary))
    return summary


def render_html(summary: Mapping[str, Any]) -> str:
    services = list(summary["services"])
    esc = html.escape
    rows = []
    for nodeid, data in summary["tests"].items():
        cells = "".join(f"<td>{data['services'][s]['percent']:.1f}%</td>" for s in services)
        mark = " *" if nodeid in summary["redundant_tests"] else ""
        rows.append(f'<tr><td><a href="{esc(data["html"])}">{esc(nodeid)}</a>{mark}</td>{cells}</tr>')
    usual = summary.get("usual")
    compare = f"; the usual e2e run {esc(usual['run_id'])}: {usual['total_percent']:.1f}%" if usual else ""

    def items(values: Sequence[str]) -> str:
        return "".join(f"<li><code>{esc(v)}</code></li>" for v in values) or "<li>none</li>"

    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Per-test E2E coverage {esc(summary["run_id"])}</title>
<style>body{{font-family:sans-serif}} td,th{{padding:2px 8px;text-align:right}}
td:first-child{{text-align:left}} tr:nth-child(even){{background:#f4f4f4}}</style></head><body>
<h1>Per-test E2E coverage, run {esc(summary["run_id"])}</h1>
<p>Total of this run: {summary["total_percent"]:.1f}% of statements (union of the tests alone:
{summary["tests_union_percent"]:.1f}%){compare}.</p>
<table><tr><th>test</th>{"".join(f"<th>{esc(s)}</th>" for s in services)}</tr>
{chr(10).join(rows)}
</table>
<p>* covers nothing that no other test covers.</p>
<h2>Tests that cover nothing no other test covers (candidates to merge or drop)</h2>
<p>Each one on its own: dropping several of them at once may lose what only they share.</p>
<ul>{items(summary["redundant_tests"])}</ul>
<h2>Functions no test reaches</h2>
<p>Those also in the next list run only outside the tests (start-up, shutdown, between tests).</p>
<ul>{items(summary["unreached_functions"])}</ul>
<h2>Reached by the run, but by no test</h2>
<ul>{items(summary["reached_only_outside_tests"])}</ul>
</body></html>
"""


def describe(summary: Mapping[str, Any], limit: int = 0) -> str:
    services = list(summary["services"])
    width = max([len(n) for n in summary["tests"]] + [10])
    lines = [
        "Per-test Go coverage (statements):",
        "  " + "test".ljust(width) + "".join(f"{s:>11}" for s in services),
    ]
    items = list(summary["tests"].items())
    for nodeid, data in items[:limit] if limit else items:
        lines.append(
            "  "
            + nodeid.ljust(width)
            + "".join(f"{data['services'][s]['percent']:>10.1f}%" for s in services)
        )
    usual = summary.get("usual")
    lines.append(
        f"  total {summary['total_percent']:.1f}% (tests alone {summary['tests_union_percent']:.1f}%)"
        + (f"; usual e2e run {usual['run_id']}: {usual['total_percent']:.1f}%" if usual else "")
    )
    lines.append(
        f"  {len(summary['redundant_tests'])} test(s) cover nothing no other test covers; "
        f"{len(summary['unreached_functions'])} function(s) no test reaches"
    )
    return "\n".join(lines)


def publish(out_dir: Path, latest: Path) -> None:
    """coverage/e2e/per-test/: the newest run's reports (not its covdata)."""
    shutil.rmtree(latest, ignore_errors=True)
    shutil.copytree(out_dir, latest, ignore=shutil.ignore_patterns("covdata"))
