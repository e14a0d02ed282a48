"""The stack's Kubernetes YAML: loaded once, rendered with the run's image refs."""

from __future__ import annotations

import contextlib
import copy
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infra.builds import rendertools
from infra.builds.build import BINARY, ImagePlan
from infra.config import Config, HelmChart, Layout, ManifestSource
from infra.console import say
from infra.gocover import coverflush
from infra.images import ImageRef, qualify
from infra.names import InvalidName
from infra.paths import user_cache
from infra.proc import CommandError, Runner, SubprocessRunner

Doc = dict[str, Any]
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
"""Pods that keep running: waited for until rolled out and ready."""
JOB_KINDS = ("Job",)
"""Pods that run to completion: waited for until complete, before the workloads beside them."""
POD_KINDS = WORKLOAD_KINDS + JOB_KINDS
# ConfigMaps and Secrets before what reads them; Jobs (migrations) complete before the workloads start
APPLY_ORDER = {"Namespace": -1.0, "ConfigMap": 0.0, "Secret": 0.0, "Job": 0.5, "Service": 2.0}


class ManifestError(Exception):
    pass


KUSTOMIZATIONS = ("kustomization.yaml", "kustomization.yml", "Kustomization")
RENDER_TIMEOUT = 120.0


def load_docs(config: Config, runner: Runner | None = None) -> list[Doc]:
    """Every document of every source: YAML files, kustomizations and Helm charts (rendered here)."""
    docs: list[Doc] = []
    for entry in config.manifests:
        text, label, origin = _source_text(config, entry, runner or SubprocessRunner())
        try:
            loaded = [d for d in yaml.safe_load_all(text) if d]
        except yaml.YAMLError as err:
            raise ManifestError(f"manifest {origin} is not valid YAML: {err}") from None
        for doc in loaded:
            if not isinstance(doc, dict) or "kind" not in doc or "metadata" not in doc:
                raise ManifestError(f"manifest {origin}: every document needs kind and metadata")
            doc.setdefault("metadata", {}).setdefault("annotations", {})
            doc["metadata"]["annotations"]["e2e-harness/source"] = label
            docs.append(doc)
    return docs


def _source_text(config: Config, entry: ManifestSource, runner: Runner) -> tuple[str, str, str]:
    """(YAML text, the source's label in messages, what a parse error names)."""
    if isinstance(entry, HelmChart):
        chart = config.path(entry.chart)
        if not (chart / "Chart.yaml").is_file():
            raise ManifestError(f"helm chart {chart} has no Chart.yaml (listed in {config.source_file})")
        return _helm(config, entry, runner), f"{entry.chart} (helm)", f"{chart} (helm template)"
    path = config.path(entry)
    if path.is_dir():
        if any((path / k).is_file() for k in KUSTOMIZATIONS):
            return _kustomize(path, runner), f"{entry} (kustomize)", f"{path} (kustomize)"
        if (path / "Chart.yaml").is_file():
            return _helm(config, HelmChart(chart=entry), runner), f"{entry} (helm)", f"{path} (helm template)"
        raise ManifestError(
            f"manifest directory {path} holds neither a kustomization.yaml nor a Chart.yaml (listed in "
            f"{config.source_file}); next: list its YAML files, or point at the kustomization"
        )
    try:
        return path.read_text(), str(entry), str(path)
    except FileNotFoundError:
        raise ManifestError(f"manifest {path} not found (listed in {config.source_file})") from None


def _render(argv: list[str], runner: Runner, what: str, env: dict[str, str] | None = None) -> str:
    try:
        return runner.run(argv, timeout=RENDER_TIMEOUT, env=env).stdout
    except CommandError as err:
        said = err.output_tail.strip() or f"exit {err.returncode}"
        raise ManifestError(f"{what} failed: {said}") from None


def _kustomize(path: Path, runner: Runner) -> str:
    try:
        kubectl = rendertools.kubectl()
    except rendertools.ToolMissing as err:
        raise ManifestError(f"kustomization {path}: {err}") from None
    return _render([str(kubectl), "kustomize", str(path)], runner, f"kustomize of {path}")


def _helm(config: Config, chart: HelmChart, runner: Runner) -> str:
    if not rendertools.helm_path().is_file():
        say(f"helm {rendertools.HELM_VERSION}: built once from the Go module proxy (a few minutes), cached "
            f"at {rendertools.helm_path()}")  # fmt: skip
    try:
        helm = rendertools.helm(runner)
    except CommandError as err:
        raise ManifestError(
            f"helm chart {config.path(chart.chart)}: helm could not be built: {err}"
        ) from None
    home = user_cache("helm") / "home"  # never the user's own helm config, cache or repositories
    env = {f"HELM_{k}_HOME": str(home / k.lower()) for k in ("CACHE", "CONFIG", "DATA")}
    argv = [str(helm), "template", chart.release, str(config.path(chart.chart))]
    for values in chart.values:
        argv += ["--values", str(config.path(values))]
    for key, value in sorted(chart.set.items()):
        argv += ["--set", f"{key}={value}"]
    return _render(argv, runner, f"helm template of {config.path(chart.chart)}", env)


def check(config: Config, docs: list[Doc], *, coverage: bool) -> list[str]:
    """What would otherwise fail late, found before anything is built: exit 2, in well under a second.

    Returns notices: what may be meant, and runs anyway.
    """
    problems = []
    used: set[str] = set()
    foreign: set[str] = set()
    built = {qualify(svc.image) for svc in config.services}
    for d in docs:
        for c in containers(d):
            if not isinstance(c.get("image"), str):
                problems.append(f"{ident(d)} ({source(d)}): container {c.get('name')!r} has no image")
                continue
            repo = _service_repository(c["image"])
            if repo in built:
                used.add(repo)
                continue
            try:
                foreign.add(str(ImageRef.foreign(c["image"])))
            except InvalidName as err:
                problems.append(f"{ident(d)} ({source(d)}): {err}")
    for stand_in in config.images.stand_in:
        try:
            unused = str(ImageRef.foreign(stand_in.image)) not in foreign
        except InvalidName as err:
            problems.append(f"images.stand_in: {err}")
            continue
        if unused:
            problems.append(
                f"images.stand_in {stand_in.image!r}: no container in the manifests uses it; "
                "next: spell it as the manifests do, or remove the entry"
            )
        if stand_in.containerfile is not None and not config.path(stand_in.containerfile).is_file():
            problems.append(
                f"images.stand_in {stand_in.image!r}: containerfile {config.path(stand_in.containerfile)} "
                "does not exist; next: fix the path (relative to the config file)"
            )
        elif not config.path(stand_in.source).is_dir():
            problems.append(
                f"images.stand_in {stand_in.image!r}: source {config.path(stand_in.source)} is no directory"
            )
        elif stand_in.containerfile is None and not (config.path(stand_in.source) / "go.mod").is_file():
            problems.append(
                f"images.stand_in {stand_in.image!r}: source {config.path(stand_in.source)} "
                "is not a Go module (no go.mod)"
            )
    for svc in config.services:
        if qualify(svc.image) not in used:
            problems.append(
                f"service {svc.name!r}: no workload in the manifests uses its image {qualify(svc.image)} "
                "(it would be built, then waited for, and never run); next: reference "
                f"{qualify(svc.image)}:<any tag> in a manifest, or fix services[].image"
            )
    for svc in config.services:
        src = config.path(svc.source)
        if not (src / "go.mod").is_file() and svc.containerfile is None:
            problems.append(f"service {svc.name!r}: source {src} is not a Go module (no go.mod)")
    if coverage:
        for module in config.coverage_modules():
            if not (module / "go.mod").is_file():
                where = "coverage.go_module" if config.coverage.go_module else "a service's source"
                problems.append(f"{where}: {module} is not a Go module (no go.mod)")
    problems += references(docs) + probe_ports(docs) + node_port_clashes(docs) + programs(config, docs)
    if problems:
        raise ManifestError(f"the stack of {config.source_file} cannot run:\n  " + "\n  ".join(problems))
    return unnamed_services(config, docs)


def _runs(ctr: Doc) -> list[tuple[str, str]]:
    """What a container starts by name: (what, program) for command/args[0] and each exec probe."""
    out = []
    first = (ctr.get("command") or [None])[0]
    if isinstance(first, str):
        out.append(("its command", first))
    for field_, what in PROBES.items():
        command = ((ctr.get(field_) or {}).get("exec") or {}).get("command") or [None]
        if isinstance(command[0], str):
            out.append((f"its {what} (exec)", command[0]))
    return out


DEFAULT_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
"""Where runc looks for a command with no slash when the image sets no PATH."""


@dataclass(frozen=True)
class BuiltImage:
    """What an image the harness builds holds: its binaries, its layout's repo files, its workdir."""

    who: str
    binaries: frozenset[str]
    files: dict[str, Path]  # image path -> repo file or directory
    workdir: str = "/"
    path: tuple[str, ...] = DEFAULT_PATH

    def holds(self, image_path: str) -> bool:
        if image_path in self.binaries:
            return True
        for dest, src in self.files.items():
            if image_path == dest:
                return True
            if image_path.startswith(dest.rstrip("/") + "/") and src.is_dir():
                return (src / image_path[len(dest.rstrip("/")) + 1 :]).is_file()
        return False

    def finds(self, program: str) -> bool:
        """As runc resolves it: a path against the workdir, a bare name along PATH."""
        if "/" in program:
            return self.holds(posixpath.normpath(posixpath.join(self.workdir, program)))
        return any(self.holds(posixpath.join(d, program)) for d in self.path)

    def contents(self) -> str:
        return ", ".join(sorted(self.binaries | set(self.files)))


def built_images(config: Config) -> dict[str, BuiltImage]:
    """Repository -> what the harness puts in the image (services without a Containerfile, stand-ins)."""
    out = {}
    for svc in config.services:
        if svc.containerfile is None:
            layout = svc.layout or Layout()
            path = tuple(p for p in layout.env.get("PATH", "").split(":") if p) or DEFAULT_PATH
            out[qualify(svc.image)] = BuiltImage(
                f"service {svc.name!r}", frozenset(svc.mains()),
                {d: config.path(src) for d, src in layout.files.items()}, layout.workdir or "/", path,
            )  # fmt: skip
    for stand_in in config.images.stand_in:
        if stand_in.containerfile is not None:
            continue  # its own Containerfile may put anything in it
        with contextlib.suppress(InvalidName):
            repo = ImageRef.foreign(stand_in.image).repository
            out[repo] = BuiltImage(f"the stand-in for {stand_in.image}", frozenset({f"/{BINARY}"}), {})
    return out


def programs(config: Config, docs: list[Doc]) -> list[str]:
    """A program a container runs that the image the harness builds for it does not hold: refused
    now, not found as a runc error or a readiness timeout later. Images built from a team's own
    Containerfile may hold anything: not checked."""
    built = built_images(config)
    problems = []
    for d in docs:
        for c in containers(d):
            image = str(c.get("image", ""))
            repo = _service_repository(image)
            with contextlib.suppress(InvalidName):
                repo = repo if repo in built else ImageRef.foreign(image.split("@", 1)[0]).repository
            if repo not in built:
                continue
            held = built[repo]
            for what, program in _runs(c):
                if not held.finds(program):
                    problems.append(
                        f"{ident(d)} ({source(d)}) container {c.get('name')!r}: {what} runs {program!r}, "
                        f"which the image the harness builds for {held.who} does not hold (it holds "
                        f"{held.contents()}); next: run one of those, or lay the image out as your "
                        "Dockerfile does (services[].layout), or build it from your own Containerfile"
                    )
    return problems


def unnamed_services(config: Config, docs: list[Doc]) -> list[str]:
    """Services of e2e.toml that no manifest object is named like: a notice, not a refusal."""
    names = {d["metadata"].get("name") for d in docs}
    runs: dict[str, list[str]] = {}
    for d in docs:
        for c in containers(d):
            runs.setdefault(_service_repository(str(c.get("image", ""))), []).append(ident(d))
    return [
        f"notice: service {svc.name!r} of {config.source_file}: no manifest object is named {svc.name!r}; "
        f"its image runs in {', '.join(sorted(set(runs.get(qualify(svc.image), []))))}, which "
        f"platform.restart({svc.name!r}) and the logs act on"
        for svc in config.services
        if svc.name not in names
    ]


def _keys(doc: Doc) -> set[str]:
    fields = ("data", "stringData") if doc["kind"] == "Secret" else ("data", "binaryData")
    return {k for f in fields for k in (doc.get(f) or {})}


def references(docs: list[Doc]) -> list[str]:
    """ConfigMap and Secret references (env, envFrom, volumes) to an object or key no manifest defines."""
    defined = {
        (d["kind"], d["metadata"].get("name")): _keys(d) for d in docs if d["kind"] in ("ConfigMap", "Secret")
    }
    problems: list[str] = []

    def need(where: str, kind: str, name: object, key: str | None, optional: object) -> None:
        if optional is True:
            return
        keys = defined.get((kind, name))
        if keys is None:
            problems.append(
                f"{where}: {kind} {name!r} is defined by no manifest; next: add it, or mark "
                "the reference optional"
            )
        elif key is not None and key not in keys:
            known = ", ".join(sorted(keys)) or "none"
            problems.append(f"{where}: {kind} {name!r} has no key {key!r} (its keys: {known})")

    for d in docs:
        if d["kind"] not in POD_KINDS:
            continue
        at = f"{ident(d)} ({source(d)})"
        for c in containers(d):
            who = f"{at} container {c.get('name')!r}"
            for env in c.get("env") or []:
                vf = env.get("valueFrom") or {}
                for field_, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                    ref = vf.get(field_)
                    if isinstance(ref, dict):
                        need(
                            f"{who} env {env.get('name')!r} ({field_})",
                            kind,
                            ref.get("name"),
                            ref.get("key"),
                            ref.get("optional"),
                        )
            for src in c.get("envFrom") or []:
                for field_, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                    ref = src.get(field_)
                    if isinstance(ref, dict):
                        need(f"{who} envFrom ({field_})", kind, ref.get("name"), None, ref.get("optional"))
        for vol in pod_spec(d).get("volumes") or []:
            for field_, kind, name_key in (
                ("configMap", "ConfigMap", "name"),
                ("secret", "Secret", "secretName"),
            ):
                ref = vol.get(field_)
                if not isinstance(ref, dict):
                    continue
                where = f"{at} volume {vol.get('name')!r}"
                need(where, kind, ref.get(name_key), None, ref.get("optional"))
                for item in ref.get("items") or []:
                    need(f"{where} items", kind, ref.get(name_key), item.get("key"), ref.get("optional"))
    return problems


PROBES = {
    "readinessProbe": "readiness probe",
    "livenessProbe": "liveness probe",
    "startupProbe": "startup probe",
}


def probe_ports(docs: list[Doc]) -> list[str]:
    """A probe on a named port the container does not declare never passes: say which probe."""
    problems = []
    for d in docs:
        for c in containers(d):
            named = {p.get("name") for p in c.get("ports") or [] if p.get("name")}
            for field_, what in PROBES.items():
                probe = c.get(field_) or {}
                for handler in ("httpGet", "tcpSocket"):
                    port = (probe.get(handler) or {}).get("port")
                    if isinstance(port, str) and not port.isdigit() and port not in named:
                        problems.append(
                            f"{ident(d)} ({source(d)}) container {c.get('name')!r}: the {what} ({handler}) "
                            f"uses port {port!r}, which the container does not declare (its named ports: "
                            f"{', '.join(sorted(named)) or 'none'}); next: name the port under "
                            "`ports`, or give the probe a number"
                        )
    return problems


def node_port_clashes(docs: list[Doc]) -> list[str]:
    """Two Services on one nodePort: Kubernetes refuses the second; podman would publish one."""
    seen: dict[int, str] = {}
    problems = []
    for d in docs:
        if d["kind"] != "Service":
            continue
        for port in (d.get("spec") or {}).get("ports") or []:
            node_port = port.get("nodePort")
            if not node_port:
                continue
            here = f"{ident(d)} ({source(d)})"
            if node_port in seen:
                problems.append(
                    f"nodePort {node_port} is used by {seen[node_port]} and {here}: Kubernetes "
                    "allows one Service per nodePort; next: give one of them another"
                )
            else:
                seen[node_port] = here
    return problems


def _service_repository(image: str) -> str:
    try:
        return ImageRef.parse(image.split("@", 1)[0]).repository
    except InvalidName:
        return ""


def source(doc: Doc) -> str:
    """The manifest file a document came from, as listed in the config."""
    return str((doc.get("metadata", {}).get("annotations") or {}).get("e2e-harness/source", "?"))


def pod_spec(doc: Doc) -> Doc:
    spec: Doc = doc["spec"]["template"]["spec"]
    return spec


def containers(doc: Doc) -> Iterator[Doc]:
    if doc.get("kind") in POD_KINDS:
        spec = pod_spec(doc)
        yield from spec.get("initContainers", [])
        yield from spec.get("containers", [])


def ident(doc: Doc) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


@dataclass
class Rendered:
    """The rendered stack, and which documents each service's deploy applies."""

    docs: list[Doc]
    by_service: dict[str, list[Doc]] = field(default_factory=dict)
    shared: list[Doc] = field(default_factory=list)
    foreign: dict[ImageRef, list[str]] = field(default_factory=dict)
    """Images the harness does not build -> the objects using them."""

    def workloads(self) -> list[Doc]:
        """Everything that runs pods: workloads and Jobs."""
        return [d for d in self.docs if d["kind"] in POD_KINDS]

    def shared_workloads(self) -> list[str]:
        """The workloads no service owns (a database, a cache): waited for, and handled, by name."""
        return [d["metadata"]["name"] for d in self.shared if d["kind"] in WORKLOAD_KINDS]

    def image_refs(self) -> dict[str, str]:
        """Every image a workload or Job references -> the object naming it."""
        return {c["image"]: ident(d) for d in self.workloads() for c in containers(d)}

    def yaml(self) -> str:
        return yaml.safe_dump_all(self.docs, sort_keys=False)


def pod_labels(workload: Doc) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"].get("labels", {})
    return labels


def selects(service: Doc, labels: dict[str, str]) -> bool:
    """Whether a Service's selector picks pods with these labels (an empty one picks none)."""
    selector = service.get("spec", {}).get("selector") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def render(
    config: Config, docs: list[Doc], plan: ImagePlan, *, coverage: bool, pull_port: int = 0
) -> Rendered:
    """Substitute the run's refs (by repository), force local pulls, add coverage: into a hostPath the
    harness reads (kind, podman), or, with pull_port, served on that port (a cluster it cannot read)."""
    by_repo: dict[str, tuple[str, ImageRef]] = {
        qualify(svc.image): (svc.name, plan.ref(svc.name)) for svc in config.services
    }
    out = copy.deepcopy(docs)
    for doc in out:  # every object goes into the run's own namespace (kind), or none (podman)
        doc["metadata"].pop("namespace", None)
    rendered = Rendered(out)
    owner: dict[str, str] = {}
    for doc in out:
        keeper: Doc | None = None
        for ctr in containers(doc):
            if ctr.get("name") == coverflush.KEEPER:  # rendered before: it is there already
                keeper = ctr
                ctr["image"] = str(by_repo[_service_repository(ctr["image"])][1])
                continue
            match = by_repo.get(_service_repository(ctr["image"]))
            if match is None:
                _foreign(rendered, doc, ctr)
                continue
            service, ref = match
            ctr["image"] = str(ref)
            ctr["imagePullPolicy"] = "Never"
            owner[ident(doc)] = service
            if coverage:
                _add_coverage(ctr, pod_spec(doc), config.coverage.mount, service, pull_port)
                if pull_port and keeper is None and ctr in pod_spec(doc).get("containers", []):
                    keeper = _keeper(ctr, config.coverage.mount, pull_port)
        if keeper is not None and keeper not in pod_spec(doc)["containers"]:
            pod_spec(doc)["containers"].append(keeper)
    for doc in out:
        if doc["kind"] in POD_KINDS:
            _group(rendered, owner.get(ident(doc)), doc)
    for doc in out:
        if doc["kind"] not in POD_KINDS:
            _group(rendered, _owner_of(doc, rendered), doc)
    for name in config.names():
        rendered.by_service.setdefault(name, [])
    for docs_ in [rendered.shared, *rendered.by_service.values()]:
        docs_.sort(key=lambda d: APPLY_ORDER.get(d["kind"], 1))
    return rendered


def _foreign(rendered: Rendered, doc: Doc, ctr: Doc) -> None:
    """A third-party image: its full reference, and no pull in the cluster (the harness brings it)."""
    ref = ImageRef.foreign(ctr["image"])
    ctr["image"] = str(ref)
    if ctr.get("imagePullPolicy") != "Never":
        ctr["imagePullPolicy"] = "IfNotPresent"
    users, who = rendered.foreign.setdefault(ref, []), f"{ident(doc)} ({source(doc)})"
    if who not in users:  # an init container of the same image: one object
        users.append(who)


def _group(rendered: Rendered, service: str | None, doc: Doc) -> None:
    (rendered.by_service.setdefault(service, []) if service else rendered.shared).append(doc)


def _owner_of(doc: Doc, rendered: Rendered) -> str | None:
    """The one service whose workloads a Service selects or a ConfigMap/Secret feeds; else shared."""
    kind, name = doc["kind"], doc["metadata"]["name"]

    def uses(wl: Doc) -> bool:
        return wl["kind"] in POD_KINDS and (
            (kind == "Service" and wl["kind"] in WORKLOAD_KINDS and selects(doc, pod_labels(wl)))
            or (kind in ("ConfigMap", "Secret") and name in _refs(wl))
        )

    if any(uses(wl) for wl in rendered.shared):  # deployed before every service, so before its users
        return None
    users = {service for service, docs in rendered.by_service.items() for wl in docs if uses(wl)}
    return users.pop() if len(users) == 1 else None


def _refs(workload: Doc) -> set[str]:
    names: set[str] = set()
    spec = pod_spec(workload)
    for ctr in containers(workload):
        for src in ctr.get("envFrom", []):
            for key in ("configMapRef", "secretRef"):
                if key in src:
                    names.add(src[key]["name"])
        for env in ctr.get("env", []):
            for key in ("configMapKeyRef", "secretKeyRef"):
                ref = env.get("valueFrom", {}).get(key)
                if ref:
                    names.add(ref["name"])
    for vol in spec.get("volumes", []):
        for key, field_ in (("configMap", "name"), ("secret", "secretName")):
            if key in vol:
                names.add(vol[key][field_])
    return names


COVERAGE_VOLUME = "e2e-harness-coverdata"


def _add_coverage(ctr: Doc, spec: Doc, mount: str, service: str, pull_port: int = 0) -> None:
    added = {"GOCOVERDIR": f"{mount}/{service}"}
    if pull_port:  # the pod's own emptyDir, at the mount itself: nothing makes a subdirectory in it
        added = {"GOCOVERDIR": mount, coverflush.ADDR_ENV: f":{pull_port}"}
    env = [e for e in ctr.get("env", []) if e.get("name") not in added]
    ctr["env"] = [*env, *({"name": k, "value": v} for k, v in added.items())]
    mounts = [m for m in ctr.get("volumeMounts", []) if m.get("name") != COVERAGE_VOLUME]
    ctr["volumeMounts"] = [*mounts, {"name": COVERAGE_VOLUME, "mountPath": mount}]
    volumes = [v for v in spec.get("volumes", []) if v.get("name") != COVERAGE_VOLUME]
    # pulled: an emptyDir takes what the exit writes (the harness pulled all before the stop)
    source = {"emptyDir": {}} if pull_port else {"hostPath": {"path": mount, "type": "DirectoryOrCreate"}}
    spec["volumes"] = [*volumes, {"name": COVERAGE_VOLUME, **source}]


def _keeper(ctr: Doc, mount: str, pull_port: int) -> Doc:
    """Beside a -cover service where the harness cannot read a node: the same binary in keeper mode
    (it never runs main), sharing GOCOVERDIR, hands over what the service wrote on its way out (its
    exit's counters, a Job's whole run) before the pod goes (coverflush.KEEPER_ENV)."""
    keeper: Doc = {
        "name": coverflush.KEEPER,
        "image": ctr["image"],
        "imagePullPolicy": ctr.get("imagePullPolicy", "IfNotPresent"),
        "env": [{"name": "GOCOVERDIR", "value": mount},
                {"name": coverflush.KEEPER_ENV, "value": f":{pull_port + 1}"},
                {"name": coverflush.KEEPER_MAIN_ENV, "value": f"127.0.0.1:{pull_port}"}],
        "volumeMounts": [{"name": COVERAGE_VOLUME, "mountPath": mount}],
    }  # fmt: skip
    for key in (
        "command",
        "args",
        "workingDir",
        "securityContext",
    ):  # the binary found as the service finds it
        if key in ctr:
            keeper[key] = copy.deepcopy(ctr[key])
    return keeper


def write(rendered: Rendered, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(rendered.yaml())
    return path
