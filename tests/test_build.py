"""infra.builds.build: exact argv of go build, podman build and podman save."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from infra.builds import build
from infra.builds.build import (
    BuildOutcome,
    ImagePlan,
    build_services,
    go_build_argv,
    plan_images,
    save_images,
)
from infra.config import Config
from infra.config import parse as parse_config
from infra.images import ImageRef, content_tag
from infra.podman_cli import Podman
from infra.proc import CommandError, RecordingRunner, Responder, SubprocessRunner
from tests.conftest import go_build_writes_binaries

REPO = Path(__file__).resolve().parents[1]
SERVICES = REPO / "services"
LABELS_OFF = ["--label", "io.e2e-harness.coverage=false", "--label", "io.e2e-harness.managed=true"]
LABELS_ON = ["--label", "io.e2e-harness.coverage=true", "--label", "io.e2e-harness.managed=true"]


def missing_images_runner() -> RecordingRunner:
    runner = RecordingRunner(responders=[go_build_writes_binaries])
    runner.on(["podman", "image", "exists"], returncode=1)
    return runner


def test_plan_images_qualifies_and_tags_from_content(repo_cfg: Config) -> None:
    plan = plan_images(repo_cfg, coverage=False, toolchain="go1.22.5", runner=SubprocessRunner())
    digest = build.input_digests(repo_cfg, SubprocessRunner())["gateway"]
    tag = content_tag(digest, main="./gateway", build_args={}, coverage=False, toolchain="go1.22.5")
    assert plan.ref("gateway") == ImageRef("localhost/e2e-harness/gateway", tag)
    assert plan.ref("datastore").repository == "localhost/e2e-harness/datastore"
    assert [str(r) for r in plan.all()] == [str(plan.ref("datastore")), str(plan.ref("gateway"))]
    cov = plan_images(repo_cfg, coverage=True, toolchain="go1.22.5", runner=SubprocessRunner())
    assert cov.coverage and cov.ref("gateway").tag.startswith("cov-")


def test_go_version_asks_go(repo_cfg: Config) -> None:
    runner = RecordingRunner()
    runner.on(["go", "env", "GOVERSION"], stdout="go1.22.5\n")
    assert build.go_version(runner) == "go1.22.5"
    assert runner.argvs() == [("go", "env", "GOVERSION")]


def test_go_build_argv(repo_cfg: Config, tmp_path: Path) -> None:
    svc = repo_cfg.service("gateway")
    assert go_build_argv([svc.main], tmp_path, coverage=False) == [
        "go",
        "build",
        "-trimpath",
        "-o",
        f"{tmp_path}/",
        "./gateway",
    ]
    assert go_build_argv(["./datastore", "./gateway"], tmp_path, coverage=False) == [
        "go", "build", "-trimpath", "-o", f"{tmp_path}/", "./datastore", "./gateway",
    ]  # fmt: skip
    assert go_build_argv([svc.main], tmp_path, coverage=True) == [
        "go",
        "build",
        "-trimpath",
        "-cover",
        "-covermode=atomic",
        "-coverpkg=./...",
        "-o",
        f"{tmp_path}/",
        "./gateway",
    ]


def build_one(
    cfg: Config, name: str, ref: ImageRef, runner: RecordingRunner, build_root: Path, *,
    coverage: bool = False, podman: Podman | None = None, force: bool = False,
) -> BuildOutcome:  # fmt: skip
    """build_services of a one-service plan: the ref and coverage the plan says."""
    plan = ImagePlan({name: ref}, coverage=coverage)
    return build_services(cfg, plan, [name], runner=runner, podman=podman or Podman(runner),
                          build_root=build_root, force=force)[0]  # fmt: skip


def archive_reader(seen: list[tuple[str, int, int, int, bytes]]) -> Responder:
    """A RecordingRunner responder: reads the tar `podman import` is given, as podman would."""

    def read(argv: tuple[str, ...]) -> None:
        if argv[:2] == ("podman", "import"):
            with tarfile.open(argv[-2]) as tar:
                for m in tar.getmembers():
                    data = tar.extractfile(m)
                    seen.append((m.name, m.mode, m.uid, m.mtime, data.read() if data else b""))
        return None

    return read


@pytest.mark.parametrize("coverage", [False, True])
def test_build_image_runs_go_build_then_podman_import(
    repo_cfg: Config, tmp_path: Path, coverage: bool
) -> None:
    files: list[tuple[str, int, int, int, bytes]] = []
    runner = missing_images_runner()
    runner.responders.insert(0, archive_reader(files))
    podman = Podman(runner, env={"CONTAINERS_CONF": "/x/containers.conf"})
    ref = ImageRef(
        "localhost/e2e-harness/gateway", "cov-0123456789abcdef" if coverage else "0123456789abcdef"
    )
    root = tmp_path / "build"
    outcome = build_one(repo_cfg, "gateway", ref, runner, root, coverage=coverage, podman=podman)
    assert outcome == BuildOutcome("gateway", ref, built=True)
    # a coverage build asks where the module's go.work is (`go env GOWORK`): for its copy
    calls = [c for c in runner.calls if c.argv[:3] != ("go", "env", "GOWORK")]
    assert len(calls) == len(runner.calls) - (1 if coverage else 0)
    # fresh dirs per build (concurrent runs may build the same tag): the module's, then the image's
    go_out = Path(calls[1].argv[calls[1].argv.index("-o") + 1])
    assert go_out.parent == root and go_out.name.startswith("go-services-")  # `-o dir/`
    archive = Path(calls[2].argv[-2])
    assert archive.parent == root and archive.name.startswith(f"gateway-{ref.tag}-")
    cover = ["-cover", "-covermode=atomic", "-coverpkg=./..."] if coverage else []
    assert [c.argv for c in calls] == [
        ("podman", "image", "exists", str(ref)),
        ("go", "build", "-trimpath", *cover, "-o", f"{go_out}/", "./gateway"),
        (
            "podman", "import", "--quiet", "--change", 'ENTRYPOINT ["/app"]',
            "--change", f'LABEL io.e2e-harness.coverage="{str(coverage).lower()}"',
            "--change", 'LABEL io.e2e-harness.managed="true"',
            "--change", 'LABEL io.e2e-harness.service="gateway"',
            str(archive), str(ref),
        ),
    ]  # fmt: skip
    # the binary alone, root's, executable, dated 0: the same binary gives the same layer
    assert files == [("app", 0o755, 0, 0, b"\x7fELF")]
    go = calls[1]
    if coverage:  # a copy of the module with the coverage flush file added, removed afterwards
        copy = Path(go.cwd)
        assert copy.name == "src" and copy.parent.parent == root and not copy.exists()
    else:
        assert go.cwd == str(SERVICES)
    assert go.env["CGO_ENABLED"] == "0"
    assert go.env == {"CGO_ENABLED": "0", "GOOS": "linux"}
    assert go.timeout == repo_cfg.timeouts.build
    assert calls[2].env == {"CONTAINERS_CONF": "/x/containers.conf"}
    assert calls[2].timeout == repo_cfg.timeouts.build
    assert not archive.exists() and not go_out.exists()  # both are temporary
    assert list(root.iterdir()) == []


def test_build_is_skipped_when_the_image_exists(repo_cfg: Config, tmp_path: Path) -> None:
    runner = RecordingRunner()  # `podman image exists` answers 0
    ref = ImageRef("localhost/e2e-harness/datastore", "abc")
    outcome = build_one(repo_cfg, "datastore", ref, runner, tmp_path)
    assert outcome.built is False
    assert runner.argvs() == [("podman", "image", "exists", "localhost/e2e-harness/datastore:abc")]


def test_force_builds_without_asking(repo_cfg: Config, tmp_path: Path) -> None:
    runner = RecordingRunner(responders=[go_build_writes_binaries])
    ref = ImageRef("localhost/e2e-harness/datastore", "abc")
    build_one(repo_cfg, "datastore", ref, runner, tmp_path, force=True)
    assert [a[:2] for a in runner.argvs()] == [("go", "build"), ("podman", "import")]


def test_failed_go_build_names_the_service_and_builds_no_image(repo_cfg: Config, tmp_path: Path) -> None:
    runner = missing_images_runner()
    runner.on(["go", "build"], stdout="main.go:3: syntax error", returncode=1)
    ref = ImageRef("localhost/e2e-harness/gateway", "abc")
    with pytest.raises(CommandError) as info:
        build_one(repo_cfg, "gateway", ref, runner, tmp_path / "b")
    assert "fix the Go build of service 'gateway'" in str(info.value)
    assert "syntax error" in str(info.value)
    assert not any(a[:2] == ("podman", "import") for a in runner.argvs())
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").glob("gateway-abc*"))


def containerfile_config(tmp_path: Path, build_args: dict[str, str]) -> Config:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.go").write_text("package main\nfunc main() {}\n")
    (tmp_path / "src" / "Containerfile").write_text("FROM golang AS b\n")
    data = {
        "manifests": ["m.yaml"],
        "services": [
            {
                "name": "api",
                "source": "src",
                "image": "team/api",
                "containerfile": "src/Containerfile",
                "build_args": build_args,
            }
        ],
    }
    return parse_config(data, tmp_path / "e2e.toml")


@pytest.mark.parametrize(
    ("coverage", "build_args", "expected"),
    [
        (
            True,
            {"VERSION": "1"},
            ["--build-arg", "GOFLAGS=-cover -covermode=atomic -coverpkg=./...", "--build-arg", "VERSION=1"],
        ),
        (False, {"VERSION": "1"}, ["--build-arg", "VERSION=1"]),
        (
            True,
            {"GOFLAGS": "-mod=vendor"},
            ["--build-arg", "GOFLAGS=-mod=vendor -cover -covermode=atomic -coverpkg=./..."],
        ),
    ],
)
def test_containerfile_service_is_built_by_podman_with_cover_goflags(
    tmp_path: Path, coverage: bool, build_args: dict[str, str], expected: list[str]
) -> None:
    cfg = containerfile_config(tmp_path, build_args)
    runner = missing_images_runner()
    ref = ImageRef("localhost/team/api", "t1")
    outcome = build_one(cfg, "api", ref, runner, tmp_path / "b", coverage=coverage)
    assert outcome.built
    src = tmp_path.resolve() / "src"
    labels = LABELS_ON if coverage else LABELS_OFF
    assert runner.argvs() == [
        ("podman", "image", "exists", "localhost/team/api:t1"),
        (
            "podman",
            "build",
            "--file",
            str(src / "Containerfile"),
            "--tag",
            "localhost/team/api:t1",
            *expected,
            *labels,
            "--label",
            "io.e2e-harness.service=api",
            str(src),
        ),
    ]


def test_save_images_one_archive_with_m_for_several_refs(tmp_path: Path) -> None:
    runner = RecordingRunner()
    archive = tmp_path / "archives" / "run.tar"
    refs = [ImageRef.parse("e2e-harness/datastore:t1"), ImageRef.parse("localhost/e2e-harness/gateway:t2")]
    assert save_images(Podman(runner), refs, archive, timeout=77) == archive
    assert archive.parent.is_dir()
    assert runner.argvs() == [
        (
            "podman",
            "save",
            "--format",
            "docker-archive",
            "-m",
            "-o",
            str(archive),
            "localhost/e2e-harness/datastore:t1",
            "localhost/e2e-harness/gateway:t2",
        ),
    ]
    assert runner.calls[0].timeout == 77


def test_save_images_one_ref_has_no_m_and_replaces_an_old_archive(tmp_path: Path) -> None:
    runner = RecordingRunner()
    archive = tmp_path / "run.tar"
    archive.write_text("stale")
    save_images(Podman(runner), [ImageRef.parse("team/api:1")], archive, timeout=5)
    assert not archive.exists()  # the stale archive was removed before the save
    assert runner.argvs() == [
        ("podman", "save", "--format", "docker-archive", "-o", str(archive), "localhost/team/api:1"),
    ]


def test_image_plan_lookup() -> None:
    plan = ImagePlan({"b": ImageRef.parse("x/b:1"), "a": ImageRef.parse("x/a:1")}, coverage=False)
    assert [str(r) for r in plan.all()] == ["localhost/x/a:1", "localhost/x/b:1"]
    with pytest.raises(KeyError):
        plan.ref("c")


# -- one go build per module -------------------------------------------------------------------


def test_services_are_grouped_by_module_and_containerfile_builds_stay_apart(tmp_path: Path) -> None:
    for mod in ("api", "tools"):
        (tmp_path / mod).mkdir()
        (tmp_path / mod / "go.mod").write_text(f"module example.com/{mod}\n\ngo 1.22\n")
    (tmp_path / "tools" / "Containerfile").write_text("FROM scratch\n")
    svc = {"image": "localhost/t/x", "main": "."}
    data = {
        "manifests": ["m.yaml"],
        "services": [
            {**svc, "name": "a", "source": "api", "main": "./cmd/a", "image": "localhost/t/a"},
            {**svc, "name": "b", "source": "api", "main": "./cmd/b", "image": "localhost/t/b"},
            {**svc, "name": "c", "source": "tools", "image": "localhost/t/c"},
            {
                **svc,
                "name": "d",
                "source": "tools",
                "image": "localhost/t/d",
                "containerfile": "tools/Containerfile",
            },
        ],
    }
    cfg = parse_config(data, tmp_path / "e2e.toml")
    batches = build.go_batches(cfg)
    assert [(b.name, b.source, b.services) for b in batches] == [
        ("api", tmp_path / "api", ("a", "b")),
        ("tools", tmp_path / "tools", ("c",)),
    ]


@pytest.mark.parametrize(
    ("module", "main", "binary"),
    [
        ("example.com/e2e-services", "./gateway", "gateway"),
        ("example.com/svc", ".", "svc"),
        ("example.com/svc/v2", ".", "svc"),
        ("example.com/mono", "./cmd/api/", "api"),
    ],
)
def test_binary_names_follow_go_build(module: str, main: str, binary: str) -> None:
    assert build.binary_name(module, main) == binary


def test_an_empty_cache_builds_every_main_of_a_module_in_one_go_invocation(
    repo_cfg: Config, tmp_path: Path
) -> None:
    runner = missing_images_runner()
    plan = plan_images(repo_cfg, coverage=True, toolchain="go1.22.5", runner=SubprocessRunner())
    (batch,) = build.go_batches(repo_cfg)
    binaries = build.compile_batch(repo_cfg, plan, batch, runner=runner, podman=Podman(runner),
                                   build_root=tmp_path)  # fmt: skip
    go = [a for a in runner.argvs() if a[:2] == ("go", "build")]
    assert len(go) == 1
    assert go[0][-2:] == ("./datastore", "./gateway") and "-cover" in go[0]
    # each service's image tree, staged: its binary at /app, the go build's own output gone
    assert sorted(binaries) == ["datastore", "gateway"]
    assert all(sorted(p.name for p in tree.rglob("*")) == ["app"] for tree in binaries.values())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("go-")] == []


def test_a_change_in_one_service_rebuilds_only_it(repo_cfg: Config, tmp_path: Path) -> None:
    plan = plan_images(repo_cfg, coverage=False, toolchain="go1.22.5", runner=SubprocessRunner())
    runner = RecordingRunner(responders=[go_build_writes_binaries])
    runner.on(["podman", "image", "exists", str(plan.ref("gateway"))], returncode=1)  # datastore exists
    (batch,) = build.go_batches(repo_cfg)
    binaries = build.compile_batch(repo_cfg, plan, batch, runner=runner, podman=Podman(runner),
                                   build_root=tmp_path)  # fmt: skip
    assert list(binaries) == ["gateway"]
    (go,) = [a for a in runner.argvs() if a[0] == "go"]
    assert go[:4] == ("go", "build", "-trimpath", "-o") and go[5:] == ("./gateway",), go


def test_modules_in_directories_of_the_same_name_get_distinct_phases(tmp_path: Path) -> None:
    for mod in ("a/services", "b/services"):
        (tmp_path / mod).mkdir(parents=True)
        (tmp_path / mod / "go.mod").write_text("module example.com/services\n\ngo 1.22\n")
    data = {
        "manifests": ["m.yaml"],
        "services": [
            {"name": "x", "source": "a/services", "image": "localhost/t/x"},
            {"name": "y", "source": "b/services", "image": "localhost/t/y"},
        ],
    }
    batches = build.go_batches(parse_config(data, tmp_path / "e2e.toml"))
    assert [b.name for b in batches] == ["services", "services#2"]
