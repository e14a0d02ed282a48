"""The kind cluster config of a run: base file + workers, port mappings, mounts."""

from __future__ import annotations

import copy
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from infra.config import Config

API_VERSION = "kind.x-k8s.io/v1alpha4"
NODE_ROLES = ("control-plane", "worker")
NODEPORT_RANGE = range(30000, 32768)


HARNESS_BASE = Path(__file__).resolve().parents[2] / "kind" / "cluster.yaml"
"""The harness's own base config: what a run uses when the user's repo has none."""


class KindConfigError(Exception):
    pass


def base_file(config: Config) -> tuple[Path, str]:
    """The run's base kind config and where it comes from; refused when one named is missing."""
    path = config.path(config.platform.kind_config)
    if path.is_file():
        return path, f"{path}"
    if "kind_config" in config.platform.model_fields_set:
        raise KindConfigError(
            f"kind config {path} not found (platform.kind_config in {config.source_file}); next: "
            f"mkdir -p {shlex.quote(str(path.parent))} && cp {shlex.quote(str(HARNESS_BASE))} "
            f"{shlex.quote(str(path))}, or remove platform.kind_config to use the harness's own"
        )
    return HARNESS_BASE, f"{HARNESS_BASE} (the harness's own: no {path} beside {config.source_file.name})"


def render(
    base: Mapping[str, Any],
    *,
    workers: int,
    host_ports: Mapping[int, int],
    mounts: Mapping[Path, str],
    kubeadm_patches: Sequence[str] = (),
    containerd_patches: Sequence[str] = (),
) -> dict[str, Any]:
    """Add workers, NodePort -> 127.0.0.1 mappings (control plane), mounts (every node), host patches."""
    cfg = copy.deepcopy(dict(base))
    for key, extra in (
        ("kubeadmConfigPatches", kubeadm_patches),
        ("containerdConfigPatches", containerd_patches),
    ):
        if extra:
            cfg[key] = [*cfg.get(key, []), *extra]
    nodes = [n for n in cfg.get("nodes") or [{"role": "control-plane"}] if n.get("role") != "worker"]
    nodes += [n for n in cfg.get("nodes") or [] if n.get("role") == "worker"]
    have = sum(1 for n in nodes if n.get("role") == "worker")
    nodes += [{"role": "worker"} for _ in range(max(0, workers - have))]
    for i, node in enumerate(nodes):
        node["extraMounts"] = list(node.get("extraMounts", [])) + [
            {"hostPath": str(host), "containerPath": container} for host, container in mounts.items()
        ]
        if i == 0:
            node["extraPortMappings"] = list(node.get("extraPortMappings", [])) + [
                {
                    "containerPort": node_port,
                    "hostPort": host,
                    "listenAddress": "127.0.0.1",
                    "protocol": "TCP",
                }
                for node_port, host in sorted(host_ports.items())
            ]
    cfg["nodes"] = nodes
    validate(cfg)
    return cfg


def validate(cfg: Mapping[str, Any]) -> None:
    """The checks kind itself would make, early and with the offending field named."""
    problems = []
    if cfg.get("kind") != "Cluster":
        problems.append(f"kind: expected 'Cluster', got {cfg.get('kind')!r}")
    if cfg.get("apiVersion") != API_VERSION:
        problems.append(f"apiVersion: expected {API_VERSION!r}, got {cfg.get('apiVersion')!r}")
    nodes = cfg.get("nodes") or []
    if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes):
        raise KindConfigError("invalid kind config:\n  nodes: must be a list of mappings with a role")
    if not any(n.get("role") == "control-plane" for n in nodes):
        problems.append("nodes: at least one control-plane node is required")
    host_ports: set[tuple[str, int]] = set()
    for i, node in enumerate(nodes):
        if node.get("role") not in NODE_ROLES:
            problems.append(f"nodes[{i}].role: {node.get('role')!r} is not one of {NODE_ROLES}")
        for j, pm in enumerate(node.get("extraPortMappings", [])):
            where = f"nodes[{i}].extraPortMappings[{j}]"
            for key in ("containerPort", "hostPort"):
                if not isinstance(pm.get(key), int) or not 0 < pm[key] < 65536:
                    problems.append(f"{where}.{key}: {pm.get(key)!r} is not a port")
            if not isinstance(pm.get("hostPort"), int):
                continue
            key_ = (str(pm.get("listenAddress", "0.0.0.0")), pm["hostPort"])
            if key_ in host_ports:
                problems.append(f"{where}.hostPort: {key_[1]} is mapped twice")
            host_ports.add(key_)
        for j, mount in enumerate(node.get("extraMounts", [])):
            where = f"nodes[{i}].extraMounts[{j}]"
            if not Path(str(mount.get("hostPath", ""))).is_absolute():
                problems.append(f"{where}.hostPath: must be an absolute path, got {mount.get('hostPath')!r}")
            if not str(mount.get("containerPath", "")).startswith("/"):
                problems.append(f"{where}.containerPath: must be absolute")
    if problems:
        raise KindConfigError("invalid kind config:\n  " + "\n  ".join(problems))


def load_base(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise KindConfigError(f"kind config {path} not found (platform.kind_config)") from None
    if not isinstance(data, dict):
        raise KindConfigError(f"kind config {path} is not a mapping")
    return data


def dump(cfg: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(cfg), sort_keys=False))
    return path
