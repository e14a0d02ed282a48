"""`inv init [DIR]`: look at a Go repo and write a first e2e.toml and smoke test for it.

What it reads: the main packages of every Go module (`go list`), the
Kubernetes manifests (workloads, their images and readiness probes, the
NodePorts of their Services, the other services their env names), and the
Containerfiles/Dockerfiles beside the mains. What it writes: `e2e.toml`
(commented), `e2e/test_smoke.py` (every service with a NodePort answers) and
`kind/cluster.yaml` (the harness's base kind config); never over an existing
file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infra.builds import gotool
from infra.images import ImageRef
from infra.platforms import kind_config
from infra.proc import Runner

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")
SKIP_DIRS = {".git", ".e2e", ".nox", ".venv", "vendor", "node_modules", "testdata", "artifacts", "coverage"}
BUILD_FILES = ("Containerfile", "Dockerfile")
HARNESS_KIND_CONFIG = kind_config.HARNESS_BASE
GO_LIST_TIMEOUT = 300.0
Doc = dict[str, Any]


class InitError(Exception):
    """The directory cannot be turned into a config; the message says why and what to do."""


@dataclass(frozen=True)
class Main:
    module: Path  # module directory, relative to the repo
    package: str  # "./cmd/api" or "."
    buildfile: Path | None  # a Containerfile/Dockerfile beside it, relative to the repo

    @property
    def basename(self) -> str:
        return Path(self.package).name if self.package != "." else self.module.name


@dataclass
class Workload:
    name: str
    file: Path  # relative to the repo
    image: str  # repository, qualified (localhost/...)
    ready_path: str = ""
    node_port: int = 0
    env_text: str = ""  # env and envFrom ConfigMap values: where other services are named
    main: Main | None = None
    depends_on: list[str] = field(default_factory=list)


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            yield Path(dirpath) / name


def find_mains(root: Path, runner: Runner) -> list[Main]:
    """Every `package main` of every Go module under root (`go list`, the Go gotool resolved)."""
    go_mods = [p for p in _walk(root) if p.name == "go.mod"]
    if not go_mods:
        return []
    gotool.ensure(go_mods, runner)
    mains: list[Main] = []
    for go_mod in go_mods:
        module = go_mod.parent
        out = runner.run(
            ["go", "list", "-e", "-f", "{{.Name}}\t{{.Dir}}", "./..."],
            timeout=GO_LIST_TIMEOUT,
            cwd=module,
            hint=f"`go list ./...` fails in {module}: fix its go.mod",
        ).stdout
        for line in out.splitlines():
            name, _, directory = line.partition("\t")
            if name != "main" or not directory:
                continue
            rel = Path(directory).relative_to(module)
            package = "." if str(rel) == "." else f"./{rel.as_posix()}"
            buildfile = next(
                (Path(directory) / f for f in BUILD_FILES if (Path(directory) / f).is_file()), None
            )
            mains.append(
                Main(module.relative_to(root), package, buildfile.relative_to(root) if buildfile else None)
            )
    return mains


def _kube_docs(path: Path) -> list[Doc]:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    except (yaml.YAMLError, UnicodeDecodeError):
        return []
    # Kubernetes objects only: not kind's own config, not a CI file
    return [
        d for d in docs if "kind" in d and "metadata" in d and "kind.x-k8s.io" not in str(d.get("apiVersion"))
    ]


def find_manifests(root: Path) -> dict[Path, list[Doc]]:
    return {
        p.relative_to(root): docs
        for p in _walk(root)
        if p.suffix in (".yaml", ".yml") and (docs := _kube_docs(p))
    }


def _labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def workloads(manifests: dict[Path, list[Doc]]) -> list[Workload]:
    """One per Deployment/StatefulSet/DaemonSet: image, readiness path, NodePort, env text."""
    all_docs = [(f, d) for f, docs in manifests.items() for d in docs]
    configmaps = {
        d["metadata"].get("name"): d.get("data") or {} for _, d in all_docs if d["kind"] == "ConfigMap"
    }
    found = []
    for file, doc in all_docs:
        if doc["kind"] not in WORKLOADS:
            continue
        template = doc.get("spec", {}).get("template", {})
        ctrs = template.get("spec", {}).get("containers") or []
        if not ctrs or not isinstance(ctrs[0].get("image"), str):
            continue
        ctr = ctrs[0]
        # an exec or tcpSocket readiness probe has no path: the liveness probe's answers 200 too
        probe = (
            (ctr.get("readinessProbe") or {}).get("httpGet")
            or (ctr.get("livenessProbe") or {}).get("httpGet")
            or {}
        )
        env = [str(e.get("value", "")) for e in ctr.get("env") or []]
        for ref in ctr.get("envFrom") or []:
            env += map(str, configmaps.get((ref.get("configMapRef") or {}).get("name"), {}).values())
        labels = template.get("metadata", {}).get("labels") or {}
        node_port = next(
            (
                int(port["nodePort"])
                for _, svc in all_docs
                if svc["kind"] == "Service"
                and _labels_match(svc.get("spec", {}).get("selector") or {}, labels)
                for port in svc.get("spec", {}).get("ports") or []
                if port.get("nodePort")
            ),
            0,
        )
        found.append(
            Workload(
                name=doc["metadata"]["name"],
                file=file,
                image=ImageRef.parse(ctr["image"].split("@", 1)[0]).repository,
                ready_path=str(probe.get("path", "")),
                node_port=node_port,
                env_text="\n".join(env),
            )
        )
    return found


def match(loads: list[Workload], mains: list[Main]) -> None:
    """A workload runs the main named like it or like its image; a lone pair matches anyway."""
    for w in loads:
        names = {w.name, w.image.rsplit("/", 1)[-1]}
        hits = [m for m in mains if m.basename in names]
        if len(hits) == 1:
            w.main = hits[0]
    unmatched = [w for w in loads if w.main is None]
    free = [m for m in mains if all(w.main != m for w in loads)]
    if len(unmatched) == 1 and len(free) == 1:
        unmatched[0].main = free[0]
    served = {w.name for w in loads if w.main}
    for w in loads:  # `http://datastore:8080` in its env: it needs datastore first
        w.depends_on = sorted(
            o for o in served if o != w.name and re.search(rf"(^|[/@\s=,]){re.escape(o)}[:/.]", w.env_text)
        )


def _q(value: str) -> str:
    return json.dumps(value)  # a TOML basic string


def _kv(key: str, value: str, comment: str = "") -> str:
    line = f"{key} = {value}"
    return f"{line:<29} # {comment}" if comment else line


def _service(w: Workload) -> list[str]:
    assert w.main is not None
    lines = [
        "",
        "[[services]]",
        _kv("name", _q(w.name), f"the workload of {w.file.as_posix()}"),
        _kv("source", _q(w.main.module.as_posix() or "."), "Go module directory"),
        _kv("main", _q(w.main.package), "main package in it"),
        _kv("image", _q(w.image), "the manifest's image; the harness builds it and computes the tag"),
    ]
    if w.main.buildfile:
        lines.append(
            f"# containerfile = {_q(w.main.buildfile.as_posix())}  # found: uncomment to build with it "
            "instead of the host go build in an image of its own (its base images must be at hand)"
        )
    if w.node_port:
        lines.append(_kv("node_port", str(w.node_port), "its Service's NodePort; tests use 127.0.0.1"))
    else:
        lines.append("# no node_port: its Service has none, tests cannot reach it (make it type NodePort)")
    if w.ready_path:
        lines.append(_kv("ready_path", _q(w.ready_path), "its httpGet probe: answers 200 before the tests"))
    else:
        lines.append(_kv("ready_path", '""', "no httpGet readiness or liveness probe: nothing to poll"))
    if w.depends_on:
        lines.append(_kv("depends_on", f"[{', '.join(map(_q, w.depends_on))}]", "named in its env"))
    return lines


def render_config(
    root: Path, manifests: dict[Path, list[Doc]], loads: list[Workload], mains: list[Main]
) -> str:
    lines = [
        f"# Written by `inv init` from {root.name}/: the main packages (`go list`), the Kubernetes",
        "# manifests (workloads, images, readiness probes, NodePorts) and the Containerfiles found.",
        "# Paths are relative to this file. Check it, then: nox -s e2e -- --config <this file>",
        "",
        "manifests = [" + ", ".join(_q(p.as_posix()) for p in sorted(manifests)) + "]",
    ]
    for w in loads:
        if w.main:
            lines += _service(w)
    notes = [
        f"# workload {w.name} ({w.file.as_posix()}, image {w.image}): no main package here builds it"
        for w in loads
        if w.main is None
    ]
    notes += [
        f"# main {m.package} of {m.module.as_posix() or '.'}: no workload in the manifests runs it"
        for m in mains
        if all(w.main != m for w in loads)
    ]
    lines += ["", *notes] if notes else []
    lines += [
        "",
        "[platform]",
        _kv("default", '"auto"', "auto: kind when kind and a node image are here, else podman"),
        _kv("kind_config", '"kind/cluster.yaml"', "the harness's base kind config, copied here"),
        "",
        "[tests]",
        _kv("path", '"e2e"', "no conftest needed: the harness's pytest plugin gives the fixtures"),
        _kv("serial_marker", '"disruptive"', "tests that restart or stop a service run after the rest"),
        "",
    ]
    return "\n".join(lines)


SMOKE_TEST = '''\
"""Written by `inv init`: every service answers. Fixtures come from the harness's plugin."""

import pytest

# service -> the path it answers on: its readinessProbe, else /
SERVICES = {services}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_service_answers(service, service_url, http):
    path, probed = SERVICES[service]
    resp = http.get(service_url(service) + path)
    if probed:  # ready before the tests started: it must say so now
        assert resp.status_code == 200, f"{{service}} {{path}}: {{resp.status_code}} {{resp.text[:200]}}"
    else:
        assert resp.status_code < 500, f"{{service}} {{path}}: {{resp.status_code}} {{resp.text[:200]}}"
'''


def render_smoke_test(loads: list[Workload]) -> str:
    reachable = {w.name: (w.ready_path or "/", bool(w.ready_path)) for w in loads if w.main and w.node_port}
    return SMOKE_TEST.format(services=repr(reachable))


@dataclass(frozen=True)
class Written:
    path: Path
    written: bool  # False: it existed and was kept

    def line(self) -> str:
        return f"{'wrote' if self.written else 'kept '} {self.path}" + (
            "" if self.written else " (exists: not overwritten)"
        )


def _write(path: Path, text: str) -> Written:
    if path.exists():
        return Written(path, False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return Written(path, True)


def init(root: Path, runner: Runner) -> list[Written]:
    """Inspect root and write e2e.toml, e2e/test_smoke.py and kind/cluster.yaml where missing."""
    root = root.resolve()
    if not root.is_dir():
        raise InitError(f"{root} is not a directory; next: `inv init DIR` with your Go repo's directory")
    mains = find_mains(root, runner)
    if not mains:
        raise InitError(f"no main package in {root} (no go.mod, or `go list ./...` found no package main)")
    manifests = find_manifests(root)
    loads = workloads(manifests)
    match(loads, mains)
    if not any(w.main for w in loads):
        raise InitError(
            f"no Kubernetes workload in {root} runs one of its main packages "
            f"({', '.join(m.package for m in mains)}); next: add a Deployment whose name or image "
            "is named after the main package (e.g. image localhost/team/<main>:dev)"
        )
    out = [_write(root / "e2e.toml", render_config(root, manifests, loads, mains))]
    out.append(_write(root / "e2e" / "test_smoke.py", render_smoke_test(loads)))
    kind_config = root / "kind" / "cluster.yaml"
    if not kind_config.exists():
        kind_config.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HARNESS_KIND_CONFIG, kind_config)
        out.append(Written(kind_config, True))
    else:
        out.append(Written(kind_config, False))
    return out
