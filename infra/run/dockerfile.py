"""A Dockerfile's final stage, read as an image layout (`services[].layout`) for `inv init`.

What it reads: the Go builds of the builder stages (`go build -o OUT PKG` in a RUN),
and in the final stage `COPY --from=<builder> OUT DEST` (a binary), `COPY SRC DEST`
(repo files), WORKDIR, USER, ENV, ENTRYPOINT and CMD. The base images are not
needed: the harness lays the same files out in an image of its own.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Stage:
    name: str
    base: str
    workdir: str = "/"
    outputs: dict[str, str] = field(default_factory=dict)  # binary path in the stage -> main package
    binaries: dict[str, str] = field(default_factory=dict)  # image path -> main package
    files: dict[str, str] = field(default_factory=dict)  # image path -> repo path
    user: str = ""
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] | None = None
    cmd: list[str] = field(default_factory=list)


def _lines(text: str) -> list[str]:
    out, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        out.append(current + line)
        current = ""
    if current.strip():
        out.append(current)
    return out


def _words(rest: str) -> list[str]:
    """The exec (JSON) form or the shell form's words."""
    rest = rest.strip()
    if rest.startswith("["):
        try:
            return [str(w) for w in json.loads(rest)]
        except ValueError:
            pass
    try:
        return shlex.split(rest)
    except ValueError:
        return rest.split()


GO_BUILD = re.compile(r"\bgo\s+build\b([^&;|]*)")


def _go_builds(run: str, workdir: str) -> dict[str, str]:
    """`go build [flags] -o OUT PKG` in a RUN line: OUT (absolute) -> PKG."""
    found = {}
    for match in GO_BUILD.finditer(run):
        try:
            words = shlex.split(match.group(1))
        except ValueError:
            continue
        out, pkg, i = "", ".", 0
        while i < len(words):
            w = words[i]
            if w == "-o" and i + 1 < len(words):
                out, i = words[i + 1], i + 2
                continue
            if w.startswith("-o="):
                out = w[3:]
            elif w.startswith("-"):
                if w in ("-tags", "-ldflags", "-gcflags", "-mod", "-buildvcs") and i + 1 < len(words):
                    i += 1
            else:
                pkg = w
            i += 1
        if out:
            if pkg.endswith(("/*", ".go")):  # `go build -o x cmd/x/*` or `cmd/x/main.go`: its directory
                pkg = posixpath.dirname(pkg) or "."
            pkg = pkg if pkg.startswith(".") else "./" + pkg.removeprefix("/")
            found[posixpath.normpath(posixpath.join(workdir, out))] = pkg.rstrip("/") or "."
    return found


def _dest(workdir: str, dest: str, src: str) -> str:
    target = dest if dest.startswith("/") else posixpath.join(workdir, dest)
    if dest.endswith("/") or dest in (".", "./"):
        target = posixpath.join(target, posixpath.basename(src.rstrip("/")))
    return posixpath.normpath(target)


def parse(text: str) -> list[Stage]:
    stages: list[Stage] = []
    for line in _lines(text):
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            words = rest.split()
            base = next((w for w in words if not w.startswith("--")), "")
            name = words[-1] if len(words) >= 3 and words[-2].upper() == "AS" else str(len(stages))
            parent = next((s for s in stages if s.name == base), None)
            stage = Stage(name, base, workdir=parent.workdir if parent else "/")
            if parent:
                stage.outputs = dict(parent.outputs)
            stages.append(stage)
            continue
        if not stages:
            continue
        stage = stages[-1]
        if instr == "WORKDIR":
            stage.workdir = posixpath.normpath(posixpath.join(stage.workdir, rest.strip()))
        elif instr == "RUN":
            stage.outputs |= _go_builds(rest, stage.workdir)
        elif instr == "USER":
            stage.user = rest.strip()
        elif instr == "ENV":
            words = _words(rest)
            if words and "=" not in words[0] and len(words) >= 2:
                stage.env[words[0]] = " ".join(words[1:])
            else:
                stage.env |= dict(w.split("=", 1) for w in words if "=" in w)
        elif instr in ("ENTRYPOINT", "CMD"):
            words = _words(rest)
            if not rest.strip().startswith("["):
                words = ["/bin/sh", "-c", rest.strip()]
            if instr == "CMD":
                stage.cmd = words
            else:
                stage.entrypoint = words
        elif instr in ("COPY", "ADD"):
            _copy(stages, stage, rest)
    return stages


def _copy(stages: list[Stage], stage: Stage, rest: str) -> None:
    words = _words(rest)
    source_stage = None
    while words and words[0].startswith("--"):
        flag = words.pop(0)
        if flag.startswith("--from="):
            wanted = flag.split("=", 1)[1]
            source_stage = next((s for s in stages if s.name == wanted), None)
    if len(words) < 2:
        return
    *sources, dest = words
    for src in sources:
        if source_stage is not None:
            built = posixpath.normpath(posixpath.join(source_stage.workdir, src))
            if built in source_stage.outputs:
                stage.binaries[_dest(stage.workdir, dest, built)] = source_stage.outputs[built]
        elif not src.startswith(("http://", "https://")) and src not in (".", "./"):
            stage.files[_dest(stage.workdir, dest, src)] = posixpath.normpath(src)


def layout(dockerfile: Path) -> dict[str, Any] | None:
    """The final stage as `services[].layout` (the entry binary under "binary"), or None when it copies
    no Go binary the file builds."""
    stages = parse(dockerfile.read_text(errors="replace"))
    if not stages or not stages[-1].binaries:
        return None
    final = stages[-1]
    run = (final.entrypoint or []) + final.cmd
    entry = next(
        (dest for dest in final.binaries if run and _resolves(run[0], dest, final.workdir)),
        sorted(final.binaries)[0],
    )
    out: dict[str, Any] = {"binary": entry, "main": final.binaries[entry]}
    more = {d: m for d, m in sorted(final.binaries.items()) if d != entry}
    if more:
        out["binaries"] = more
    if final.files:
        out["files"] = dict(sorted(final.files.items()))
    if final.workdir != "/":
        out["workdir"] = final.workdir
    for key in ("user", "env", "cmd"):
        if getattr(final, key):
            out[key] = getattr(final, key)
    if final.entrypoint is not None:
        out["entrypoint"] = final.entrypoint
    elif final.cmd:
        out["entrypoint"] = []  # CMD alone runs: the image's entrypoint would be the binary otherwise
    return out


def _resolves(program: str, dest: str, workdir: str) -> bool:
    if "/" in program:
        return posixpath.normpath(posixpath.join(workdir, program)) == dest
    return posixpath.basename(dest) == program
