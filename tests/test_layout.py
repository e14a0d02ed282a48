"""The layout shows the architecture: each part of infra/ imports only what its __init__ says it may
(and infra waits for other threads only with a deadline, at the end).

Imports are read with `ast` (at any depth: inside functions too). Imports under
`if TYPE_CHECKING:` are annotations only and are not dependencies.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

INFRA = Path(__file__).resolve().parents[1] / "infra"

CORE = "core"
ADAPTERS = "adapters"
PARTS = (
    "infra.nodeimage",
    "infra.cleanup",
    "infra.builds",
    "infra.platforms",
    "infra.gocover.coverflush",  # the part of coverage that builds and platforms use
    "infra.gocover",
    "infra.pytest_plugin",
    "infra.run",
)
MAY_IMPORT: dict[str, set[str]] = {
    CORE: set(),
    "infra.nodeimage": {CORE},
    "infra.cleanup": {CORE, "infra.nodeimage"},
    "infra.gocover.coverflush": {CORE},
    "infra.builds": {CORE, "infra.gocover.coverflush"},
    "infra.platforms": {CORE, "infra.nodeimage", "infra.cleanup", "infra.builds", "infra.gocover.coverflush"},
    "infra.gocover": {CORE, "infra.builds", "infra.platforms", "infra.gocover.coverflush"},
    "infra.pytest_plugin": {CORE, "infra.platforms"},
    "infra.run": {CORE, *PARTS},
    ADAPTERS: {CORE, *PARTS},
}


def module_name(path: Path, root: Path = INFRA) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def part_of(module: str) -> str:
    if module in ("infra.cli", "infra.__main__"):
        return ADAPTERS
    for part in PARTS:  # the most specific first
        if module == part or module.startswith(part + "."):
            return part
    return CORE


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def infra_imports(path: Path, root: Path = INFRA) -> list[tuple[int, str]]:
    """(line, module) of every runtime import of an infra module in the file."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "infra")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "infra":
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            # `from infra.x import y`: y may be a module of x
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.append((node.lineno, sub if _is_module(sub, root) else node.module))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found


def _is_module(name: str, root: Path = INFRA) -> bool:
    rel = Path(*name.split(".")[1:])
    return (root / rel).with_suffix(".py").is_file() or (root / rel / "__init__.py").is_file()


def violations(root: Path = INFRA) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        importer = module_name(path, root)
        own = part_of(importer)
        for line, imported in infra_imports(path, root):
            target = part_of(imported)
            if target == own or target in MAY_IMPORT[own]:
                continue
            rel = path.relative_to(root.parent)
            bad.append(f"{rel}:{line}: {importer} ({own}) imports {imported} ({target})")
    return bad


def test_every_part_imports_only_what_it_may() -> None:
    assert violations() == []


def test_every_part_is_a_package_that_says_what_it_may_import() -> None:
    packages = {p.parent for p in INFRA.rglob("__init__.py")} - {INFRA}
    packages = {p for p in packages if "__pycache__" not in p.parts}
    assert {module_name(p / "__init__.py") for p in packages} == {p for p in PARTS if _is_package(p)}
    for pkg in packages:
        doc = ast.get_docstring(ast.parse((pkg / "__init__.py").read_text())) or ""
        assert "May import" in doc, f"{pkg}: docstring names no import rule"


def _is_package(name: str) -> bool:
    return (INFRA / Path(*name.split(".")[1:]) / "__init__.py").is_file()


def test_the_node_image_recipe_imports_the_core_where_it_is() -> None:
    """The core stays at infra/*.py: the node image recipe imports it there (its bytes are the cache key)."""
    frozen = [INFRA / "nodeimage" / n for n in ("recipe.py", "builder.py")]
    for path in frozen:
        for _, imported in infra_imports(path):
            assert part_of(imported) in (CORE, "infra.nodeimage"), imported
            assert _is_module(imported), f"{path.name} imports {imported}, which is gone"


def _tree(tmp_path: Path, cleanup_py: str) -> Path:
    """A small infra/ with a cleanup part and a run part."""
    root = tmp_path / "infra"
    for pkg in ("cleanup", "run", "builds"):
        (root / pkg).mkdir(parents=True)
        (root / pkg / "__init__.py").write_text("")
    (root / "run" / "run.py").write_text("")
    (root / "builds" / "build.py").write_text("")
    (root / "names.py").write_text("")
    (root / "cleanup" / "cleanup.py").write_text(cleanup_py)
    return root


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "from infra.run import run\n",
            "infra.cleanup.cleanup (infra.cleanup) imports infra.run.run",
        ),
        ("from infra.builds.build import X\n", "imports infra.builds.build (infra.builds)"),
        ("import infra.run.run\n", "imports infra.run.run (infra.run)"),
    ],
)
def test_a_forbidden_import_is_reported(tmp_path: Path, source: str, expected: str) -> None:
    """The rule check itself: an upward import from the cleanup part is caught (in a function too)."""
    code = "from infra import names\ndef f() -> None:\n" + (
        source if source.startswith(" ") else "    " + source
    )
    found = violations(_tree(tmp_path, code))
    assert len(found) == 1 and found[0].startswith("infra/cleanup/cleanup.py:3: ") and expected in found[0]


def test_type_checking_imports_are_not_dependencies(tmp_path: Path) -> None:
    code = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from infra.run.run import Run\n"
    assert violations(_tree(tmp_path, code)) == []


# -- waiting for threads --------------------------------------------------------
def unbounded_waits(source: str) -> list[str]:
    """Waits for other threads with no deadline: `X.result()`, `pool.map(...)` on a pool made by
    `with ThreadPoolExecutor(...) as pool`, `concurrent.futures.wait(...)` without a timeout.

    A signal Linux hands to a worker thread runs its Python handler only once the main thread runs
    bytecode: infra waits through waits.result/map_all, which wake every SIGNAL_CHECK_SECONDS.
    """
    tree = ast.parse(source)
    pools = {
        item.optional_vars.id
        for node in ast.walk(tree)
        if isinstance(node, ast.With)
        for item in node.items
        if isinstance(item.context_expr, ast.Call)
        and getattr(item.context_expr.func, "id", "") == "ThreadPoolExecutor"
        and isinstance(item.optional_vars, ast.Name)
    }
    futures_wait = any(
        isinstance(n, ast.ImportFrom)
        and n.module == "concurrent.futures"
        and any(a.name == "wait" for a in n.names)
        for n in ast.walk(tree)
    )
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        bounded = bool(node.args) or any(k.arg == "timeout" for k in node.keywords)
        if isinstance(func, ast.Attribute) and func.attr == "result" and not bounded:
            found.append(f"{node.lineno}: .result() without a timeout")
        elif (
            isinstance(func, ast.Attribute) and func.attr == "map" and getattr(func.value, "id", "") in pools
        ):
            found.append(f"{node.lineno}: {func.value.id}.map(...)")  # type: ignore[attr-defined]
        elif (
            isinstance(func, ast.Name)
            and func.id == "wait"
            and futures_wait
            and not any(k.arg == "timeout" for k in node.keywords)
        ):
            found.append(f"{node.lineno}: wait(...) without a timeout")
    return found


def test_infra_waits_for_threads_only_with_a_deadline() -> None:
    found = [
        f"{path.relative_to(INFRA.parent)}:{line}"
        for path in sorted(INFRA.rglob("*.py"))
        if path.name != "waits.py"
        for line in unbounded_waits(path.read_text())
    ]
    assert found == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def f(fut):\n    return fut.result()\n", "2: .result() without a timeout"),
        (
            "from concurrent.futures import ThreadPoolExecutor\n"
            "with ThreadPoolExecutor() as pool:\n    list(pool.map(str, [1]))\n",
            "3: pool.map(...)",
        ),
        ("from concurrent.futures import wait\nwait([])\n", "2: wait(...) without a timeout"),
    ],
)
def test_an_unbounded_wait_is_reported(source: str, expected: str) -> None:
    assert unbounded_waits(source) == [expected]


def test_a_wait_with_a_deadline_is_not_reported() -> None:
    source = (
        "from concurrent.futures import wait\n"
        "def f(fut, futs):\n    fut.result(timeout=1)\n    wait(futs, timeout=1)\n"
    )
    assert unbounded_waits(source) == []
