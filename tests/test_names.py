"""infra.names: validation of names that reach a command line."""

from __future__ import annotations

import re

import pytest

from infra.names import (
    PREFIX,
    InvalidName,
    check_dns_label,
    check_image_path,
    check_tag,
    new_run_id,
    resource_name,
)


@pytest.mark.parametrize("good", ["a", "e2eh-1", "x" * 63, "0abc"])
def test_dns_label_accepts(good: str) -> None:
    assert check_dns_label("cluster", good) == good


@pytest.mark.parametrize("bad", ["", "-a", "a-", "A", "a_b", "a.b", "x" * 64, "a b", "a;rm -rf"])
def test_dns_label_rejects_and_names_the_kind(bad: str) -> None:
    with pytest.raises(InvalidName) as info:
        check_dns_label("cluster", bad)
    assert f"invalid cluster name {bad!r}" in str(info.value)
    assert "at most 63 characters" in str(info.value)


def test_dns_label_max_len() -> None:
    with pytest.raises(InvalidName, match="at most 30"):
        check_dns_label("namespace", "n" * 31, max_len=30)


@pytest.mark.parametrize(
    "good", ["api", "team/api", "localhost/team/api", "quay.io/t/a", "reg:5000/a", "a.b-c_d/e"]
)
def test_image_path_accepts(good: str) -> None:
    assert check_image_path(good) == good


@pytest.mark.parametrize("bad", ["", "Team/api", "team/", "localhost", "quay.io", "t/-a", "t/a..b", "t/a b"])
def test_image_path_rejects(bad: str) -> None:
    with pytest.raises(InvalidName, match="invalid image name"):
        check_image_path(bad)


def test_tags() -> None:
    assert check_tag("cov-0123abcd") == "cov-0123abcd"
    assert check_tag("V1.2_3") == "V1.2_3"
    for bad in ("", "-x", ".x", "a/b", "a:b", "x" * 129):
        with pytest.raises(InvalidName, match="invalid image tag"):
            check_tag(bad)


def test_run_ids_are_sortable_and_unique() -> None:
    ids = {new_run_id() for _ in range(20)}
    assert len(ids) > 1
    for run_id in ids:
        assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", run_id)
        assert check_dns_label("run", resource_name(run_id)) == f"{PREFIX}-{run_id}"


def test_resource_name() -> None:
    assert resource_name("20260101-000000-abcd") == "e2eh-20260101-000000-abcd"
    assert resource_name("20260101-000000-abcd", "e2e") == "e2eh-20260101-000000-abcd-e2e"
    with pytest.raises(InvalidName):
        resource_name("20260101-000000-abcd", "x" * 40)
