"""infra.images: refs keep podman's localhost/ prefix; content tags follow the inputs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.images import ImageRef, build_inputs, content_tag, qualify, same_image_id, tree_digest
from infra.names import InvalidName

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
    root = tmp_path / "svc"
    (root / "cmd" / "api").mkdir(parents=True)
    (root / "go.mod").write_text("module example.com/svc\n\ngo 1.22\n")
    (root / "cmd" / "api" / "main.go").write_text("package main\n\nfunc main() {}\n")
    (root / "cmd" / "api" / "main_test.go").write_text("package main\n")
    (root / "internal").mkdir()
    (root / "internal" / "lib.go").write_text("package internal\n")
    return root


def tag_of(src: Path, **kw: object) -> str:
    args: dict[str, object] = {"main": "./cmd/api", "build_args": {}, "coverage": False}
    args.update(kw)
    return content_tag(tree_digest(src), **args)  # type: ignore[arg-type]


def test_content_tag_is_stable_and_a_valid_tag(src: Path) -> None:
    tag = tag_of(src)
    assert tag == tag_of(src)
    assert re.fullmatch(r"[0-9a-f]{16}", tag)
    assert str(ImageRef.parse(f"team/api:{tag}")) == f"localhost/team/api:{tag}"


def test_content_tag_changes_with_a_go_file(src: Path) -> None:
    before = tag_of(src)
    (src / "internal" / "lib.go").write_text("package internal\n\nvar X = 1\n")
    assert tag_of(src) != before


def test_content_tag_changes_with_a_new_go_file_and_go_mod(src: Path) -> None:
    before = tag_of(src)
    (src / "internal" / "more.go").write_text("package internal\n")
    after_new = tag_of(src)
    assert after_new != before
    (src / "go.mod").write_text("module example.com/svc\n\ngo 1.23\n")
    assert tag_of(src) != after_new


def test_content_tag_ignores_test_files_and_non_inputs(src: Path) -> None:
    before = tag_of(src)
    (src / "cmd" / "api" / "main_test.go").write_text("package main\n\nfunc TestX() {}\n")
    (src / "internal" / "new_test.go").write_text("package internal\n")
    (src / "README.md").write_text("docs\n")
    (src / "testdata").mkdir()
    (src / "testdata" / "fixture.go").write_text("package x\n")
    (src / ".git").mkdir()
    (src / ".git" / "x.go").write_text("package x\n")
    assert tag_of(src) == before


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


def test_build_inputs_lists_sources_not_tests(src: Path) -> None:
    rel = [p.relative_to(src).as_posix() for p in build_inputs(src)]
    assert rel == ["cmd/api/main.go", "go.mod", "internal/lib.go"]


def test_the_harness_outputs_are_never_build_inputs(tmp_path: Path) -> None:
    """e2e.toml inside the Go module: artifacts/, coverage/ and .e2e/ must not churn the tag."""
    from infra.images import tree_digest
    from infra.paths import output_dirs

    (tmp_path / "go.mod").write_text("module m\n\ngo 1.22\n")
    (tmp_path / "main.go").write_text("package main\n\nfunc main() {}\n")
    before = tree_digest(tmp_path, output_dirs(tmp_path))
    for out in ("artifacts/20260101-000000-abcd/timings.json", "coverage/e2e/x/summary.json", ".e2e/a.yaml"):
        (tmp_path / out).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / out).write_text("{}")
    assert tree_digest(tmp_path, output_dirs(tmp_path)) == before
    assert tree_digest(tmp_path) != before  # the same files do count when they are not outputs
    (tmp_path / "main.go").write_text("package main\n\nfunc main() { println() }\n")
    assert tree_digest(tmp_path, output_dirs(tmp_path)) != before
