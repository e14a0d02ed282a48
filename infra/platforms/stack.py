"""A run's stack: its context, its platform, and the setup DAG that brings it up."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra import config as config_mod
from infra import waits
from infra.builds import build, third_party
from infra.builds.build import ImagePlan
from infra.config import Config
from infra.console import say
from infra.images import ImageRef
from infra.paths import RunPaths, build_dir, state_dir
from infra.phases import Phase, Reporter, Timeline, run_phases
from infra.platforms.manifests import Doc, Rendered
from infra.platforms.platform import Context, Platform
from infra.podman_cli import Podman, podman_env
from infra.proc import Runner, SubprocessRunner
from infra.state import NoState, RunState

BESIDE_GO_MIN_CORES = 3  # fewer: a Containerfile stand-in builds after the go builds

log = logging.getLogger("infra.stack")


def make_podman(config: Config, runner: Runner, root: Path) -> Podman:
    return Podman(runner, podman_env(state_dir(root)), timeout=config.timeouts.command)


def platform_class(name: str) -> Any:
    """Imported on demand: the podman path never loads the kubernetes client."""
    if name == "podman":
        from infra.platforms.platform_podman import PodmanPlatform

        return PodmanPlatform
    if name == "cluster":
        from infra.platforms.platform_cluster import ClusterPlatform

        return ClusterPlatform
    from infra.platforms.platform_kind import KindPlatform

    return KindPlatform


def make_platform(name: str, ctx: Context) -> Platform:
    platform: Platform = platform_class(name)(ctx)
    return platform


@dataclass
class Stack:
    """Everything one run set up, in the order it was set up."""

    config: Config
    paths: RunPaths
    platform: Platform
    plan: ImagePlan
    built: dict[str, bool] = field(default_factory=dict)

    @property
    def rendered(self) -> Rendered:
        return self.platform.ctx.rendered

    def endpoints(self) -> dict[str, str]:
        return {s.name: self.platform.ctx.endpoint(s.name) for s in self.config.services if s.node_port}

    def state(self, setup: str = "done") -> dict[str, Any]:
        """setup: done | failed | under way. Under way, deploys still change the platform's own
        state: it is left out (what the suite may read while it collects is all here)."""
        ctx = self.platform.ctx
        own = self.platform.state() if setup != "under way" else {}
        return {
            "setup": setup,
            "run_id": self.paths.run_id,
            "platform": self.platform.name,
            "root": str(self.paths.root),
            "config": str(self.config.source_file),
            "endpoints": self.endpoints(),
            "images": {k: str(v) for k, v in self.plan.refs.items()},
            "coverage": ctx.coverage,
            "host_ports": {str(k): v for k, v in ctx.host_ports.items()},
            # for people and tools reading the file; the platform's own state is below
            "kubeconfig": own.get("kubeconfig"),
            "namespace": own.get("namespace"),
            "artifacts": str(self.paths.artifacts),
            **({"platform_state": own} if setup != "under way" else {}),
        }


def setup_phases(
    stack: Stack,
    *,
    runner: Runner,
    podman: Podman,
    force_build: bool = False,
    preflight: Callable[[], object] | None = None,
    images_ready: Callable[[], object] | None = None,
) -> list[Phase]:
    """preflight first; cluster and builds start together; deploy X waits for its image and deps.

    images_ready: runs once every image is there (the suite's pytest starts then, beside the deploys).
    """
    cfg, plat, plan = stack.config, stack.platform, stack.plan
    step = plat.images_step  # load (kind), push (cluster): every image before any deploy
    to_nodes = [step] if step else []
    first: tuple[str, ...] = ("preflight",) if preflight else ()

    build_root = build_dir(stack.paths.root).resolve()
    binaries: dict[str, Path] = {}  # service -> its image's files, staged after its module's one go build
    batch_of = {name: f"go:{b.name}" for b in build.go_batches(cfg) for name in b.services}
    bases = third_party.containerfile_bases(cfg)  # a Containerfile's FROM: there before its build

    def compiler(batch: build.GoBatch) -> Phase:
        def run() -> None:
            binaries.update(
                build.compile_batch(
                    cfg, plan, batch, runner=runner, podman=podman, build_root=build_root, force=force_build
                )
            )

        return Phase(f"go:{batch.name}", run, first)

    def builder(name: str) -> Phase:
        def run() -> None:
            outcome = build.build_image(
                cfg, plan, name, podman=podman, build_root=build_root,
                rootfs=binaries.get(name), force=force_build,
            )  # fmt: skip
            stack.built[name] = outcome.built

        if name in batch_of:
            return Phase(f"build:{name}", run, (batch_of[name],))
        from_bases = cfg.service(name).containerfile is not None and bool(bases)
        return Phase(f"build:{name}", run, ("images:third-party",) if from_bases else first)

    phases = [Phase("preflight", preflight)] if preflight else []
    foreign = stack.rendered.foreign
    # a stand-in is a build like the services' (beside them, waited for by its users only); any
    # other third-party image is checked or pulled before the cluster: absent, it fails in seconds
    built_here = {ref: who for ref, who in foreign.items() if third_party.stand_in_for(cfg, ref)}
    pulled = {
        ref: list(who) for ref, who in foreign.items() if ref not in built_here and plat.brings_third_party
    }
    for ref, who in bases.items():
        pulled.setdefault(ref, []).extend(who)
    go_builds = tuple(f"go:{b.name}" for b in build.go_batches(cfg))

    def uses(docs: list[Doc], refs: Iterable[ImageRef]) -> bool:
        used = Rendered(docs).image_refs()
        return any(str(ref) in used for ref in refs)

    # name -> (its images, what it waits for). A stand-in from a Containerfile needs no Go: it is
    # built beside the go builds (FROM a base images:third-party brings or makes), so that a database
    # the services need starts while they compile. A Go stand-in comes after the services' go build
    # (one go build at a time) and, on podman, after the image builds of the services deployed
    # without it: beside those on 2 cores, it delayed the first deploys by 0.3 s (kind loads all
    # images before any deploy: there the builds only compete)
    from_file = {
        r: w for r, w in built_here.items() if (s := third_party.stand_in_for(cfg, r)) and s.containerfile
    }
    with_go = {ref: who for ref, who in built_here.items() if ref not in from_file}
    docs_of = {s.name: stack.rendered.by_service.get(s.name, []) for s in cfg.services}
    builds_first = (
        ()
        if step or uses(stack.rendered.shared, with_go)
        else tuple(f"build:{name}" for name, docs in docs_of.items() if not uses(docs, with_go))
    )
    bases_first = ("images:third-party",) if any(w.startswith("FROM in ") and "(stand-in for" in w
                                                  for who in bases.values() for w in who) else ()  # fmt: skip
    # on 2 cores a Containerfile build beside the go builds slowed a true-cold setup by 5 s (43-45 s
    # against 38.7 s): there it waits for them as the Go stand-ins do
    beside_go = () if (os.cpu_count() or 1) >= BESIDE_GO_MIN_CORES else go_builds
    images = {
        "images:third-party": (pulled, first),
        "images:stand-ins": (from_file, (*first, *bases_first, *beside_go)),
        "images:go-stand-ins": (with_go, (*first, *go_builds, *builds_first)),
    }
    groups = {name: refs for name, (refs, _) in images.items() if refs}

    def images_phase(name: str, refs: dict[ImageRef, list[str]], needs: tuple[str, ...]) -> Phase:
        def run() -> None:
            outcomes = third_party.ensure(
                cfg, refs, podman=podman, runner=runner, build_root=build_root, stand_ins=plan.stand_ins,
                force=force_build,
            )  # fmt: skip
            for outcome in outcomes:
                say(outcome.line())

        return Phase(name, run, needs)

    def foreign_needs(docs: list[Doc]) -> list[str]:
        """The images phases whose images these documents run."""
        return [name for name, refs in groups.items() if uses(docs, refs)]

    phases += [images_phase(name, refs, needs) for name, (refs, needs) in images.items() if refs]
    cluster_needs = ("images:third-party",) if "images:third-party" in groups else first
    phases += [Phase("cluster", plat.create, cluster_needs), *map(compiler, build.go_batches(cfg))]
    phases += [builder(s.name) for s in cfg.services]
    if step:
        phases.append(
            Phase(
                step,
                lambda: plat.load_images([*plan.all(), *sorted(foreign)]),
                ("cluster", *[f"build:{s.name}" for s in cfg.services], *groups),
            )
        )
    if stack.rendered.shared:

        def deploy_shared() -> None:
            plat.verify_images(Rendered(stack.rendered.shared))
            plat.deploy("", stack.rendered.shared)

        shared_needs = ["cluster", *to_nodes, *foreign_needs(stack.rendered.shared)]
        phases.append(Phase("deploy:shared", deploy_shared, tuple(shared_needs)))

        def ready_shared() -> None:  # the services start beside them: a migration Job waits itself
            names = stack.rendered.shared_workloads()
            with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="ready-shared") as pool:
                try:
                    waits.map_all(pool, plat.wait_ready, names)
                except BaseException:  # this phase fails: the other waits end now, not at their deadline
                    waits.ABANDON.set()
                    raise

        if stack.rendered.shared_workloads():
            phases.append(Phase("ready:shared", ready_shared, ("deploy:shared",)))

    def deployer(name: str) -> Phase:
        docs = docs_of[name]

        def run() -> None:
            plat.verify_images(Rendered(docs))
            plat.deploy(name, docs)

        needs = ["cluster", f"build:{name}", *to_nodes, *foreign_needs(docs)]
        needs += ["deploy:shared"] if stack.rendered.shared else []
        needs += [f"ready:{dep}" for dep in cfg.service(name).depends_on]
        return Phase(f"deploy:{name}", run, tuple(needs))

    def waiter(name: str) -> Phase:
        def run() -> None:
            plat.wait_ready(name)
            plat.ctx.wait_served(name)

        return Phase(f"ready:{name}", run, (f"deploy:{name}",))

    phases += [deployer(s.name) for s in cfg.services]
    phases += [waiter(s.name) for s in cfg.services]
    if images_ready is not None:  # after the builds: pytest's start-up would slow them on a small machine
        built = (*[f"build:{s.name}" for s in cfg.services], *groups)
        phases.append(Phase("tests:start", images_ready, built))
    return phases


def bring_up(
    stack: Stack,
    *,
    runner: Runner,
    podman: Podman,
    timeline: Timeline,
    reporter: Reporter,
    parallel: bool,
    cancel: threading.Event | None = None,
    force_build: bool = False,
    preflight: Callable[[], object] | None = None,
    images_ready: Callable[[], object] | None = None,
) -> None:
    phases = setup_phases(
        stack,
        runner=runner,
        podman=podman,
        force_build=force_build,
        preflight=preflight,
        images_ready=images_ready,
    )
    run_phases(phases, timeline=timeline, reporter=reporter, parallel=parallel, cancel=cancel)


def platform_from_state(state: RunState, runner: Runner | None = None) -> Platform:
    """Rebuild the platform handle of a running stack (E2E fixtures, `inv down`)."""
    data = state.data
    if "platform_state" not in data:
        raise NoState(
            f"run {data.get('run_id')}: its state was written while its setup was under way, and the run "
            "ended before it finished; next: `nox -s cleanup` removes what it left"
        )
    own = data["platform_state"]
    cfg = config_mod.load(data["config"])
    runner = runner or SubprocessRunner()
    root = Path(data["root"])
    ctx = Context(
        config=cfg,
        paths=RunPaths(root, data["run_id"]),
        runner=runner,
        podman=make_podman(cfg, runner, root),
        coverage=bool(data.get("coverage")),
        coverage_via=platform_class(data["platform"]).coverage_via,
        host_ports={int(k): int(v) for k, v in data.get("host_ports", {}).items()},
        cluster=own.get("cluster", ""),
        reuse=bool(own.get("reuse")),
    )
    platform: Platform = platform_class(data["platform"]).from_state(ctx, own)
    return platform
