"""infra.gocover.gocoverage: the parts that need no Go run (those run for real in test_podman_integration)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from infra.gocover import gocoverage


def test_prepare_dirs_makes_a_writable_dir_per_service(tmp_path: Path) -> None:
    covdata = tmp_path / "coverage" / "e2e" / "run" / "covdata"
    gocoverage.prepare_dirs(covdata, ["gateway", "datastore"])
    for name in ("gateway", "datastore"):
        assert stat.S_IMODE((covdata / name).stat().st_mode) == 0o777  # any container user writes


def test_a_service_without_counters_is_named_with_the_likely_cause(tmp_path: Path) -> None:
    for name in ("gateway", "datastore"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "covmeta.abc").write_text("m")
    (tmp_path / "datastore" / "covcounters.abc.1.2").write_text("c")
    dirs = {n: tmp_path / n for n in ("gateway", "datastore")}
    with pytest.raises(gocoverage.CoverageError) as err:
        gocoverage.check_counters(dirs, {"gateway": "e2eh-x-gateway exit 137"})
    msg = str(err.value)
    assert "service 'gateway' wrote no coverage counters" in msg and "exit 137" in msg
    assert "killed instead of stopped" in msg and "'datastore'" not in msg


def test_func_total_reads_the_total_line() -> None:
    out = "example.com/x/a.go:3:\tf\t100.0%\ntotal:\t\t\t(statements)\t83.6%\n"
    assert gocoverage.func_total(out) == 83.6
    with pytest.raises(gocoverage.CoverageError, match="no 'total:' line"):
        gocoverage.func_total("nothing")
