"""A team's Go repo, generated: two modules, three services, manifests, a Dockerfile, no conftest."""

from __future__ import annotations

from pathlib import Path

SERVICE_GO = """package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

const name = "{name}"

func main() {{
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {{
		log.Printf("%s %s %s", name, r.Method, r.URL.Path)
		fmt.Fprintf(w, "%s\\n", name)
	}})
	srv := &http.Server{{Addr: ":8080", Handler: mux}}
	go func() {{
		if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {{
			log.Fatal(err)
		}}
	}}()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	<-stop
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}}
"""

WORKLOAD = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: {name}
          image: {image}
          imagePullPolicy: IfNotPresent
{extra}          ports:
            - {{name: http, containerPort: 8080}}
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  type: NodePort
  selector: {{app: {name}}}
  ports:
    - {{name: http, port: 8080, targetPort: 8080, nodePort: {node_port}}}
"""

PROBE = """          readinessProbe:
            httpGet: {{path: {path}, port: 8080}}
            periodSeconds: 1
"""

# service -> (module, main package, image, NodePort, readiness path, env/envFrom lines)
SERVICES = {
    "api": ("shop", "cmd/api", "localhost/shop/api:dev", 30181, "/ready", ""),
    "worker": ("shop", "cmd/worker", "localhost/shop/worker:dev", 30182, "",
               "          env:\n            - {name: API_URL, value: \"http://api:8080/v1\"}\n"),
    "billing": ("billing", ".", "localhost/billing:dev", 30183, "/healthz",
                "          envFrom:\n            - configMapRef: {name: billing-config}\n"),
}  # fmt: skip


def make_repo(root: Path, images: str = "localhost/") -> Path:
    """shop/ (cmd/api, cmd/worker, tools/gen: no workload), billing/ (main at the root, a Dockerfile).

    images: what the images' names start with, for a test that builds them (its own names)."""
    for module in ("shop", "billing"):
        (root / module).mkdir(parents=True)
        (root / module / "go.mod").write_text(f"module example.com/{module}\n\ngo 1.22\n")
    for name, (module, main, image, node_port, probe, env) in SERVICES.items():
        pkg = root / module / main
        pkg.mkdir(parents=True, exist_ok=True)
        (pkg / "main.go").write_text(SERVICE_GO.format(name=name))
        extra = env + (PROBE.format(path=probe) if probe else "")
        image = images + image.removeprefix("localhost/")
        manifest = WORKLOAD.format(name=name, image=image, node_port=node_port, extra=extra)
        if name == "billing":
            manifest = (
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: billing-config\n"
                'data:\n  API_ADDR: "api:8080"\n---\n' + manifest
            )
        (root / "deploy" / "k8s").mkdir(parents=True, exist_ok=True)
        (root / "deploy" / "k8s" / f"{name}.yaml").write_text(manifest)
    (root / "shop" / "tools" / "gen").mkdir(parents=True)
    (root / "shop" / "tools" / "gen" / "main.go").write_text("package main\n\nfunc main() {}\n")
    (root / "billing" / "Dockerfile").write_text("FROM golang:1.22 AS build\n")
    (root / ".github" / "workflows").mkdir(parents=True)
    (root / ".github" / "workflows" / "ci.yaml").write_text("on: push\njobs: {}\n")  # not Kubernetes
    (root / "kind.yaml").write_text("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nmetadata: {}\n")
    return root
