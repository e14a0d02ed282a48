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
import posixpath
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
from infra.run import dockerfile

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
    labels: dict[str, str] = field(default_factory=dict)  # the pods'
    port: int = 0  # the first container port
    program: str = ""  # what its container's command runs (a binary the Dockerfile names too)
    layout: dict[str, Any] | None = None  # from the Dockerfile that builds its main


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


KUSTOMIZATIONS = ("kustomization.yaml", "kustomization.yml", "Kustomization")
STANDARD_GROUPS = (
    "",
    "apps",
    "batch",
    "policy",
    "autoscaling",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
)
"""API groups every cluster serves: objects of other groups need a CRD the run's cluster lacks."""


def _api_group(doc: Doc) -> str:
    version = str(doc.get("apiVersion", ""))
    return version.split("/", 1)[0] if "/" in version else ""


def find_manifests(root: Path, skip: tuple[Path, ...] = ()) -> dict[Path, list[Doc]]:
    """Plain YAML files of Kubernetes objects, outside kustomizations and charts (skip)."""
    return {
        p.relative_to(root): docs
        for p in _walk(root)
        if p.suffix in (".yaml", ".yml")
        and not any(p.is_relative_to(s) for s in skip)
        and (docs := _kube_docs(p))
    }


@dataclass
class Sources:
    """What e2e.toml's `manifests` will list, what else was found, and the objects they hold."""

    entries: list[str]  # TOML values: "path" or an inline chart table
    docs: dict[Path, list[Doc]]  # by file (kustomize and helm: by their directory)
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _kustomizations(root: Path) -> list[Path]:
    return sorted({p.parent for p in _walk(root) if p.name in KUSTOMIZATIONS})


def _includes(kdir: Path, others: list[Path]) -> list[Path]:
    """The kustomizations another one builds on (its resources/bases/components naming their dirs)."""
    data = next(
        (yaml.safe_load((kdir / k).read_text()) for k in KUSTOMIZATIONS if (kdir / k).is_file()), None
    )
    refs = [str(r) for key in ("resources", "bases", "components") for r in (data or {}).get(key) or []]
    return [o for o in others if any((kdir / r).resolve() == o.resolve() for r in refs)]


PREFERRED = ("e2e", "test", "testing", "ci", "kind", "local", "dev")


def choose_sources(root: Path, runner: Runner) -> Sources:
    """kustomize first (one top kustomization, never two overlays mixed), else a Helm chart with its
    default values, else the plain YAML files; what was left out is said in the config."""
    from infra.config import parse as parse_config
    from infra.platforms.manifests import ManifestError, load_docs

    kdirs = _kustomizations(root)
    charts = sorted(p.parent for p in _walk(root) if p.name == "Chart.yaml")
    overlays = {k: _includes(k, kdirs) for k in kdirs}
    included = {b for bases in overlays.values() for b in bases}
    tops = [k for k in kdirs if k not in included]

    def rel(p: Path) -> str:
        return p.relative_to(root).as_posix()

    notes: list[str] = []
    chosen: tuple[str, Path] | None = None
    if tops:
        pick = next((t for name in PREFERRED for t in tops if t.name == name), tops[0])
        chosen = (_q(rel(pick)), pick)
        notes += [
            f"# kustomization {rel(t)} (an overlay of {', '.join(rel(b) for b in overlays[t]) or 'none'}): "
            f"not used; to use it instead, put {_q(rel(t))} in manifests"
            for t in tops
            if t != pick
        ]
        notes += [f"# helm chart {rel(c)}: not used (the kustomization is)" for c in charts]
    elif charts:
        chosen = ("{ chart = " + _q(rel(charts[0])) + " }", charts[0])
        notes += [
            f"# helm chart {rel(c)}: not used; to use it, add {{ chart = {_q(rel(c))} }}" for c in charts[1:]
        ]
    if chosen is not None:
        entry, where = chosen
        cfg = parse_config(
            {"manifests": [rel(where) if where not in charts else {"chart": rel(where)}], "services": []},
            root / "e2e.toml",
        )
        try:
            docs = load_docs(cfg, runner)
        except ManifestError as err:
            raise InitError(f"{rel(where)} does not render: {err}") from None
        return _sources([entry], {where.relative_to(root): docs}, notes, plain=False)
    plain = find_manifests(root, tuple(kdirs) + tuple(charts))
    return _sources([_q(p.as_posix()) for p in sorted(plain)], plain, notes, plain=True)


def _sources(entries: list[str], docs: dict[Path, list[Doc]], notes: list[str], *, plain: bool) -> Sources:
    """Leave out what the harness cannot run from plain files: kustomize's own config files and
    objects of API groups a fresh cluster does not serve (they need a CRD). A rendered source is
    listed whole: such objects in it are only said."""
    kept: dict[Path, list[Doc]] = {}
    skipped = []
    for file, file_docs in docs.items():
        good = []
        for d in file_docs:
            group = _api_group(d)
            what = f"# {file.as_posix()}: {d['kind']} {d['metadata'].get('name', '')}"
            if "kustomize.config.k8s.io" in group or group == "builtin" or d["kind"].endswith("Transformer"):
                skipped.append(f"{what}: a kustomize config file, not an object: left out")
            elif group not in STANDARD_GROUPS and not group.endswith(".k8s.io"):
                if plain:
                    skipped.append(f"{what} ({group}): needs a CRD the run's cluster does not have: left out")
                else:
                    skipped.append(f"{what} ({group}): needs a CRD: podman refuses it, kind needs the CRD")
                    good.append(d)
            else:
                good.append(d)
        if good or file_docs == []:
            kept[file] = good
        elif entries and _q(file.as_posix()) in entries:
            entries = [e for e in entries if e != _q(file.as_posix())]
    return Sources(entries, kept, notes, skipped)


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
        image = ctr["image"].split("@", 1)[0]
        found.append(
            Workload(
                name=doc["metadata"]["name"],
                file=file,
                image=ImageRef.parse(image).repository,
                ready_path=str(probe.get("path", "")),
                node_port=node_port,
                env_text="\n".join(env),
                labels=dict(labels),
                port=next(
                    (int(p["containerPort"]) for p in ctr.get("ports") or [] if p.get("containerPort")), 0
                ),
                program=posixpath.basename(str((ctr.get("command") or [""])[0])),
            )
        )
    return found


def dockerfile_layouts(root: Path, mains: list[Main]) -> dict[tuple[Path, str], dict[str, Any]]:
    """(module, main package) -> the layout of the Dockerfile that builds it (its final stage), with
    the repo paths relative to the repo root (where e2e.toml goes)."""
    out: dict[tuple[Path, str], dict[str, Any]] = {}
    modules = sorted({m.module for m in mains}, key=lambda m: len(m.parts), reverse=True)
    for path in (p for p in _walk(root) if p.name in BUILD_FILES or p.name.endswith(".Dockerfile")):
        layout = dockerfile.layout(path)
        if layout is None:
            continue
        context = path.parent
        module = next((m for m in modules if context.is_relative_to(root / m)), None)
        if module is None:
            continue

        def package(pkg: str) -> str:
            rel = (context / pkg).resolve().relative_to((root / module).resolve()).as_posix()  # noqa: B023
            return "." if rel == "." else f"./{rel}"

        main = package(layout.pop("main"))
        layout["binaries"] = {d: package(m) for d, m in layout.get("binaries", {}).items()}
        if not layout["binaries"]:
            del layout["binaries"]
        if "files" in layout:
            layout["files"] = {
                d: (context / f).resolve().relative_to(root.resolve()).as_posix()
                for d, f in layout["files"].items()
            }
        layout["dockerfile"] = path.relative_to(root).as_posix()
        out[(module, main)] = layout
    return out


def match(loads: list[Workload], mains: list[Main], layouts: dict[tuple[Path, str], dict[str, Any]]) -> None:
    """A workload runs the main named like it or like its image, or the one a Dockerfile builds under
    such a name. Never a leftover main to an unrelated workload."""
    for w in loads:
        names = {w.name, w.image.rsplit("/", 1)[-1]} | ({w.program} if w.program else set())
        hits = [m for m in mains if m.basename in names]
        if len(hits) != 1:  # the Dockerfile's entry binary, named like the workload
            hits = [
                m
                for m in mains
                if posixpath.basename(layouts.get((m.module, m.package), {}).get("binary", "")) in names
            ]
        if len(hits) == 1:
            w.main = hits[0]
            w.layout = layouts.get((hits[0].module, hits[0].package))
    served = {w.name for w in loads if w.main}
    for w in loads:  # `http://datastore:8080` in its env: it needs datastore first
        w.depends_on = sorted(
            o for o in served if o != w.name and re.search(rf"(^|[/@\s=,]){re.escape(o)}[:/.]", w.env_text)
        )


FIRST_NODE_PORT = 30080


def node_port_services(loads: list[Workload], docs: dict[Path, list[Doc]]) -> str:
    """A NodePort Service for each served workload that has none (tests reach services through it)."""
    used = {
        int(p["nodePort"])
        for ds in docs.values()
        for d in ds
        if d["kind"] == "Service"
        for p in (d.get("spec") or {}).get("ports") or []
        if p.get("nodePort")
    }
    names = {d["metadata"].get("name") for ds in docs.values() for d in ds}
    candidates = (n for n in range(FIRST_NODE_PORT, 32768) if n not in used)
    out = []
    for w in loads:
        if not w.main or w.node_port or not w.port or not w.labels:
            continue
        w.node_port = next(candidates)
        name = f"{w.name}-e2e" if f"{w.name}-e2e" not in names else f"{w.name}-nodeport"
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "e2e-harness-init"}},
                "spec": {
                    "type": "NodePort",
                    "selector": w.labels,
                    "ports": [
                        {"name": "http", "port": w.port, "targetPort": w.port, "nodePort": w.node_port}
                    ],
                },
            }
        )
    if not out:
        return ""
    head = (
        "# Written by `inv init`: a NodePort Service for each service the manifests publish no NodePort for\n"
    )
    return head + yaml.safe_dump_all(out, sort_keys=False)


def _q(value: str) -> str:
    return json.dumps(value)  # a TOML basic string


def _kv(key: str, value: str, comment: str = "") -> str:
    line = f"{key} = {value}"
    return f"{line:<29} # {comment}" if comment else line


def _inline(value: Any) -> str:
    """A TOML value on one line: strings, lists, inline tables."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_q(str(k))} = {_inline(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    return _q(str(value))


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
    if w.layout:
        layout = {k: v for k, v in w.layout.items() if k != "dockerfile"}
        lines.append(
            f"# laid out as {w.layout['dockerfile']}'s final stage does (its base images are not needed)"
        )
        lines.append(f"layout = {_inline(layout)}")
    elif w.main.buildfile:
        lines.append(
            f"# containerfile = {_q(w.main.buildfile.as_posix())}  # found: uncomment to build with it "
            "instead of the host go build in an image of its own (its base images must be at hand)"
        )
    if w.node_port:
        lines.append(_kv("node_port", str(w.node_port), "its Service's NodePort; tests use 127.0.0.1"))
    else:
        lines.append("# no node_port: no Service publishes it and it declares no port: tests cannot reach it")
    if w.ready_path:
        lines.append(_kv("ready_path", _q(w.ready_path), "its httpGet probe: answers 200 before the tests"))
    else:
        lines.append(_kv("ready_path", '""', "no httpGet readiness or liveness probe: nothing to poll"))
    if w.depends_on:
        lines.append(_kv("depends_on", f"[{', '.join(map(_q, w.depends_on))}]", "named in its env"))
    return lines


def render_config(root: Path, sources: Sources, loads: list[Workload], mains: list[Main]) -> str:
    lines = [
        f"# Written by `inv init` from {root.name}/: the main packages (`go list`), the Kubernetes",
        "# manifests (kustomize, Helm or plain YAML: workloads, images, probes, NodePorts) and Dockerfiles.",
        "# Paths are relative to this file. Check it, then: nox -s e2e -- --config <this file>",
        "",
        "manifests = [" + ", ".join(sources.entries) + "]",
        *sources.notes,
        *sources.skipped,
    ]
    for w in loads:
        if w.main:
            lines += _service(w)
    notes = [
        f"# workload {w.name} ({w.file.as_posix()}, image {w.image}): no main package here builds it"
        for w in loads
        if w.main is None
    ]
    in_layouts = {(w.main.module, pkg) for w in loads if w.main and w.layout for pkg in
                  (w.layout.get("binaries") or {}).values()}  # fmt: skip
    notes += [
        f"# main {m.package} of {m.module.as_posix() or '.'}: no workload in the manifests runs it"
        for m in mains
        if all(w.main != m for w in loads) and (m.module, m.package) not in in_layouts
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
    sources = choose_sources(root, runner)
    loads = workloads(sources.docs)
    match(loads, mains, dockerfile_layouts(root, mains))
    if not any(w.main for w in loads):
        raise InitError(
            f"no Kubernetes workload in {root} runs one of its main packages "
            f"({', '.join(m.package for m in mains)}); next: add a Deployment whose name or image "
            "is named after the main package (e.g. image localhost/team/<main>:dev)"
        )
    out = []
    services = node_port_services(loads, sources.docs)
    if services:
        written = _write(root / "e2e" / "nodeports.yaml", services)
        out.append(written)
        sources.entries.append(_q("e2e/nodeports.yaml"))
    out.insert(0, _write(root / "e2e.toml", render_config(root, sources, loads, mains)))
    out.append(_write(root / "e2e" / "test_smoke.py", render_smoke_test(loads)))
    kind_config = root / "kind" / "cluster.yaml"
    if not kind_config.exists():
        kind_config.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HARNESS_KIND_CONFIG, kind_config)
        out.append(Written(kind_config, True))
    else:
        out.append(Written(kind_config, False))
    return out
