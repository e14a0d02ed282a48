"""infra.images: refs keep podman's localhost/ prefix; content tags follow the inputs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.builds import gosources
from infra.builds.build import GO_ENV
from infra.images import ImageRef, content_tag, context_files, files_digest, qualify, same_image_id
from infra.names import InvalidName
from infra.proc import CommandError, SubprocessRunner

# -- ImageRef / qualify -----------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "repository", "tag"),
    [
        ("team/api:1", "localhost/team/api", "1"),
        ("api:v2", "localhost/api", "v2"),
        ("team/api", "localhost/team/api", "latest"),
        ("localhost/team/api:1", "localhost/team/api", "1"),
        ("quay.io/team/api:1.2.3", "quay.io/team/api", "1.2.3"),
        ("docker.io/library/busybox:1.36", "docker.io/library/busybox", "1.36"),
        ("localhost:5000/team/api", "localhost:5000/team/api", "latest"),
        ("registry:5000/api:x_y-z.1", "registry:5000/api", "x_y-z.1"),
    ],
)
def test_parse(ref: str, repository: str, tag: str) -> None:
    parsed = ImageRef.parse(ref)
    assert (parsed.repository, parsed.tag) == (repository, tag)
    assert str(parsed) == f"{repository}:{tag}"


def test_team_api_is_qualified_with_localhost() -> None:
    assert str(ImageRef.parse("team/api:1")) == "localhost/team/api:1"


@pytest.mark.parametrize(
    "ref", ["team/api:1", "localhost/team/api:1", "quay.io/x/y:2", "localhost:5000/a/b:c", "api"]
)
def test_localhost_prefix_survives_every_round_trip(ref: str) -> None:
    once = ImageRef.parse(ref)
    twice = ImageRef.parse(str(once))
    assert twice == once
    assert str(ImageRef.parse(str(twice))) == str(once)
    assert ImageRef(qualify(once.repository), once.tag) == once
    if "." not in ref.split("/")[0] and ":" not in ref.split("/")[0]:
        assert str(once).startswith("localhost/")
        assert not str(once).startswith("localhost/localhost/")


def test_qualify() -> None:
    assert qualify("team/api") == "localhost/team/api"
    assert qualify("localhost/team/api") == "localhost/team/api"
    assert qualify("ghcr.io/team/api") == "ghcr.io/team/api"
    assert qualify(qualify("team/api")) == "localhost/team/api"


def test_refs_order_by_repository() -> None:
    a, b = ImageRef.parse("team/a:1"), ImageRef.parse("team/b:1")
    assert sorted([b, a]) == [a, b]


@pytest.mark.parametrize(
    "bad",
    [
        "Team/api:1",
        "team//api:1",
        "team/api:",
        "team/api:-x",
        "team/a b:1",
        "team/api:" + "x" * 129,
        "/api:1",
        "localhost/:1",
    ],
)
def test_invalid_names_and_tags_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidName):
        ImageRef.parse(bad)


def test_qualify_rejects_invalid_repository() -> None:
    with pytest.raises(InvalidName, match="invalid image name 'Team/API'"):
        qualify("Team/API")


def test_same_image_id_ignores_the_sha256_prefix() -> None:
    assert same_image_id("abc", "sha256:abc")
    assert same_image_id("sha256:abc", "abc")
    assert same_image_id("abc", "abc")
    assert not same_image_id("abc", "sha256:abd")
    assert not same_image_id("", "")
    assert not same_image_id("", "sha256:")
    assert not same_image_id("abc", "")


# -- content_tag --------------------------------------------------------------------


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """Two mains in one module: api imports internal/lib, which embeds static/*.txt; other imports other/."""
    root = tmp_path / "svc"
    files = {
        "go.mod": "module example.com/svc\n\ngo 1.22\n",
        "cmd/api/main.go": 'package main\n\nimport "example.com/svc/internal/lib"\n\nfunc main() {lib.Hi()}',
        "cmd/api/main_test.go": "package main\n",
        "internal/lib/lib.go": (
            'package lib\n\nimport "embed"\n\n//go:embed static/*.txt\nvar static embed.FS\n\n'
            'func Hello() { _, _ = static.ReadFile("static/a.txt") }\n'
        ),
        "internal/lib/static/a.txt": "hello\n",
        "cmd/other/main.go": 'package main\n\nimport "example.com/svc/other"\n\nfunc main() { other.Run() }',
        "other/other.go": "package other\n\nfunc Run() {}\n",
        "README.md": "docs\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def inputs_of(src: Path, main: str = "./cmd/api") -> list[Path]:
    return gosources.inputs(src, [main], runner=SubprocessRunner(), env=GO_ENV, timeout=60)[main]


def tag_of(src: Path, **kw: object) -> str:
    args: dict[str, object] = {"main": "./cmd/api", "build_args": {}, "coverage": False}
    args.update(kw)
    digest = files_digest(src, inputs_of(src, str(args["main"])))
    return content_tag(digest, **args)  # type: ignore[arg-type]


def test_content_tag_is_stable_and_a_valid_tag(src: Path) -> None:
    tag = tag_of(src)
    assert tag == tag_of(src)
    assert re.fullmatch(r"[0-9a-f]{16}", tag)
    assert str(ImageRef.parse(f"team/api:{tag}")) == f"localhost/team/api:{tag}"


def test_inputs_are_what_go_list_says_the_binary_is_made_of(src: Path) -> None:
    rel = [p.relative_to(src).as_posix() for p in inputs_of(src)]
    assert rel == ["cmd/api/main.go", "go.mod", "internal/lib/lib.go", "internal/lib/static/a.txt"]
    assert [p.relative_to(src).as_posix() for p in inputs_of(src, "./cmd/other")] == [
        "cmd/other/main.go", "go.mod", "other/other.go",
    ]  # fmt: skip


def test_an_embedded_file_changes_its_service_tag_and_no_other(src: Path) -> None:
    api, other = tag_of(src), tag_of(src, main="./cmd/other")
    (src / "internal" / "lib" / "static" / "a.txt").write_text("hello, changed\n")
    assert tag_of(src) != api
    assert tag_of(src, main="./cmd/other") == other
    (src / "internal" / "lib" / "static" / "b.txt").write_text(
        "a new embedded file\n"
    )  # the pattern takes it
    assert inputs_of(src)[-1].name == "b.txt"


def test_content_tag_changes_with_an_imported_go_file_and_go_mod_and_go_sum(src: Path) -> None:
    before = tag_of(src)
    (src / "internal" / "lib" / "more.go").write_text("package lib\n\nvar X = 1\n")
    after_new = tag_of(src)
    assert after_new != before
    (src / "go.mod").write_text("module example.com/svc\n\ngo 1.23\n")
    after_mod = tag_of(src)
    assert after_mod != after_new
    (src / "go.sum").write_text("")
    assert tag_of(src) != after_mod


def test_content_tag_ignores_tests_docs_testdata_and_other_services_packages(src: Path) -> None:
    before = tag_of(src)
    (src / "cmd" / "api" / "main_test.go").write_text("package main\n\nfunc TestX() {}\n")
    (src / "internal" / "lib" / "new_test.go").write_text("package lib\n")
    (src / "README.md").write_text("more docs\n")
    (src / "other" / "other.go").write_text("package other\n\nfunc Run() { println() }\n")
    (src / "testdata").mkdir()
    (src / "testdata" / "fixture.go").write_text("package x\n")
    assert tag_of(src) == before


def test_a_package_that_does_not_compile_fails_the_plan_naming_the_module(src: Path) -> None:
    (src / "internal" / "lib" / "broken.go").write_text("package other\n")
    with pytest.raises(CommandError, match="go list"):
        inputs_of(src)


def test_content_tag_changes_with_build_args_main_and_coverage(src: Path) -> None:
    base = tag_of(src)
    assert tag_of(src, build_args={"VERSION": "1"}) != base
    assert tag_of(src, build_args={"VERSION": "1"}) != tag_of(src, build_args={"VERSION": "2"})
    assert tag_of(src, build_args={"A": "1", "B": "2"}) == tag_of(src, build_args={"B": "2", "A": "1"})
    assert tag_of(src, main="./cmd/other") != base
    cov = tag_of(src, coverage=True)
    assert cov != base
    assert cov.startswith("cov-")
    assert not base.startswith("cov-")
    assert tag_of(src, toolchain="go1.22.1") != tag_of(src, toolchain="go1.23.0")


def test_content_tag_covers_an_extra_file_outside_the_source(src: Path, tmp_path: Path) -> None:
    cf = tmp_path / "Containerfile.api"
    cf.write_text("FROM scratch\n")
    before = tag_of(src, extra=[cf])
    cf.write_text("FROM scratch\nCOPY x /x\n")
    assert tag_of(src, extra=[cf]) != before


def test_a_containerfile_context_counts_every_file_but_git(src: Path) -> None:
    rel = [p.relative_to(src).as_posix() for p in context_files(src)]
    assert "README.md" in rel and "cmd/api/main_test.go" in rel
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref\n")
    assert [p.relative_to(src).as_posix() for p in context_files(src)] == rel


def test_the_harness_outputs_are_never_build_inputs(tmp_path: Path) -> None:
    """e2e.toml inside the Go module: artifacts/, coverage/ and .e2e/ must not churn the tag."""
    from infra.paths import output_dirs

    def digest(outputs: list[Path]) -> str:
        return files_digest(tmp_path, context_files(tmp_path, outputs))

    (tmp_path / "go.mod").write_text("module m\n\ngo 1.22\n")
    (tmp_path / "main.go").write_text("package main\n\nfunc main() {}\n")
    before = digest(output_dirs(tmp_path))
    for out in ("artifacts/20260101-000000-abcd/timings.json", "coverage/e2e/x/summary.json", ".e2e/a.yaml"):
        (tmp_path / out).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / out).write_text("{}")
    assert digest(output_dirs(tmp_path)) == before
    assert digest([]) != before  # the same files do count when they are not outputs
    (tmp_path / "main.go").write_text("package main\n\nfunc main() { println() }\n")
    assert digest(output_dirs(tmp_path)) != before


@pytest.mark.parametrize(
    ("written", "full"),
    [
        ("redis:7", "docker.io/library/redis:7"),
        ("redis", "docker.io/library/redis:latest"),
        ("bitnami/redis:7.2", "docker.io/bitnami/redis:7.2"),
        ("quay.io/team/mock:1.0", "quay.io/team/mock:1.0"),
        ("registry.local:5000/mock:2", "registry.local:5000/mock:2"),
        ("localhost/team/mock:3", "localhost/team/mock:3"),
        # the node's containerd stores the long form: every spelling of it is the same image
        ("docker.io/redis:8.8.0", "docker.io/library/redis:8.8.0"),
        ("index.docker.io/library/redis:8", "docker.io/library/redis:8"),
        ("registry-1.docker.io/bitnami/redis:7", "docker.io/bitnami/redis:7"),
    ],
)
def test_a_third_party_reference_is_spelled_as_kubernetes_reads_it(written: str, full: str) -> None:
    ref = ImageRef.foreign(written)
    assert str(ref) == full
    assert ref.is_local == full.startswith("localhost/")


def test_a_third_party_digest_reference_is_refused_with_the_way_out() -> None:
    with pytest.raises(InvalidName, match="by a tag"):
        ImageRef.foreign("redis@sha256:" + "a" * 64)


def test_a_containerfiles_base_images_are_its_from_lines_but_stages_scratch_and_args(tmp_path: Path) -> None:
    from infra.builds.third_party import containerfile_bases
    from infra.config import parse

    (tmp_path / "Containerfile").write_text(
        "ARG GO=1.26\nFROM golang:${GO} AS build\nFROM --platform=linux/amd64 alpine:3.22 AS base\n"
        "FROM build AS test\nFROM base\nFROM scratch\nCOPY --from=build /x /x\n"
    )
    service = {"name": "a", "source": ".", "image": "t/a", "containerfile": "Containerfile"}
    cfg = parse({"manifests": [], "services": [service]}, tmp_path / "e2e.toml")
    assert {str(r): w for r, w in containerfile_bases(cfg).items()} == {
        "docker.io/library/alpine:3.22": [f"FROM in {tmp_path / 'Containerfile'} (service 'a')"]
    }
