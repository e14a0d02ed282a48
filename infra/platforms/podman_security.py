"""A pod's and a container's securityContext as `podman run` options, as the kubelet would apply them.

What podman cannot give the same way is refused before anything starts
(infra.platforms.podman_fields); this only translates what passed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from infra.platforms.platform import PlatformError

Doc = dict[str, Any]
INHERITED = ("runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile", "appArmorProfile")
"""Pod-level fields a container's own securityContext overrides one by one."""


def effective(ctr: Doc, spec: Doc) -> Doc:
    pod = spec.get("securityContext") or {}
    return {**{k: pod[k] for k in INHERITED if k in pod}, **(ctr.get("securityContext") or {})}


def _user_of_image(value: str) -> str:
    """The user part of an image's `User` (`1000:1000` -> `1000`); root when empty."""
    return value.split(":", 1)[0] or "0"


def sysctl_argv(spec: Doc) -> list[str]:
    """The pod's sysctls: on the podman pod (its namespaces are shared), or on a Job's lone container."""
    pod = spec.get("securityContext") or {}
    return [arg for s in pod.get("sysctls") or [] for arg in ("--sysctl", f"{s['name']}={s['value']}")]


def argv(ctr: Doc, spec: Doc, image_user: Callable[[], str], who: str) -> list[str]:
    """--user, --group-add, --read-only, --cap-* and --security-opt for one container.

    image_user: the image's configured user, asked only when runAsNonRoot or runAsGroup needs it.
    """
    sc, pod = effective(ctr, spec), spec.get("securityContext") or {}
    out: list[str] = []
    user, group = sc.get("runAsUser"), sc.get("runAsGroup")
    if sc.get("runAsNonRoot") is True and user is None:
        # the kubelet's own check and words: the image's user must be numeric and not 0
        image = _user_of_image(image_user())
        if not image.isdigit():
            raise PlatformError(
                f"{who}: container has runAsNonRoot and image has non-numeric user ({image}), cannot verify "
                "user is non-root; next: set securityContext.runAsUser"
            )
        if int(image) == 0:
            raise PlatformError(
                f"{who}: container has runAsNonRoot and image will run as root; next: set "
                "securityContext.runAsUser to a non-zero uid, or build the image with a USER"
            )
    if user is not None or group is not None:
        who_runs = str(user) if user is not None else _user_of_image(image_user())
        out += ["--user", who_runs + (f":{group}" if group is not None else "")]
    for gid in [*([pod["fsGroup"]] if "fsGroup" in pod else []), *(pod.get("supplementalGroups") or [])]:
        out += ["--group-add", str(gid)]
    if sc.get("readOnlyRootFilesystem") is True:
        out += ["--read-only", "--read-only-tmpfs=false"]  # Kubernetes mounts no tmpfs of its own
    if sc.get("allowPrivilegeEscalation") is False:
        out += ["--security-opt", "no-new-privileges"]
    caps = sc.get("capabilities") or {}
    out += [arg for cap in caps.get("drop") or [] for arg in ("--cap-drop", str(cap))]
    out += [arg for cap in caps.get("add") or [] for arg in ("--cap-add", str(cap))]
    if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
        out += ["--security-opt", "seccomp=unconfined"]
    if (sc.get("appArmorProfile") or {}).get("type") == "Unconfined":
        out += ["--security-opt", "apparmor=unconfined"]
    return out
