"""infra.builds.image_tasks: the image pipeline by hand (kind load argv, archive RepoTags)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from infra.builds import image_tasks
from infra.builds.build import ImagePlan
from infra.config import Config
from infra.images import ImageRef
from infra.kind_cli import load_archive_args
from infra.names import InvalidName
from infra.podman_cli import Podman
from infra.proc import CommandError, RecordingRunner, Result
from tests.conftest import RealGoList, built_refs, go_build_writes_binaries


def write_archive(path: Path, repo_tags: list[list[str] | None]) -> Path:
    manifest = [{"Config": f"{i}.json", "RepoTags": tags, "Layers": []} for i, tags in enumerate(repo_tags)]
    data = json.dumps(manifest).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def test_kind_load_args() -> None:
    args = load_archive_args(Path("/a/images.tar"), "e2eh-x")
    assert args == ["load", "image-archive", "/a/images.tar", "--name", "e2eh-x"]


def test_kind_load_args_reject_a_bad_cluster_name() -> None:
    with pytest.raises(InvalidName, match="invalid cluster name 'Bad Name'"):
        load_archive_args(Path("/a.tar"), "Bad Name")


def test_archive_repotags_reads_every_entry(tmp_path: Path) -> None:
    archive = write_archive(
        tmp_path / "a.tar", [["localhost/team/a:1"], ["localhost/team/b:2", "localhost/team/b:x"], None]
    )
    assert image_tasks.archive_repotags(archive) == [
        "localhost/team/a:1",
        "localhost/team/b:2",
        "localhost/team/b:x",
    ]


def test_load_runs_kind_with_the_provider_and_podmans_conf(tmp_path: Path) -> None:
    runner = RecordingRunner(responders=[go_build_writes_binaries])
    podman = Podman(runner, env={"CONTAINERS_CONF": "/c.conf"})
    image_tasks.load(runner, podman, tmp_path / "a.tar", "e2eh-x", "podman", timeout=33)
    assert runner.argvs() == [("kind", "load", "image-archive", str(tmp_path / "a.tar"), "--name", "e2eh-x")]
    assert runner.calls[0].env == {"CONTAINERS_CONF": "/c.conf", "KIND_EXPERIMENTAL_PROVIDER": "podman"}
    assert runner.calls[0].timeout == 33


def test_load_failure_hints_at_the_cluster(tmp_path: Path) -> None:
    runner = RecordingRunner(responders=[go_build_writes_binaries])
    runner.on(["kind", "load"], returncode=1, stdout="ERROR: no nodes found for cluster")
    with pytest.raises(CommandError, match=r"is kind cluster 'e2eh-x' running\? `kind get clusters`"):
        image_tasks.load(runner, Podman(runner), tmp_path / "a.tar", "e2eh-x", "podman", timeout=1)


def test_save_reports_the_archives_repotags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runner = RecordingRunner(responders=[go_build_writes_binaries])

    def podman_save(argv: tuple[str, ...]) -> Result | None:
        if argv[:2] == ("podman", "save"):
            refs = list(argv[argv.index("-o") + 2 :])
            write_archive(Path(argv[argv.index("-o") + 1]), [[r] for r in refs])
        return None

    runner.responders.append(podman_save)
    plan = ImagePlan({"a": ImageRef.parse("team/a:1"), "b": ImageRef.parse("team/b:2")}, coverage=False)
    archive = tmp_path / "out" / "images.tar"
    image_tasks.save(Podman(runner), plan, ["a", "b"], archive, timeout=10)
    # the save argv itself is build.save_images' (tests/test_build.py); here: what it reports
    assert [a[:2] for a in runner.argvs()] == [("podman", "save")]
    out = capsys.readouterr().out
    assert "RepoTags ['localhost/team/a:1', 'localhost/team/b:2']" in out


def test_build_all_plans_once_and_builds_each_service(repo_cfg: Config, tmp_path: Path) -> None:
    runner = RecordingRunner(responders=[go_build_writes_binaries])
    runner.on(["go", "env", "GOVERSION"], stdout="go1.22.5\n")

    def gateway_missing(argv: tuple[str, ...]) -> Result | None:
        if argv[:3] == ("podman", "image", "exists") and argv[3].startswith("localhost/e2e-harness/gateway:"):
            return Result(argv, 1, "", "", 0.0)
        return None

    runner.responders.append(gateway_missing)
    plan, outcomes = image_tasks.build_all(
        repo_cfg,
        RealGoList(runner),
        Podman(runner),
        coverage=False,
        root=tmp_path,  # type: ignore[arg-type]
    )
    assert {o.service: o.built for o in outcomes} == {"datastore": False, "gateway": True}
    assert {o.service: o.ref for o in outcomes} == dict(plan.refs)
    assert runner.argvs().count(("go", "env", "GOVERSION")) == 1
    assert built_refs(runner.argvs()) == [str(plan.ref("gateway"))]


def test_build_all_removes_the_images_a_rebuild_untagged(repo_cfg: Config, tmp_path: Path) -> None:
    """`inv images --rebuild` has no teardown: it removes what its new images displaced itself."""
    runner = RecordingRunner(responders=[go_build_writes_binaries])
    runner.on(["podman", "images", "--quiet"], stdout="sha256:aaa\nsha256:bbb\n")
    image_tasks.build_all(repo_cfg, RealGoList(runner), Podman(runner), coverage=False, force=True,
                          root=tmp_path)  # type: ignore[arg-type]  # fmt: skip
    listed = [a for a in runner.argvs() if a[:3] == ("podman", "images", "--quiet")]
    assert (
        len(listed) == 1 and "dangling=true" in listed[0] and "label=io.e2e-harness.managed=true" in listed[0]
    )
    assert runner.argvs()[-1] == ("podman", "rmi", "sha256:aaa", "sha256:bbb")  # after the builds
