"""The suite, read before anything starts: its path exists, and what it imports of the harness is public.

A team's suite written before the plugin imported the harness's modules by the
names they had then (`infra.stack`, `infra.state`, ...); those moved. The public
surface is the plugin's fixtures (`infra.pytest_plugin`), `infra.waits`, the config
file, the CLI and the exit codes (README: What is public).
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from infra.config import Config, ConfigError

PUBLIC = ("infra.pytest_plugin", "infra.waits")
# what a suite reached for in the modules it imported, and the fixture that gives it now
REPLACEMENTS = {
    "stack": "the `platform` fixture (restart, stop, start, scale, logs of a service)",
    "platform": "the `platform` fixture (restart, stop, start, scale, logs of a service)",
    "platform_kind": "the `platform` fixture, and `run_namespace` for the run's namespace",
    "platform_podman": "the `platform` fixture",
    "kube": "the `platform` fixture, and `run_namespace` with `e2e_state.kubeconfig`",
    "state": "the `e2e_state`, `endpoints`, `service_url` and `run_id` fixtures",
    "run": "the `e2e_state` fixture",
    "pytest_results": "nothing: the harness loads it into every run itself",
}


@dataclass(frozen=True)
class Import:
    file: Path
    line: int
    module: str

    def replacement(self) -> str:
        first = self.module.split(".")[1] if "." in self.module else ""
        last = self.module.rsplit(".", 1)[-1]
        return REPLACEMENTS.get(last) or REPLACEMENTS.get(first) or "a fixture of `infra.pytest_plugin`"

    def where(self) -> str:
        return f"{self.file}:{self.line}"


def harness_imports(suite: Path) -> list[Import]:
    """Every `import infra...` / `from infra... import` in the suite's Python files."""
    files = (
        [suite] if suite.is_file() else sorted(p for p in suite.rglob("*.py") if "__pycache__" not in p.parts)
    )
    found = []
    for file in files:
        try:
            tree = ast.parse(file.read_text(errors="replace"), filename=str(file))
        except SyntaxError:
            continue  # pytest reports it as the file's collection error, with its line
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found += [Import(file, node.lineno, n) for n in names if n == "infra" or n.startswith("infra.")]
    return found


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def check(config: Config) -> list[str]:
    """Refuse a suite that cannot start (no such path, a harness module that is gone); notices else."""
    suite = config.path(config.tests.path)
    if not suite.exists():
        raise ConfigError(
            f"tests.path {suite} does not exist (tests.path in {config.source_file}); next: point it at the "
            "directory of the E2E suite (default: e2e)"
        )
    missing, private = [], []
    for imp in harness_imports(suite):
        if imp.module == "infra" or imp.module.startswith(tuple(p for p in PUBLIC)):
            continue
        if not _exists(imp.module):
            missing.append(f"{imp.where()}: imports {imp.module}, which the harness no longer has; "
                           f"use {imp.replacement()}")  # fmt: skip
        else:
            private.append(f"notice: {imp.where()}: imports {imp.module}, which is not public and may move; "
                           f"use {imp.replacement()} (README: What is public)")  # fmt: skip
    if missing:
        raise ConfigError(
            "the suite imports harness modules that are gone:\n  " + "\n  ".join(missing)
            + "\nnext: use the fixtures named above (README: What is public); the suite needs no conftest"
        )  # fmt: skip
    return private
