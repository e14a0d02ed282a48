"""One finding of a preflight (`inv doctor`): what was checked, whether it holds, and the fix."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass

from infra.proc import CommandError, Runner


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        return f"{mark} {self.name}: {self.detail}" + ("" if self.ok else f" -> {self.fix}")


def version_of(text: str) -> tuple[int, ...]:
    match = re.search(r"(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def check_tool(
    runner: Runner, name: str, argv: list[str], minimum: tuple[int, int] | None, fix: str
) -> Check:
    if shutil.which(argv[0]) is None:
        return Check(name, False, f"{argv[0]} not found on PATH", fix)
    try:
        out = runner.run(argv, timeout=30).stdout.strip()
    except CommandError as err:
        return Check(name, False, f"`{' '.join(argv)}` failed: {err.output_tail[-200:]}", fix)
    if minimum and version_of(out) < minimum:
        return Check(name, False, f"version {out} is older than {'.'.join(map(str, minimum))}", fix)
    return Check(name, True, out.splitlines()[0] if out else "present")
