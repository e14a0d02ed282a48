"""Names that reach a command line: the harness prefix, run ids, validation."""

from __future__ import annotations

import re
import secrets
import time

PREFIX = "e2eh"
"""Every cluster, container, network and archive the harness creates starts with this."""

LABEL = "io.e2e-harness.managed"
RUN_LABEL = "io.e2e-harness.run"
SERVICE_LABEL = "io.e2e-harness.service"
COVERAGE_LABEL = "io.e2e-harness.coverage"
MANAGED = f"label={LABEL}=true"
"""podman --filter for everything the harness created."""
KIND_CLUSTER_LABEL = "io.x-k8s.kind.cluster"
LOCAL_CLUSTER_LABEL = "io.e2e-harness.local-cluster"
"""On the registry of `inv local-cluster`: the user's, which no cleanup of runs removes (`down` does)."""

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_IMAGE_PART = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class InvalidName(ValueError):
    pass


def check_dns_label(kind: str, value: str, max_len: int = 63) -> str:
    """Validate a cluster, namespace or container-ish name before it reaches argv."""
    if not value or len(value) > max_len or not _DNS_LABEL.match(value):
        raise InvalidName(
            f"invalid {kind} name {value!r}: use lowercase letters, digits and '-', "
            f"start and end alphanumeric, at most {max_len} characters"
        )
    return value


def check_image_path(value: str) -> str:
    parts = value.split("/")
    host = parts[0]
    rest = parts[1:] if ("." in host or ":" in host or host == "localhost") else parts
    if not rest or not all(_IMAGE_PART.match(p) for p in rest):
        raise InvalidName(
            f"invalid image name {value!r}: path components are lowercase alphanumerics "
            "separated by '.', '_' or '-'"
        )
    return value


def check_tag(value: str) -> str:
    if not _TAG.match(value):
        raise InvalidName(f"invalid image tag {value!r}")
    return value


def new_run_id() -> str:
    """Sortable by time, unique across concurrent runs on one machine."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


def resource_name(run_id: str, suffix: str = "") -> str:
    name = f"{PREFIX}-{run_id}" + (f"-{suffix}" if suffix else "")
    return check_dns_label("resource", name)
