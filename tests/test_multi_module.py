"""Services in several Go modules of one repository, for real on podman: builds, tags, coverage.

The repo is generated: two modules (with and without a go.work), one service
each, their manifests, and a suite of its own that reads the run's state file.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.podman_cli import Podman, podman_env
from infra.proc import SubprocessRunner
from tests.faultkit import HARNESS_TIMEOUT, REPO, dump_toml, harness_env, lines_with

pytestmark = [pytest.mark.podman, pytest.mark.slow]

SERVER = """\
package main

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"context"

	"{module}/internal/reply"
)

func main() {{
	handler := func(w http.ResponseWriter, r *http.Request) {{ fmt.Fprint(w, reply.Text(r.URL.Path)) }}
	srv := &http.Server{{Addr: ":8080", Handler: http.HandlerFunc(handler)}}
	go srv.ListenAndServe()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	srv.Shutdown(context.Background())
}}
"""
REPLY = """\
package reply

// Text is what the {name} service answers.
func Text(path string) string {{
	if path == "/unused" {{
		return "never asked"
	}}
	return "{name} " + path
}}
"""
MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: {name}
          image: {image}:dev
          ports: [{{name: http, containerPort: 8080}}]
          readinessProbe: {{httpGet: {{path: /ready, port: http}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  type: NodePort
  selector: {{app: {name}}}
  ports: [{{port: 8080, targetPort: http, nodePort: {port}}}]
"""
SUITE = """\
import json, os, urllib.request


def test_each_service_answers():
    endpoints = json.load(open(os.environ["E2E_STATE_FILE"]))["endpoints"]
    for name in ("alpha", "beta"):
        with urllib.request.urlopen(endpoints[name] + "/hello", timeout=10) as resp:
            assert resp.read().decode() == f"{name} /hello"
"""


def make_repo(root: Path, *, workspace: bool, prefix: str) -> Path:
    services = []
    for name, port in (("alpha", 30091), ("beta", 30092)):
        module = f"example.com/{name}"
        mod_dir = root / name
        (mod_dir / "cmd" / name).mkdir(parents=True)
        (mod_dir / "internal" / "reply").mkdir(parents=True)
        (mod_dir / "go.mod").write_text(f"module {module}\n\ngo 1.22\n")
        (mod_dir / "cmd" / name / "main.go").write_text(SERVER.format(module=module))
        (mod_dir / "internal" / "reply" / "reply.go").write_text(REPLY.format(name=name))
        (mod_dir / "internal" / "reply" / "reply_test.go").write_text(
            f'package reply\n\nimport "testing"\n\nfunc TestText(t *testing.T) {{\n'
            f'\tif Text("/x") != "{name} /x" {{\n\t\tt.Fatal(Text("/x"))\n\t}}\n}}\n'
        )
        (root / "manifests").mkdir(exist_ok=True)
        image = f"{prefix}{name}"
        (root / "manifests" / f"{name}.yaml").write_text(MANIFEST.format(name=name, port=port, image=image))
        services.append({"name": name, "source": name, "main": f"./cmd/{name}", "image": image,
                         "node_port": port, "ready_path": "/ready"})  # fmt: skip
    if workspace:
        (root / "go.work").write_text("go 1.22\n\nuse (\n\t./alpha\n\t./beta\n)\n")
    (root / "suite").mkdir()
    (root / "suite" / "test_services.py").write_text(SUITE)
    config = {
        "manifests": ["manifests/alpha.yaml", "manifests/beta.yaml"],
        "services": services,
        "tests": {"path": "suite", "workers": "0", "reruns": 0},
    }
    (root / "e2e.toml").write_text(dump_toml(config))
    return root / "e2e.toml"


def run(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra", "--config", str(cfg), "e2e", "--platform", "podman", *args],
        cwd=REPO, env=harness_env(), capture_output=True, text=True, timeout=HARNESS_TIMEOUT, check=False,
    )  # fmt: skip


@pytest.fixture
def images() -> Iterator[str]:
    """This case's image names' prefix (its own: another case or test session builds others)."""
    prefix = f"localhost/e2eh-test/{secrets.token_hex(3)}-"
    yield prefix
    podman = Podman(SubprocessRunner(), podman_env(REPO / ".e2e"))
    for name in ("alpha", "beta"):
        ids = podman("images", "--quiet", "--filter", f"reference={prefix}{name}").stdout.split()
        if ids:
            podman("rmi", "--force", *sorted(set(ids)), check=False)


@pytest.mark.parametrize("workspace", [False, True], ids=["modules", "go.work"])
def test_services_of_two_modules_build_once_each_and_cover_both(
    tmp_path: Path, workspace: bool, images: str
) -> None:
    cfg = make_repo(tmp_path, workspace=workspace, prefix=images)

    out = run(cfg, "--coverage")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert lines_with(text, "ok go:alpha") and lines_with(text, "ok go:beta"), text  # one go build per module

    summary = json.loads((tmp_path / "coverage" / "e2e" / "summary.json").read_text())
    assert set(summary["services"]) == {"alpha", "beta"}
    covered = (tmp_path / "coverage" / "e2e" / "coverage.txt").read_text()
    for module in ("example.com/alpha", "example.com/beta"):
        assert f"{module}/internal/reply/reply.go" in covered, covered[:500]
    func = (tmp_path / "coverage" / "e2e" / "func.txt").read_text()
    assert lines_with(func, "example.com/alpha/internal/reply/reply.go", "Text"), func
    assert (tmp_path / "coverage" / "e2e" / "index.html").stat().st_size > 0
    # unit tests of both modules are merged in
    unit = (tmp_path / "coverage" / "e2e" / "unit.coverage.txt").read_text()
    assert "example.com/alpha/internal/reply" in unit and "example.com/beta/internal/reply" in unit
    assert summary["merged_percent"] >= summary["total_percent"] > 0

    # a change in one module's package rebuilds that service only
    reply = tmp_path / "beta" / "internal" / "reply" / "reply.go"
    reply.write_text(reply.read_text().replace('"beta " + path', '"beta " + path + ""'))
    again = run(cfg, "--coverage")
    text = again.stdout + again.stderr
    assert again.returncode == 0, text
    built = json.loads((tmp_path / "artifacts" / "latest" / "timings.json").read_text())["built"]
    assert built == {"alpha": False, "beta": True}, text
