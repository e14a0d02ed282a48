"""infra.platforms.kind_config: the run's kind cluster config and early validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.platforms.kind_config import API_VERSION, KindConfigError, dump, load_base, render, validate

REPO = Path(__file__).resolve().parents[1]


def base(**extra: Any) -> dict[str, Any]:
    return {"kind": "Cluster", "apiVersion": API_VERSION, "nodes": [{"role": "control-plane"}], **extra}


def problems(cfg: dict[str, Any]) -> str:
    with pytest.raises(KindConfigError) as info:
        validate(cfg)
    return str(info.value)


def test_render_the_repo_base(tmp_path: Path) -> None:
    cov = tmp_path / "covdata"
    cfg = render(
        load_base(REPO / "kind" / "cluster.yaml"),
        workers=2,
        host_ports={30081: 41081, 30080: 41080},
        mounts={cov: "/coverdata"},
    )
    assert cfg["networking"] == {"ipFamily": "ipv4"}  # anything in the base is kept
    assert [n["role"] for n in cfg["nodes"]] == ["control-plane", "worker", "worker"]
    assert cfg["nodes"][0]["extraPortMappings"] == [
        {"containerPort": 30080, "hostPort": 41080, "listenAddress": "127.0.0.1", "protocol": "TCP"},
        {"containerPort": 30081, "hostPort": 41081, "listenAddress": "127.0.0.1", "protocol": "TCP"},
    ]
    for node in cfg["nodes"][1:]:
        assert not node.get("extraPortMappings")
    for node in cfg["nodes"]:
        assert node["extraMounts"] == [{"hostPath": str(cov), "containerPath": "/coverdata"}]


def test_render_keeps_base_nodes_and_settings_and_does_not_mutate_it() -> None:
    b = base(
        nodes=[
            {"role": "worker", "labels": {"tier": "a"}},
            {
                "role": "control-plane",
                "extraPortMappings": [{"containerPort": 80, "hostPort": 8080}],
                "extraMounts": [{"hostPath": "/srv", "containerPath": "/srv"}],
            },
        ]
    )
    snapshot = yaml.safe_dump(b)
    cfg = render(b, workers=2, host_ports={30080: 41080}, mounts={})
    assert yaml.safe_dump(b) == snapshot
    roles = [n["role"] for n in cfg["nodes"]]
    assert roles == ["control-plane", "worker", "worker"]  # control plane first; 1 base worker + 1 added
    assert cfg["nodes"][1]["labels"] == {"tier": "a"}
    cp = cfg["nodes"][0]
    assert cp["extraPortMappings"][0] == {"containerPort": 80, "hostPort": 8080}
    assert cp["extraPortMappings"][1]["containerPort"] == 30080
    assert cp["extraMounts"] == [{"hostPath": "/srv", "containerPath": "/srv"}]


def test_render_without_nodes_makes_a_control_plane() -> None:
    cfg = render({"kind": "Cluster", "apiVersion": API_VERSION}, workers=0, host_ports={}, mounts={})
    assert cfg["nodes"] == [{"role": "control-plane", "extraMounts": [], "extraPortMappings": []}]


def test_render_validates_its_result() -> None:
    with pytest.raises(KindConfigError, match="hostPort: 41080 is mapped twice"):
        render(
            base(
                nodes=[
                    {
                        "role": "control-plane",
                        "extraPortMappings": [
                            {"containerPort": 30000, "hostPort": 41080, "listenAddress": "127.0.0.1"}
                        ],
                    }
                ]
            ),
            workers=0,
            host_ports={30080: 41080},
            mounts={},
        )


def test_valid_config_passes() -> None:
    validate(
        base(
            nodes=[
                {
                    "role": "control-plane",
                    "extraPortMappings": [{"containerPort": 30080, "hostPort": 41080}],
                    "extraMounts": [{"hostPath": "/tmp/x", "containerPath": "/coverdata"}],
                },
                {"role": "worker"},
            ]
        )
    )


def test_rejects_wrong_api_version() -> None:
    msg = problems(base(apiVersion="kind.x-k8s.io/v1alpha3"))
    assert f"apiVersion: expected {API_VERSION!r}, got 'kind.x-k8s.io/v1alpha3'" in msg


def test_rejects_wrong_kind() -> None:
    assert "kind: expected 'Cluster', got 'Config'" in problems(base(kind="Config"))


def test_rejects_no_control_plane() -> None:
    assert "nodes: at least one control-plane node is required" in problems(base(nodes=[{"role": "worker"}]))
    assert "nodes: at least one control-plane node is required" in problems(base(nodes=[]))


def test_rejects_a_bad_role() -> None:
    assert "nodes[1].role: 'master' is not one of" in problems(
        base(nodes=[{"role": "control-plane"}, {"role": "master"}])
    )


def test_rejects_duplicate_host_port_across_nodes() -> None:
    msg = problems(
        base(
            nodes=[
                {"role": "control-plane", "extraPortMappings": [{"containerPort": 30080, "hostPort": 8080}]},
                {"role": "worker", "extraPortMappings": [{"containerPort": 30081, "hostPort": 8080}]},
            ]
        )
    )
    assert "nodes[1].extraPortMappings[0].hostPort: 8080 is mapped twice" in msg


def test_rejects_bad_ports() -> None:
    msg = problems(
        base(
            nodes=[{"role": "control-plane", "extraPortMappings": [{"containerPort": 0, "hostPort": 70000}]}]
        )
    )
    assert "nodes[0].extraPortMappings[0].containerPort: 0 is not a port" in msg
    assert "nodes[0].extraPortMappings[0].hostPort: 70000 is not a port" in msg


def test_rejects_relative_host_path_and_container_path() -> None:
    msg = problems(
        base(
            nodes=[
                {
                    "role": "control-plane",
                    "extraMounts": [{"hostPath": "coverage/covdata", "containerPath": "coverdata"}],
                }
            ]
        )
    )
    assert "nodes[0].extraMounts[0].hostPath: must be an absolute path, got 'coverage/covdata'" in msg
    assert "nodes[0].extraMounts[0].containerPath: must be absolute" in msg


def test_all_problems_are_listed_together() -> None:
    msg = problems({"kind": "Cluster", "apiVersion": "v1", "nodes": [{"role": "worker"}]})
    assert msg.startswith("invalid kind config:\n  ")
    assert "apiVersion:" in msg and "nodes: at least one control-plane" in msg


def test_load_base_errors(tmp_path: Path) -> None:
    with pytest.raises(
        KindConfigError, match=r"kind config .*nope\.yaml not found \(platform\.kind_config\)"
    ):
        load_base(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(KindConfigError, match="is not a mapping"):
        load_base(tmp_path / "list.yaml")


def test_dump_round_trip(tmp_path: Path) -> None:
    cfg = render(base(), workers=1, host_ports={30080: 41080}, mounts={tmp_path: "/coverdata"})
    path = dump(cfg, tmp_path / "run" / "kind-config.yaml")
    assert yaml.safe_load(path.read_text()) == cfg
    assert path.read_text().startswith("kind: Cluster\n")  # key order kept


def test_a_non_numeric_host_port_is_named() -> None:
    msg = problems(
        base(
            nodes=[
                {"role": "control-plane", "extraPortMappings": [{"containerPort": 30080, "hostPort": "http"}]}
            ]
        )
    )
    assert "nodes[0].extraPortMappings[0].hostPort: 'http' is not a port" in msg
