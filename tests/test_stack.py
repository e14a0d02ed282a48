"""infra.platforms.stack: the tag is computed once per run and carried unchanged to every step."""

from __future__ import annotations

import copy
import dataclasses
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from infra import images, waits
from infra.builds import build
from infra.config import Config
from infra.images import ImageRef
from infra.paths import RunPaths
from infra.phases import PhaseFailed, Timeline, Timing
from infra.platforms import manifests
from infra.platforms.manifests import Rendered
from infra.platforms.platform import Context
from infra.platforms.stack import Stack, bring_up, setup_phases
from infra.podman_cli import Podman
from infra.proc import RecordingRunner, Result, SubprocessRunner
from tests.conftest import RealGoList, built_refs, go_build_writes_binaries

RUN_ID = "20260101-000000-abcd"
HOST_PORTS = {30080: 41080, 30081: 41081}


@pytest.fixture
def stack_cfg(repo_cfg: Config) -> Config:
    """The example's two services and its Go stand-in, without its database and cache (see
    test_the_shared_workloads_are_waited_for_beside_the_services for those): the phase graph's contract."""
    manifests_ = tuple(m for m in repo_cfg.manifests if m.name in ("datastore.yaml", "gateway.yaml"))
    go_stand_ins = tuple(s for s in repo_cfg.images.stand_in if s.containerfile is None)
    images = repo_cfg.images.model_copy(update={"stand_in": go_stand_ins})
    return repo_cfg.model_copy(update={"manifests": manifests_, "images": images})


class FakePlatform:
    """Records the platform calls the setup DAG makes."""

    def __init__(self, ctx: Context, name: str = "kind") -> None:
        self.name = name
        self.images_step = {"kind": "load", "cluster": "push"}.get(name, "")
        self.brings_third_party = self.on_this_machine = name != "cluster"
        self.ctx = ctx
        self.calls: list[tuple[Any, ...]] = []
        self.lock = threading.Lock()

    def _rec(self, *call: Any) -> None:
        with self.lock:
            self.calls.append(call)

    def create(self) -> None:
        self._rec("create")

    def load_images(self, refs: Sequence[ImageRef]) -> None:
        self._rec("load", tuple(str(r) for r in refs))

    def verify_images(self, rendered: Rendered) -> None:
        self._rec("verify", tuple(sorted(rendered.image_refs())))

    def deploy(self, service: str, docs: list[dict[str, Any]]) -> None:
        self._rec("deploy", service, copy.deepcopy(docs))

    def wait_ready(self, service: str) -> None:
        self._rec("wait", service)

    def teardown(self) -> None:
        self._rec("teardown")

    def state(self) -> dict[str, object]:
        return {}

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == kind]


class Reporter:
    def __init__(self) -> None:
        self.started_names: list[str] = []
        self.finished_timings: list[Timing] = []

    def started(self, name: str, at: float) -> None:
        self.started_names.append(name)

    def finished(self, timing: Timing) -> None:
        self.finished_timings.append(timing)


@pytest.fixture
def tag_spy(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    real = images.content_tag

    def spy(source: Path, **kw: Any) -> str:
        tag = real(source, **kw)
        calls.append({"source": source, **kw, "tag": tag})
        return tag

    monkeypatch.setattr(build, "content_tag", spy)
    monkeypatch.setattr(images, "content_tag", spy)
    return calls


@pytest.fixture
def http_waits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    urls: list[str] = []

    def fake_wait_http(url: str, **kw: Any) -> None:
        urls.append(url)

    monkeypatch.setattr(waits, "wait_http", fake_wait_http)
    return urls


def make_stack(
    cfg: Config, tmp_path: Path, runner: RecordingRunner, *, coverage: bool, platform: str = "kind"
) -> tuple[Stack, FakePlatform]:
    paths = RunPaths(tmp_path, RUN_ID)
    plan = build.plan_images(cfg, coverage=coverage, toolchain="go1.22.5", runner=SubprocessRunner())
    ctx = Context(
        config=cfg,
        paths=paths,
        runner=runner,
        podman=Podman(runner),
        coverage=coverage,
        host_ports=HOST_PORTS,
        cluster="",
        rendered=manifests.render(cfg, manifests.load_docs(cfg), plan, coverage=coverage),
    )
    plat = FakePlatform(ctx, platform)
    return Stack(cfg, paths, plat, plan), plat  # type: ignore[arg-type]


@pytest.mark.parametrize("parallel", [True, False])
def test_tag_is_computed_once_and_every_step_carries_the_same_ref(
    stack_cfg: Config, tmp_path: Path, tag_spy: list[dict[str, Any]], http_waits: list[str], parallel: bool
) -> None:
    runner = RecordingRunner(responders=[go_build_writes_binaries])
    runner.on(["podman", "image", "exists"], returncode=1)  # nothing built yet
    st, plat = make_stack(stack_cfg, tmp_path, runner, coverage=True)
    reporter = Reporter()
    bring_up(
        st, runner=runner, podman=Podman(runner), timeline=Timeline(), reporter=reporter, parallel=parallel
    )

    # one content_tag per service (and per stand-in) for the whole run
    assert sorted(c["main"] for c in tag_spy) == ["./datastore", "./gateway", "./waitfor"]
    spied = {c["main"]: c for c in tag_spy}
    assert spied["./waitfor"]["coverage"] is False  # a stand-in is never a coverage build
    want = {
        name: f"localhost/e2e-harness/{name}:{spied[f'./{name}']['tag']}" for name in ("datastore", "gateway")
    }
    assert spied["./datastore"]["coverage"] and spied["./gateway"]["coverage"]
    assert {k: str(v) for k, v in st.plan.refs.items()} == want
    waitfor = "registry.example.com/e2e-harness/waitfor:1.0"  # third-party: its own name, no localhost/
    # built under its cache name, by its inputs' digest, then tagged with the manifests' name
    kept = str(images.stand_in_cache(ImageRef.foreign(waitfor), st.plan.stand_ins[ImageRef.foreign(waitfor)]))

    # podman image exists / podman build --tag carry the same refs
    exists = sorted(a[3] for a in runner.argvs() if a[:3] == ("podman", "image", "exists"))
    assert exists == sorted([*want.values(), waitfor, kept])
    tags = sorted(built_refs(runner.argvs()))
    assert tags == sorted([*want.values(), kept])
    assert ("podman", "tag", kept, waitfor) in runner.argvs()
    go_builds = sorted((a for a in runner.argvs() if a[:2] == ("go", "build")), key=lambda a: a[-1])
    # one go build for both mains of the module, with the cover flags; one for the stand-in, without
    assert len(go_builds) == 2 and "-cover" in go_builds[0] and "-cover" not in go_builds[1]
    assert go_builds[0][-2:] == ("./datastore", "./gateway") and go_builds[0][-3].endswith("/")
    assert st.built == {"datastore": True, "gateway": True}

    # the platform loads, verifies and deploys exactly those refs
    assert plat.of("load") == [("load", (want["datastore"], want["gateway"], waitfor))]
    assert sorted(plat.of("verify")) == [
        ("verify", ()),  # the shared Secret
        ("verify", (want["datastore"],)),
        ("verify", (want["gateway"], waitfor)),
    ]
    deployed = {c[1]: c[2] for c in plat.of("deploy")}
    assert set(deployed) == {"", "datastore", "gateway"}
    for name, docs in deployed.items():
        images_in_docs = {
            c["image"]
            for d in docs
            if d["kind"] in ("Deployment", "StatefulSet", "Job")
            for c in d["spec"]["template"]["spec"]["containers"]
        }
        assert images_in_docs == ({want[name]} if name else set())
    assert len(tag_spy) == 3  # nothing during bring_up recomputed a tag

    # order: cluster first among platform calls; gateway is deployed after datastore is ready
    seq = [c[:2] if c[0] != "load" else ("load",) for c in plat.calls]
    assert seq[0] == ("create",)
    assert seq.index(("wait", "datastore")) < seq.index(("deploy", "gateway"))
    assert seq.index(("load",)) < seq.index(("deploy", "datastore"))
    assert sorted(http_waits) == ["http://127.0.0.1:41080/ready", "http://127.0.0.1:41081/ready"]
    assert seq.index(("deploy", "")) < seq.index(("deploy", "datastore"))  # the Secret first
    assert sorted(reporter.started_names) == sorted(
        [
            "images:go-stand-ins",
            "deploy:shared",
            "cluster",
            "go:services",
            "build:datastore",
            "build:gateway",
            "load",
            "deploy:datastore",
            "deploy:gateway",
            "ready:datastore",
            "ready:gateway",
        ]
    )


def test_run_main_computes_the_tag_once_per_run(
    stack_cfg: Config,
    tmp_path: Path,
    tag_spy: list[dict[str, Any]],
    http_waits: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real run entry point: plan -> render -> bring_up -> state, with fakes at the edges."""
    from infra import state
    from infra.run import run as run_mod

    platforms: list[FakePlatform] = []

    def fake_make_platform(name: str, ctx: Context) -> FakePlatform:
        platforms.append(FakePlatform(ctx, name))
        return platforms[-1]

    monkeypatch.setattr(run_mod, "make_platform", fake_make_platform)
    preflights: list[str] = []
    monkeypatch.setattr(run_mod.doctor, "preflight", lambda *a: preflights.append(a[-1]))
    runner = RecordingRunner(responders=[go_build_writes_binaries])
    runner.on(["go", "env", "GOVERSION"], stdout="go1.22.5\n")
    runner.on(["podman", "image", "exists"], returncode=1)
    run = run_mod.Run(stack_cfg, run_mod.Options(platform="kind", then="keep", root=tmp_path))
    run.runner, run.podman = RealGoList(runner), Podman(runner)  # type: ignore[assignment]
    run.paths.artifacts.mkdir(parents=True)  # execute() makes it (run.log) before _main()
    assert run._main() == run_mod.EXIT_OK

    assert preflights == ["kind"]  # the first phase of every run
    assert len(tag_spy) == 3  # datastore, gateway, the waitfor stand-in
    refs = {c["main"].lstrip("./"): c["tag"] for c in tag_spy if c["main"] != "./waitfor"}
    want = {n: f"localhost/e2e-harness/{n}:{t}" for n, t in refs.items()}
    saved = state.load(run.paths.state_file)
    assert saved.data["images"] == want
    tags = sorted(built_refs(runner.argvs()))
    (kept,) = (str(images.stand_in_cache(r, d)) for r, d in run.stack.plan.stand_ins.items())
    assert tags == sorted([*want.values(), kept])
    deployed = {c[1]: c[2] for c in platforms[0].of("deploy") if c[1]}
    for name, docs in deployed.items():
        imgs = {
            c["image"]
            for d in docs
            if d["kind"] in ("Deployment", "StatefulSet", "Job")
            for c in d["spec"]["template"]["spec"]["containers"]
        }
        assert imgs == {want[name]}


def test_podman_platform_has_no_load_phase(stack_cfg: Config, tmp_path: Path) -> None:
    runner = RecordingRunner(responders=[go_build_writes_binaries])
    st, _ = make_stack(stack_cfg, tmp_path, runner, coverage=False, platform="podman")
    phases = {p.name: p.needs for p in setup_phases(st, runner=runner, podman=Podman(runner))}
    assert "load" not in phases
    assert "images:third-party" not in phases  # the one third-party image has a stand-in
    # one go build at a time, the services' first; then the builds of the services that deploy without
    # the stand-in (the datastore's), which would share the cores with it
    assert phases["images:go-stand-ins"] == ("go:services", "build:datastore")
    assert phases["cluster"] == ()
    assert phases["go:services"] == ()
    assert phases["build:gateway"] == ("go:services",)
    # the gateway's init container runs the stand-in; the datastore does not wait for it
    assert phases["deploy:gateway"] == (
        "cluster", "build:gateway", "images:go-stand-ins", "deploy:shared", "ready:datastore",
    )  # fmt: skip
    assert phases["deploy:datastore"] == ("cluster", "build:datastore", "deploy:shared")
    assert phases["ready:gateway"] == ("deploy:gateway",)


def test_the_shared_workloads_are_waited_for_beside_the_services(
    repo_cfg: Config, tmp_path: Path, http_waits: list[str]
) -> None:
    """PostgreSQL and Redis (no service's) start with the shared objects; their readiness is a phase no
    deploy waits for (the migration Job waits for its database itself), asked by their own names."""
    runner = RecordingRunner(responders=[go_build_writes_binaries])
    runner.on(["podman", "image", "exists"], returncode=1)
    st, plat = make_stack(repo_cfg, tmp_path, runner, coverage=False, platform="podman")
    phases = {p.name: p.needs for p in setup_phases(st, runner=runner, podman=Podman(runner))}
    assert phases["ready:shared"] == ("deploy:shared",)
    assert not [name for name, needs in phases.items() if "ready:shared" in needs]
    bring_up(
        st, runner=runner, podman=Podman(runner), timeline=Timeline(), reporter=Reporter(), parallel=True
    )
    waited = [c[1] for c in plat.calls if c[0] == "wait"]
    assert sorted(waited) == ["datastore", "gateway", "postgres", "redis"]
    deployed = {c[1]: [manifests.ident(d) for d in c[2]] for c in plat.of("deploy")}
    assert {"StatefulSet/postgres", "Deployment/redis", "Secret/postgres-credentials"} <= set(deployed[""])


def test_the_stand_ins_wait_for_no_build_when_a_shared_object_runs_one(
    stack_cfg: Config, tmp_path: Path
) -> None:
    """Every deploy waits for the shared objects: a stand-in they run is as urgent as any build."""
    runner = RecordingRunner(responders=[go_build_writes_binaries])
    st, _ = make_stack(stack_cfg, tmp_path, runner, coverage=False, platform="podman")
    gateway = st.rendered.by_service["gateway"]  # its Deployment's init container runs the stand-in
    ctx = st.platform.ctx
    ctx.rendered = dataclasses.replace(ctx.rendered, shared=[*ctx.rendered.shared, *gateway])
    phases = {p.name: p.needs for p in setup_phases(st, runner=runner, podman=Podman(runner))}
    assert phases["images:go-stand-ins"] == ("go:services",)
    assert "images:go-stand-ins" in phases["deploy:shared"]


@pytest.mark.parametrize("cores", [2, 4])
def test_a_database_from_a_containerfile_starts_while_the_services_compile(
    repo_cfg: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cores: int
) -> None:
    """The example's PostgreSQL and Redis stand-ins need no Go: built beside the go build (given the
    cores), deployed as soon as the cluster is up; the Go stand-in (the gateway's init container)
    waits its turn."""
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    runner = RecordingRunner(responders=[go_build_writes_binaries])
    st, _ = make_stack(repo_cfg, tmp_path, runner, coverage=False, platform="podman")
    phases = {p.name: p.needs for p in setup_phases(st, runner=runner, podman=Podman(runner))}
    beside = cores >= 3
    assert ("go:services" not in phases["images:stand-ins"]) == beside, phases["images:stand-ins"]
    assert "go:services" in phases["images:go-stand-ins"]
    assert phases["deploy:shared"] == ("cluster", "images:stand-ins"), phases["deploy:shared"]
    assert "images:go-stand-ins" in phases["deploy:gateway"]
    assert "images:go-stand-ins" not in phases["deploy:datastore"]


def test_a_pulled_third_party_image_is_checked_before_the_cluster(stack_cfg: Config, tmp_path: Path) -> None:
    """Absent, it fails the run before any cluster work; its users wait for it through the cluster."""
    cfg = stack_cfg.model_copy(update={"images": stack_cfg.images.model_copy(update={"stand_in": ()})})
    runner = RecordingRunner(responders=[go_build_writes_binaries])
    for platform in ("podman", "kind"):
        st, _ = make_stack(cfg, tmp_path / platform, runner, coverage=False, platform=platform)
        phases = {p.name: p.needs for p in setup_phases(st, runner=runner, podman=Podman(runner))}
        assert "images:go-stand-ins" not in phases and "images:stand-ins" not in phases
        assert phases["images:third-party"] == ()
        assert phases["cluster"] == ("images:third-party",), platform
        assert "images:third-party" in phases["deploy:gateway"], platform


def test_kind_deploy_needs_the_load(stack_cfg: Config, tmp_path: Path) -> None:
    runner = RecordingRunner(responders=[go_build_writes_binaries])
    st, _ = make_stack(stack_cfg, tmp_path, runner, coverage=False)
    phases = {p.name: p.needs for p in setup_phases(st, runner=runner, podman=Podman(runner))}
    assert phases["load"] == ("cluster", "build:datastore", "build:gateway", "images:go-stand-ins")
    assert phases["images:go-stand-ins"] == ("go:services",)  # the load waits for every build: no order helps
    assert phases["deploy:datastore"] == ("cluster", "build:datastore", "load", "deploy:shared")


def test_an_existing_image_is_not_rebuilt(stack_cfg: Config, tmp_path: Path, http_waits: list[str]) -> None:
    runner = RecordingRunner(responders=[go_build_writes_binaries])  # `podman image exists` succeeds
    st, _ = make_stack(stack_cfg, tmp_path, runner, coverage=False)
    (digest,) = st.plan.stand_ins.values()  # the stand-in's label says its inputs are unchanged
    runner.on(["podman", "image", "inspect", "--format"], stdout=digest + "\n")
    bring_up(
        st, runner=runner, podman=Podman(runner), timeline=Timeline(), reporter=Reporter(), parallel=True
    )
    assert st.built == {"datastore": False, "gateway": False}
    assert not [a for a in runner.argvs() if a[:2] == ("go", "build")] and not built_refs(runner.argvs())


def test_a_failed_build_stops_the_dependents(
    stack_cfg: Config, tmp_path: Path, http_waits: list[str]
) -> None:
    runner = RecordingRunner(responders=[go_build_writes_binaries])
    runner.on(["podman", "image", "exists"], returncode=1)
    runner.on(["go", "build"], returncode=2, stdout="compile error")
    st, plat = make_stack(stack_cfg, tmp_path, runner, coverage=False)
    (digest,) = st.plan.stand_ins.values()
    runner.responders.insert(
        0,
        lambda a: (
            Result(a, 0, digest, "", 0)
            if a[:3] == ("podman", "image", "exists") and "registry.example.com" in a[3]
            else None
        ),
    )  # the stand-in is up to date
    runner.on(["podman", "image", "inspect", "--format"], stdout=digest)
    timeline = Timeline()
    with pytest.raises(PhaseFailed) as info:
        bring_up(
            st, runner=runner, podman=Podman(runner), timeline=timeline, reporter=Reporter(), parallel=False
        )
    assert info.value.phase == "go:services"
    assert plat.of("deploy") == [] and plat.of("load") == []
    status = {t.name: t.status for t in timeline.timings}
    assert status["deploy:datastore"] == status["ready:gateway"] == "skipped"


def test_coverage_with_a_reused_kind_cluster_is_refused(
    repo_cfg: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A reused cluster's /coverdata mount belongs to another run: say so, touch nothing."""
    from infra.run import run as run_mod

    opts = run_mod.Options(platform="kind", reuse="team-x", coverage=True, root=tmp_path)
    run = run_mod.Run(repo_cfg, opts)
    run.runner = RecordingRunner(responders=[go_build_writes_binaries])
    assert run.execute() == run_mod.EXIT_USAGE
    assert "--coverage with --reuse is not supported on kind" in capsys.readouterr().out
    assert [c.argv for c in run.runner.calls] == []  # type: ignore[attr-defined]
