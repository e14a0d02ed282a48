"""An image laid out like a team's Dockerfile, with no base image: two mains, a ui/ directory,
a working directory, a named user; the manifest's `command: [./server]` and its exec probe calling
the second binary on PATH find what they run. Made by the test, run for real on podman."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faultkit import RootFactory, deployment_yaml, dump_toml, service_yaml

pytestmark = [pytest.mark.podman, pytest.mark.slow]

SERVER = """\
package main

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ui, err := os.ReadFile("ui/index.html") // relative: the image's WORKDIR
	if err != nil {
		fmt.Println("no ui:", err)
		os.Exit(3)
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.Write(ui) })
	http.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "uid %d", os.Getuid())
	})
	srv := &http.Server{Addr: ":9898"}
	go srv.ListenAndServe()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
}
"""
CLI = """\
package main

import (
	"net/http"
	"os"
)

func main() { // cli check http URL: exit 0 when it answers 200
	if len(os.Args) != 4 || os.Args[1] != "check" {
		os.Exit(2)
	}
	resp, err := http.Get(os.Args[3])
	if err != nil || resp.StatusCode != 200 {
		os.Exit(1)
	}
}
"""
DOCKERFILE = """\
FROM golang:1.26 AS builder
WORKDIR /src
COPY . .
RUN CGO_ENABLED=0 go build -o /out/server ./cmd/server && CGO_ENABLED=0 go build -o /out/cli ./cmd/cli

FROM alpine:3.22
RUN adduser -D app
WORKDIR /home/app
COPY --from=builder /out/server ./server
COPY --from=builder /out/cli /usr/local/bin/cli
COPY ui ./ui
USER app
CMD ["./server"]
"""
WEB_PORT = ("http", 9898)
PROBE = ("cli", "check", "http", "http://127.0.0.1:9898/readyz")


def web_manifest(probe: tuple[str, ...] = PROBE) -> str:
    """The web Deployment (runs ./server, its exec probe calls the second binary) and its NodePort."""
    image = "localhost/team/web:dev"
    web = deployment_yaml(
        "web", image, port=WEB_PORT, command=["./server"], exec_probe=probe, pull_never=True
    )
    return web + "---\n" + service_yaml("web", WEB_PORT, node_port=30898)


SUITE = """\
def test_the_ui_is_served_from_the_copied_directory(service_url, http):
    assert http.get(service_url("web") + "/").text == "<h1>orders</h1>"


def test_it_runs_as_the_named_user(service_url, http):
    assert http.get(service_url("web") + "/readyz").text == "uid 10001"
"""


def make_repo(repo: Path) -> None:
    for rel, text in {
        "go.mod": "module example.com/web\n\ngo 1.22\n",
        "cmd/server/main.go": SERVER,
        "cmd/cli/main.go": CLI,
        "ui/index.html": "<h1>orders</h1>",
        "Dockerfile": DOCKERFILE,
        "deploy/web.yaml": web_manifest(),
        "e2e/test_web.py": SUITE,
    }.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    config = {
        "manifests": ["deploy/web.yaml"],
        "services": [{
            "name": "web", "source": ".", "main": "./cmd/server", "image": "localhost/team/web",
            "node_port": 30898, "ready_path": "/readyz",
            "layout": {
                "binary": "/home/app/server", "binaries": {"/usr/local/bin/cli": "./cmd/cli"},
                "files": {"/home/app/ui": "ui"}, "workdir": "/home/app", "user": "app", "cmd": ["./server"],
                "entrypoint": [],
            },
        }],
        "tests": {"path": "e2e"},
    }  # fmt: skip
    (repo / "e2e.toml").write_text(dump_toml(config))


def test_a_repo_laid_out_like_its_dockerfile_runs_as_it_is(roots: RootFactory) -> None:
    root = roots.make("laid-out")
    make_repo(root.path)

    out = root.harness("e2e", "--platform", "podman", timeout=300)

    assert out.code == 0, str(out) + root.path.joinpath("e2e.toml").read_text()
    assert "2 passed" in out.output, str(out)
    assert root.leftovers(out.run_id) == [], str(out)


def test_a_program_the_layout_does_not_hold_is_refused_before_anything_is_built(roots: RootFactory) -> None:
    root = roots.make("laid-out-missing")
    make_repo(root.path)
    (root.path / "deploy" / "web.yaml").write_text(web_manifest(("podcli", *PROBE[1:])))

    out = root.harness("e2e", "--platform", "podman", timeout=60)

    assert out.code == 2, str(out)
    assert (
        "its readiness probe (exec) runs 'podcli', which the image the harness builds for service 'web' "
        "does not hold (it holds /home/app/server, /home/app/ui, /usr/local/bin/cli)" in out.output
    ), str(out)


def test_a_containerfiles_base_image_that_cannot_be_had_is_refused_before_any_build(
    roots: RootFactory,
) -> None:
    root = roots.make("base-missing")
    containerfile = root.path / "Containerfile"
    containerfile.write_text(
        "FROM docker.io/library/golang:1.26-e2eh-absent AS build\nCOPY . /src\n"
        "FROM scratch\nCOPY --from=build /src/gateway /app\n"
    )
    root.service("gateway", containerfile=str(containerfile))

    out = root.e2e("-k", "smoke", timeout=120)

    assert out.code == 4, str(out)
    assert "phase 'images:third-party' failed" in out.output, str(out)
    assert (
        f"docker.io/library/golang:1.26-e2eh-absent (used by FROM in {containerfile} (service 'gateway'))"
        in out.output
    ), str(out)
    assert "podman pull docker.io/library/golang:1.26-e2eh-absent" in out.output, str(out)
    assert "> build:gateway" not in out.output, str(out)
    assert root.leftovers(out.run_id) == [], str(out)
