"""`inv local-cluster up|down`: a kind cluster fed by a registry, for `--platform cluster` on one machine.

The pair ctlptl makes (`ctlptl create registry` + `create cluster kind --registry=`), as kind's
local-registry guide wires it: the registry runs in a container on kind's podman network (the nodes
cannot reach the host's 127.0.0.1) and is published on 127.0.0.1:<port> for podman's pushes; each
node's containerd maps `localhost:<port>` to it (`config_path` + a hosts.toml), and the
`local-registry-hosting` ConfigMap (KEP-1755) tells tools where it is.

It is the user's cluster, not a run's: its name does not carry the run prefix, so no cleanup of
stale runs removes it; `down` does. Its kubeconfig lives under the user's cache dir, never in
~/.kube/config.
"""

from __future__ import annotations

import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

from infra import waits
from infra.builds import registry
from infra.console import say
from infra.kind_cli import run_kind
from infra.names import LOCAL_CLUSTER_LABEL, check_dns_label
from infra.paths import user_cache
from infra.platforms import hostfixes, kind_config
from infra.podman_cli import Podman
from infra.proc import Runner

NAME = "e2e-local"
PORT = 5001
NETWORK = "kind"  # kind's podman network: where its nodes resolve the registry by name
CERTS_DIR = "/etc/containerd/certs.d"
CONFIG_PATH_PATCH = f"""\
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "{CERTS_DIR}"
"""
CREATE_TIMEOUT = 600.0
REGISTRY_READY_SECONDS = 30.0


class LocalClusterError(Exception):
    pass


@dataclass(frozen=True)
class LocalCluster:
    name: str = NAME
    port: int = PORT

    @property
    def registry_container(self) -> str:
        return f"{self.name}-registry"

    @property
    def registry(self) -> str:
        """As podman pushes to it and as pods name their images: the nodes map it to the container."""
        return f"localhost:{self.port}"

    @property
    def context(self) -> str:
        return f"kind-{self.name}"

    @property
    def kubeconfig(self) -> Path:
        return user_cache("local-cluster") / self.name / "kubeconfig"

    def exports(self) -> list[str]:
        """What points `--platform cluster` at this pair, as shell lines to paste."""
        env = {
            "E2E_KUBECONFIG": str(self.kubeconfig),
            "E2E_CONTEXT": self.context,
            "E2E_REGISTRY": self.registry,
            "E2E_INSECURE_REGISTRY": "true",
        }
        return [f"export {k}={shlex.quote(v)}" for k, v in env.items()]

    def hosts_toml(self) -> str:
        return (
            f'server = "http://{self.registry}"\n\n'
            f'[host."http://{self.registry_container}:{registry.PORT}"]\n'
            '  capabilities = ["pull", "resolve"]\n'
        )

    def hosting_configmap(self) -> dict[str, object]:
        """KEP-1755: where tools push for this cluster."""
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "local-registry-hosting", "namespace": "kube-public"},
            "data": {"localRegistryHosting.v1": f'host: "{self.registry}"\nhelp: "inv local-cluster"\n'},
        }


def _kind(runner: Runner, podman: Podman, *args: str, timeout: float = 120.0, check: bool = True) -> str:
    return run_kind(runner, podman, "podman", *args, timeout=timeout, check=check).stdout


def _clusters(runner: Runner, podman: Podman) -> list[str]:
    return _kind(runner, podman, "get", "clusters").split()


def _registry_running(podman: Podman, lc: LocalCluster) -> bool:
    res = podman("container", "inspect", "--format", "{{.State.Running}}", lc.registry_container, check=False)
    return res.returncode == 0 and res.stdout.strip() == "true"


def status(runner: Runner, podman: Podman, lc: LocalCluster) -> tuple[bool, bool]:
    """(the cluster exists, its registry runs)."""
    return lc.name in _clusters(runner, podman), _registry_running(podman, lc)


def up(runner: Runner, podman: Podman, lc: LocalCluster, *, workers: int = 0) -> list[str]:
    """Make the pair, or say it is up; returns what was done, one line each."""
    check_dns_label("cluster", lc.name)
    done: list[str] = []
    has_cluster, has_registry = status(runner, podman, lc)
    if not has_cluster:
        if lc.kubeconfig.exists():
            lc.kubeconfig.unlink()
        _create_cluster(runner, podman, lc, workers)
        done.append(f"created kind cluster {lc.name} ({1 + workers} node(s))")
    else:
        lc.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        _kind(runner, podman, "export", "kubeconfig", "--name", lc.name, "--kubeconfig", str(lc.kubeconfig))
    if not has_registry:
        _start_registry(runner, podman, lc)
        done.append(f"started registry {lc.registry_container} on 127.0.0.1:{lc.port} (network {NETWORK})")
    _wire_nodes(runner, podman, lc)
    _apply_hosting(lc)
    lc.kubeconfig.chmod(0o600)
    return done or [f"already up: kind cluster {lc.name} and registry {lc.registry}"]


def _create_cluster(runner: Runner, podman: Podman, lc: LocalCluster, workers: int) -> None:
    from infra.nodeimage import select

    note = hostfixes.ensure_lib_modules()
    if note:
        say(f"host fix: {note}")
    fixes = hostfixes.detect()
    choice = select.node_image(runner, podman, "")
    doc = kind_config.render(
        kind_config.load_base(kind_config.HARNESS_BASE),
        workers=workers,
        host_ports={},
        mounts={},
        kubeadm_patches=[f.kubeadm_patch for f in fixes if f.kubeadm_patch],
        containerd_patches=[*(f.containerd_patch for f in fixes if f.containerd_patch), CONFIG_PATH_PATCH],
    )
    lc.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    cfg_file = kind_config.dump(doc, lc.kubeconfig.parent / "kind-config.yaml")
    say(f"kind node image: {choice.image} ({choice.reason})")
    _kind(
        runner, podman, "create", "cluster", "--name", lc.name, "--config", str(cfg_file),
        "--kubeconfig", str(lc.kubeconfig), "--image", choice.image, "--wait", "120s",
        timeout=CREATE_TIMEOUT,
    )  # fmt: skip


def _start_registry(runner: Runner, podman: Podman, lc: LocalCluster) -> None:
    ref = registry.image(runner, podman)
    podman("rm", "--force", "--ignore", lc.registry_container)  # a stopped one of an earlier `up`
    podman(
        "run", "--detach", "--name", lc.registry_container, "--network", NETWORK,
        "--publish", f"127.0.0.1:{lc.port}:{registry.PORT}",
        "--label", f"{LOCAL_CLUSTER_LABEL}={lc.name}", str(ref),
        hint=f"is 127.0.0.1:{lc.port} taken? pick another with `inv local-cluster up --port N`",
    )  # fmt: skip
    url = f"http://127.0.0.1:{lc.port}/v2/"

    waits.poll(
        f"registry {lc.registry_container} to answer {url}",
        waits.http_probe(url),
        timeout=REGISTRY_READY_SECONDS,
        interval=0.2,
        hint=f"podman logs {lc.registry_container}",
    )


def _nodes(runner: Runner, podman: Podman, lc: LocalCluster) -> list[str]:
    names = _kind(runner, podman, "get", "nodes", "--name", lc.name).split()
    return [check_dns_label("node", n) for n in names]


def _wire_nodes(runner: Runner, podman: Podman, lc: LocalCluster) -> None:
    """Each node's containerd pulls `localhost:<port>/...` from the registry's container."""
    host_dir = f"{CERTS_DIR}/{lc.registry}"
    with tempfile.TemporaryDirectory(prefix="e2eh-hosts-") as tmp:
        hosts = Path(tmp) / "hosts.toml"
        hosts.write_text(lc.hosts_toml())
        for node in _nodes(runner, podman, lc):
            podman("exec", node, "mkdir", "-p", host_dir)
            podman("cp", str(hosts), f"{node}:{host_dir}/hosts.toml")


def _apply_hosting(lc: LocalCluster) -> None:
    from infra.platforms.kube import RealKubeApi

    doc = lc.hosting_configmap()
    RealKubeApi(lc.kubeconfig).apply(doc, "kube-public")


def down(runner: Runner, podman: Podman, lc: LocalCluster) -> list[str]:
    check_dns_label("cluster", lc.name)
    done = []
    if lc.name in _clusters(runner, podman):
        _kind(runner, podman, "delete", "cluster", "--name", lc.name, timeout=CREATE_TIMEOUT)
        done.append(f"deleted kind cluster {lc.name}")
    if podman("container", "exists", lc.registry_container, check=False).returncode == 0:
        podman("rm", "--force", "--time", "2", lc.registry_container)
        done.append(f"removed registry {lc.registry_container}")
    if lc.kubeconfig.parent.exists():
        for path in lc.kubeconfig.parent.iterdir():
            path.unlink()
        lc.kubeconfig.parent.rmdir()
    return done or [f"nothing to remove: no kind cluster {lc.name}, no registry {lc.registry_container}"]
