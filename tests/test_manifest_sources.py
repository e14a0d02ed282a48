"""Manifests as a team keeps them: a kustomize base with overlays, and a Helm chart.

The fixture repo is made by the test from the example stack's manifests: a base
and two overlays (the run uses one; the other must not leak in), and a chart
whose templates take values. What renders is what the field policy, the image
rewriting and the deploy see.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
import yaml

from infra.builds import rendertools
from infra.config import parse as parse_config
from infra.platforms.manifests import ManifestError, load_docs
from tests.faultkit import REPO, RootFactory

EXAMPLE = ("postgres.yaml", "redis.yaml", "datastore.yaml", "gateway.yaml")
KUSTOMIZE_BASE = f"resources: {list(EXAMPLE)}\n"
E2E_OVERLAY = """\
resources: ["../../base"]
labels:
  - pairs: {team: orders}
patches:
  - target: {kind: ConfigMap, name: gateway-config}
    patch: |
      - op: replace
        path: /data/DEDUP_TTL
        value: 7s
"""
PROD_OVERLAY = 'resources: ["../../base"]\nnamespace: prod\n'


def make_kustomize(repo: Path) -> Path:
    """deploy/base + deploy/overlays/{e2e,prod}, as a team's repo has them."""
    base = repo / "deploy" / "base"
    base.mkdir(parents=True)
    for name in EXAMPLE:
        shutil.copy2(REPO / "manifests" / name, base / name)
    (base / "kustomization.yaml").write_text(KUSTOMIZE_BASE)
    for overlay, text in (("e2e", E2E_OVERLAY), ("prod", PROD_OVERLAY)):
        (repo / "deploy" / "overlays" / overlay).mkdir(parents=True)
        (repo / "deploy" / "overlays" / overlay / "kustomization.yaml").write_text(text)
    return repo / "deploy" / "overlays" / "e2e"


def make_chart(repo: Path) -> Path:
    """charts/orders: the example's manifests as templates with values (the dedup TTL, the replicas)."""
    chart = repo / "charts" / "orders"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: orders\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("gateway:\n  dedupTTL: 5s\n  replicas: 1\n")
    for name in EXAMPLE[:3]:
        shutil.copy2(REPO / "manifests" / name, chart / "templates" / name)
    gateway = (REPO / "manifests" / "gateway.yaml").read_text()
    gateway = gateway.replace("DEDUP_TTL: 5s", "DEDUP_TTL: {{ .Values.gateway.dedupTTL | quote }}")
    gateway = gateway.replace("  replicas: 1\n", "  replicas: {{ .Values.gateway.replicas }}\n", 1)
    (chart / "templates" / "gateway.yaml").write_text(gateway)
    return chart


def _config(repo: Path, manifests: list[object]) -> object:
    data = {"manifests": manifests, "services": [
        {"name": "datastore", "source": str(REPO / "services"), "main": "./datastore",
         "image": "localhost/e2e-harness/datastore"},
    ]}  # fmt: skip
    return parse_config(data, repo / "e2e.toml")


def _gateway_config(docs: list[dict[str, object]]) -> dict[str, str]:
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "gateway-config")  # type: ignore[index]
    return dict(cm["data"])  # type: ignore[arg-type]


def test_a_kustomize_overlay_is_rendered_and_only_that_overlay(tmp_path: Path) -> None:
    overlay = make_kustomize(tmp_path)
    docs = load_docs(_config(tmp_path, ["deploy/overlays/e2e"]))  # type: ignore[arg-type]

    assert _gateway_config(docs)["DEDUP_TTL"] == "7s"  # the overlay's patch
    assert all(d["metadata"]["labels"]["team"] == "orders" for d in docs)
    assert not any(d["metadata"].get("namespace") == "prod" for d in docs)  # the other overlay stays out
    sources = {d["metadata"]["annotations"]["e2e-harness/source"] for d in docs}
    assert sources == {"deploy/overlays/e2e (kustomize)"}
    assert overlay.is_dir()


def test_a_kustomize_error_names_the_directory_and_says_kustomizes_words(tmp_path: Path) -> None:
    overlay = make_kustomize(tmp_path)
    (overlay / "kustomization.yaml").write_text('resources: ["../../nowhere"]\n')
    with pytest.raises(ManifestError) as info:
        load_docs(_config(tmp_path, ["deploy/overlays/e2e"]))  # type: ignore[arg-type]
    msg = str(info.value)
    assert msg.startswith(f"kustomize of {overlay} failed: "), msg
    assert "nowhere" in msg, msg


def test_a_directory_that_is_neither_is_refused(tmp_path: Path) -> None:
    (tmp_path / "deploy").mkdir()
    with pytest.raises(ManifestError, match=r"holds neither a kustomization\.yaml nor a Chart\.yaml"):
        load_docs(_config(tmp_path, ["deploy"]))  # type: ignore[arg-type]


def test_kustomize_is_the_pinned_wheels_never_the_machines() -> None:
    assert rendertools.kubectl().parent.name == "bin"
    assert rendertools.kubectl() != Path("/usr/bin/kubectl")


needs_helm = pytest.mark.slow  # the first use builds helm (minutes cold), then it is cached


@needs_helm
def test_a_helm_chart_is_rendered_with_values_files_and_set_values(tmp_path: Path) -> None:
    make_chart(tmp_path)
    (tmp_path / "values-e2e.yaml").write_text("gateway:\n  dedupTTL: 9s\n")
    chart = {"chart": "charts/orders", "values": ["values-e2e.yaml"], "set": {"gateway.replicas": "1"}}
    docs = load_docs(_config(tmp_path, [chart]))  # type: ignore[arg-type]

    assert _gateway_config(docs)["DEDUP_TTL"] == "9s"
    assert {d["metadata"]["annotations"]["e2e-harness/source"] for d in docs} == {"charts/orders (helm)"}
    assert rendertools.helm_path().is_file()
    # a directory with a Chart.yaml is the chart with its default values
    plain = load_docs(_config(tmp_path, ["charts/orders"]))  # type: ignore[arg-type]
    assert _gateway_config(plain)["DEDUP_TTL"] == "5s"


@needs_helm
def test_a_helm_error_names_the_chart_and_says_helms_words(tmp_path: Path) -> None:
    chart = make_chart(tmp_path)
    (chart / "templates" / "broken.yaml").write_text("{{ .Values.nope.deeper }}\n")
    with pytest.raises(ManifestError) as info:
        load_docs(_config(tmp_path, [{"chart": "charts/orders"}]))  # type: ignore[arg-type]
    msg = str(info.value)
    assert msg.startswith(f"helm template of {chart} failed: "), msg
    assert "broken.yaml" in msg and "nil pointer" in msg, msg


@pytest.mark.podman
@needs_helm
@pytest.mark.parametrize("source", ["kustomize", "helm"])
def test_the_example_suite_runs_from_an_overlay_and_from_a_chart_as_they_are(
    roots: RootFactory, source: str
) -> None:
    root = roots.make(f"from-{source}")
    if source == "kustomize":
        make_kustomize(root.path)
        root.data["manifests"] = ["deploy/overlays/e2e"]
    else:
        make_chart(root.path)
        (root.path / "values-e2e.yaml").write_text(textwrap.dedent("""\
            gateway:
              dedupTTL: 5s
        """))  # fmt: skip
        root.data["manifests"] = [{"chart": "charts/orders", "values": ["values-e2e.yaml"]}]
    root.write_config()

    out = root.e2e("-k", "smoke or dedup", timeout=300)

    assert out.code == 0, str(out)
    rendered = list(yaml.safe_load_all((out.artifacts / "manifests.rendered.yaml").read_text()))
    assert {d["metadata"]["annotations"]["e2e-harness/source"] for d in rendered} == {
        "deploy/overlays/e2e (kustomize)" if source == "kustomize" else "charts/orders (helm)"
    }
    assert root.leftovers(out.run_id) == [], str(out)
