"""infra.gocover.coverflush and the per-test report's parsing: what needs no running service.

The flush itself runs for real in test_podman_integration.py and test_kind_cluster.py.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from infra.builds import build
from infra.config import Config, ConfigError
from infra.gocover import coverflush, pertest_report
from infra.images import context_files, files_digest
from infra.proc import SubprocessRunner
from infra.run.run import Options, check_per_test

REPO = Path(__file__).resolve().parents[1]


def test_the_example_services_do_not_handle_the_flush_signal(repo_cfg: Config) -> None:
    assert repo_cfg.coverage.flush_signal == "SIGUSR1"
    coverflush.check_mains(repo_cfg)  # no error: nothing in services/ uses SIGUSR1


def test_a_main_that_handles_the_signal_is_refused_naming_the_line_and_the_way_out(
    tmp_path: Path, make_cfg: Callable[..., Config]
) -> None:
    module = tmp_path / "mod"
    (module / "api").mkdir(parents=True)
    (module / "go.mod").write_text("module example.com/mod\n\ngo 1.22\n")
    (module / "api" / "main.go").write_text(
        'package main\n\nimport (\n\t"os/signal"\n\t"syscall"\n)\n\n'
        "func main() {\n\tsignal.Notify(nil, syscall.SIGUSR1)\n}\n"
    )
    svc = {"name": "api", "source": str(module), "main": "./api", "image": "team/api"}
    cfg = make_cfg()
    cfg = cfg.model_copy(update={"services": (cfg.services[0].model_validate(svc),)})
    with pytest.raises(ConfigError) as err:
        coverflush.check_mains(cfg)
    msg = str(err.value)
    assert f"{module / 'api' / 'main.go'}:9: signal.Notify(nil, syscall.SIGUSR1)" in msg
    assert 'flush_signal = "SIGUSR2"' in msg and 'flush_signal = "off"' in msg
    other = cfg.model_copy(update={"coverage": cfg.coverage.model_copy(update={"flush_signal": "SIGUSR2"})})
    coverflush.check_mains(other)  # another signal: accepted


def test_the_coverage_tag_changes_with_the_flush_signal(make_cfg: Callable[..., Config]) -> None:
    tags = {
        sig: build.plan_images(
            make_cfg(coverage={"flush_signal": sig}), coverage=cov, toolchain="go1", runner=SubprocessRunner()
        )
        .ref("gateway")
        .tag
        for sig in ("SIGUSR1", "SIGUSR2", "off")
        for cov in (True,)
    }
    assert len(set(tags.values())) == 3
    plain = {
        build.plan_images(
            make_cfg(coverage={"flush_signal": sig}),
            coverage=False,
            toolchain="go1",
            runner=SubprocessRunner(),
        )
        .ref("gateway")
        .tag
        for sig in ("SIGUSR1", "off")
    }
    assert len(plain) == 1  # images without coverage do not depend on it


def test_an_unknown_signal_is_refused_by_the_config(make_cfg: Callable[..., Config]) -> None:
    with pytest.raises(ConfigError, match=r"coverage\.flush_signal"):
        make_cfg(coverage={"flush_signal": "SIGKILL"})


def test_the_build_copy_adds_the_flush_package_and_leaves_the_sources_alone(tmp_path: Path) -> None:
    source = REPO / "services"
    before = files_digest(source, context_files(source))
    root = coverflush.prepare_tree(
        source, "example.com/e2e-services", ["./gateway", "./datastore"], "SIGUSR2", tmp_path
    )
    assert files_digest(source, context_files(source)) == before
    assert not (source / "gateway" / coverflush.OVERLAY_FILE).exists()
    added = (root / "gateway" / coverflush.OVERLAY_FILE).read_text()
    assert 'import _ "example.com/e2e-services/_e2ehcoverflush"' in added
    flush = (root / coverflush.PACKAGE_DIR / "flush.go").read_text()
    assert "syscall.SIGUSR2" in flush and "coverage.ClearCounters()" in flush
    vet = subprocess.run(
        ["go", "vet", "./gateway", "./datastore", f"./{coverflush.PACKAGE_DIR}"],
        cwd=root, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert vet.returncode == 0, vet.stderr


def test_reports_leave_the_flush_package_out() -> None:
    profile = (
        "mode: atomic\n"
        "example.com/m/_e2ehcoverflush/flush.go:14.13,16.15 2 1\n"
        "example.com/m/gateway/main.go:3.1,4.2 1 0\n"
    )
    assert (
        coverflush.without_flush_package(profile)
        == "mode: atomic\nexample.com/m/gateway/main.go:3.1,4.2 1 0\n"
    )
    percent = (
        "\texample.com/m/_e2ehcoverflush\t\tcoverage: 53.3% of statements\n"
        "\texample.com/m/gateway\t\tcoverage: 20.2% of statements\n"
    )
    assert "_e2eh" not in coverflush.without_flush_package(percent)


def test_func_output_and_profiles_are_parsed_per_function_and_block() -> None:
    func = (
        "example.com/m/gateway/handlers.go:85:\t\tingest\t\t100.0%\n"
        "example.com/m/gateway/handlers.go:120:\t\taccept\t\t0.0%\n"
        "total:\t\t\t\t(statements)\t\t42.5%\n"
    )
    funcs, total = pertest_report.parse_func(func, "example.com/m")
    assert funcs == {"gateway/handlers.go:85 ingest": 100.0, "gateway/handlers.go:120 accept": 0.0}
    assert total == 42.5
    blocks = pertest_report.profile_blocks(
        "mode: atomic\nf.go:1.1,2.2 3 0\nf.go:1.1,2.2 3 2\ng.go:1.1,1.9 1 0\n"
    )
    assert blocks == {"f.go:1.1,2.2": (3, 2), "g.go:1.1,1.9": (1, 0)}


def test_per_test_is_refused_before_anything_starts_when_it_cannot_work(
    make_cfg: Callable[..., Config],
) -> None:
    cfg = make_cfg(coverage={"flush_signal": "off"})
    with pytest.raises(ConfigError) as err:
        check_per_test(cfg, Options(per_test=True, coverage=False, pytest_args=("-n", "2")))
    msg = str(err.value)
    assert "--per-test needs --coverage" in msg and 'flush_signal is "off"' in msg and "drop -n" in msg
    check_per_test(make_cfg(), Options(per_test=True, coverage=True))


def test_the_usual_run_to_compare_with_is_the_newest_plain_one(tmp_path: Path) -> None:
    def summary(where: Path, **data: object) -> None:
        where.mkdir(parents=True)
        (where / "summary.json").write_text(json.dumps(data))

    summary(
        tmp_path / "20260101-000000-aaaa", run_id="20260101-000000-aaaa", total_percent=80.0
    )  # before "mode"
    summary(
        tmp_path / "20260101-000001-bbbb", run_id="20260101-000001-bbbb", mode="suite", total_percent=81.0
    )
    summary(
        tmp_path / "20260101-000002-cccc", run_id="20260101-000002-cccc", mode="per-test", total_percent=82.0
    )
    summary(tmp_path / "per-test", run_id="20260101-000002-cccc", total_percent=82.0)  # the latest copy
    usual = pertest_report.usual_run(tmp_path, "20260101-000003-dddd")
    assert usual == {"run_id": "20260101-000001-bbbb", "total_percent": 81.0}


def test_only_configured_host_built_services_are_flushed(make_cfg: Callable[..., Config]) -> None:
    cfg = make_cfg()
    assert coverflush.flushable(cfg, "gateway")
    assert not coverflush.flushable(cfg, "workloads")  # deployed outside e2e.toml's services
    assert not coverflush.flushable(make_cfg(coverage={"flush_signal": "off"}), "gateway")
