"""What goes into a Go binary, as `go list -deps` knows it: the inputs of an image's content tag.

A main package's binary is made of the packages it imports: their Go files,
embedded files (go:embed), cgo and assembly sources, and the module's
go.mod/go.sum (and go.work). A README, a test file or another service's
package is not an input, so changing it rebuilds nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from infra.proc import Runner

FILE_FIELDS = ("GoFiles", "CgoFiles", "CFiles", "CXXFiles", "HFiles", "SFiles", "SysoFiles", "EmbedFiles")
LIST_FIELDS = ("ImportPath", "Name", "Dir", "Module", "Standard", "Deps", *FILE_FIELDS)
MODULE_FILES = ("go.mod", "go.sum")
WORKSPACE_FILES = ("go.work", "go.work.sum")


class GoListError(Exception):
    pass


def _decode_stream(text: str) -> list[dict[str, Any]]:
    """`go list -json` prints one JSON object after another, not a list."""
    decoder, pos = json.JSONDecoder(), 0
    out: list[dict[str, Any]] = []
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return out
        obj, pos = decoder.raw_decode(text, pos)
        out.append(obj)


def list_packages(
    module: Path, mains: Sequence[str], *, runner: Runner, env: Mapping[str, str], timeout: float
) -> list[dict[str, Any]]:
    res = runner.run(
        ["go", "list", "-deps", f"-json={','.join(LIST_FIELDS)}", *mains],
        cwd=module,
        env=env,
        timeout=timeout,
        hint=f"fix the Go packages of {module} (`go list {' '.join(mains)}` there shows the error)",
    )
    return _decode_stream(res.stdout)


def _local(pkg: dict[str, Any], modcache: str) -> bool:
    """Source the harness must hash: not the standard library, not a versioned module (go.sum pins it)."""
    if pkg.get("Standard"):
        return False
    module = pkg.get("Module") or {}
    return bool(module.get("Main")) or not (modcache and str(pkg.get("Dir", "")).startswith(modcache))


def inputs(
    module: Path,
    mains: Sequence[str],
    *,
    runner: Runner,
    env: Mapping[str, str],
    timeout: float,
) -> dict[str, list[Path]]:
    """main (as given, e.g. ./gateway) -> every file its binary is built from, sorted."""
    module = module.resolve()
    packages = list_packages(module, mains, runner=runner, env=env, timeout=timeout)
    where = runner.run(["go", "env", "GOMODCACHE", "GOWORK"], cwd=module, env=env, timeout=timeout)
    modcache, gowork = (where.stdout + "\n\n").splitlines()[:2]
    by_path = {p["ImportPath"]: p for p in packages}
    by_dir = {Path(p["Dir"]).resolve(): p for p in packages if p.get("Name") == "main"}
    common = [module / f for f in MODULE_FILES if (module / f).is_file()]
    if gowork and gowork != "off":
        work = Path(gowork)
        common += [p for p in (work, work.with_name("go.work.sum")) if p.is_file()]
    out: dict[str, list[Path]] = {}
    for main in mains:
        pkg = by_dir.get((module / main).resolve())
        if pkg is None:
            raise GoListError(f"{main} in {module} is not a main package (`go list {main}` there)")
        files = set(common)
        for dep in [pkg["ImportPath"], *pkg.get("Deps", [])]:
            info = by_path.get(dep)
            if info is None or not _local(info, modcache):
                continue
            for field in FILE_FIELDS:
                files.update(Path(info["Dir"]) / name for name in info.get(field) or [])
        out[main] = sorted(files)
    return out
