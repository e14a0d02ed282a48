"""Host conditions a kind node cannot cope with by default: detected, patched only where found.

Each was met on real machines (../shared/KIND-OFFLINE.md). A normal host
(cgroup v2, full capabilities, /lib/modules present) gets kind's defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CAP_SYS_RESOURCE = 24
CGROUP_V2_MARKER = Path("/sys/fs/cgroup/cgroup.controllers")
LIB_MODULES = Path("/lib/modules")

KUBELET_CGROUP_V1 = """\
kind: KubeletConfiguration
apiVersion: kubelet.config.k8s.io/v1beta1
failCgroupV1: false
"""
CONTAINERD_NO_OOM_ADJ = """\
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
"""


@dataclass(frozen=True)
class HostFix:
    name: str
    detected: str
    remedy: str
    kubeadm_patch: str = ""
    containerd_patch: str = ""


def _bounding_caps(status: str) -> int:
    for line in status.splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16)
    return -1


def detect(proc_status: str | None = None, cgroup_v2: bool | None = None) -> list[HostFix]:
    """What this host needs patched in every kind node it runs."""
    status = Path("/proc/self/status").read_text() if proc_status is None else proc_status
    v2 = CGROUP_V2_MARKER.exists() if cgroup_v2 is None else cgroup_v2
    fixes = []
    if not v2:
        fixes.append(
            HostFix(
                "cgroup v1",
                "containers get cgroup v1 here; kubelet >= 1.35 refuses it by default",
                "kubeadmConfigPatches: KubeletConfiguration failCgroupV1: false",
                kubeadm_patch=KUBELET_CGROUP_V1,
            )
        )
    caps = _bounding_caps(status)
    if caps >= 0 and not caps >> CAP_SYS_RESOURCE & 1:
        fixes.append(
            HostFix(
                "no CAP_SYS_RESOURCE",
                "the capability bounding set lacks CAP_SYS_RESOURCE, so containerd in a node "
                "cannot set oom_score_adj",
                "containerdConfigPatches: restrict_oom_score_adj = true",
                containerd_patch=CONTAINERD_NO_OOM_ADJ,
            )
        )
    return fixes


def ensure_lib_modules(path: Path = LIB_MODULES) -> str:
    """kind mounts /lib/modules into every node: create an empty one where the VM has none."""
    if path.exists():
        return ""
    if os.geteuid() != 0:
        raise PermissionError(
            f"{path} does not exist and kind mounts it into every node; next: sudo mkdir -p {path}"
        )
    path.mkdir(parents=True)
    return f"created an empty {path} (kind mounts it into every node; this host has no kernel modules there)"


def aardvark_pid_file() -> Path:
    """Where netavark keeps the pid of podman's DNS server (rootful, or the user's runtime dir)."""
    if os.geteuid() == 0:
        base = Path("/run")
    else:
        base = Path(os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}")
    return base / "containers/networks/aardvark-dns/aardvark.pid"


def stale_aardvark_pid(path: Path | None = None, proc: Path = Path("/proc")) -> str:
    """The process podman's DNS pid file names when it is not aardvark-dns, else "".

    netavark 1.4 sends SIGHUP to that pid and, when a process has it, starts no DNS server: kind's
    nodes then cannot find each other by name. A killed aardvark-dns leaves such a file behind.
    """
    path = path or aardvark_pid_file()
    try:
        pid = int(path.read_text().strip())
        comm = (proc / str(pid) / "comm").read_text().strip()
    except (OSError, ValueError):
        return ""  # no file, or no such process: netavark starts a new server
    return "" if comm == "aardvark-dns" else f"pid {pid} ({comm})"
