"""What the node image is made of, as data: names, Go modules and flags, the cache key.

Nothing here runs a command, so the recipe is tested without building.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from infra.images import ImageRef
from infra.nodeimage import versions as v
from infra.paths import user_cache

HERE = Path(__file__).resolve().parent
FILES = HERE / "files"
"""Copied over the node's root filesystem as they are."""
GOSRC = HERE / "gosrc"
PODNET = HERE / "podnet"
"""The pod network agent: a script run from a preloaded image by a DaemonSet."""
PODNET_IMAGE = "localhost/e2e-harness/kind-podnet:node-image"
"""As /kind/manifests/default-cni.yaml names it."""
STORAGE_IMAGE = "localhost/e2e-harness/kind-local-path-provisioner:node-image"
STORAGE_HELPER_IMAGE = "localhost/e2e-harness/kind-local-path-helper:node-image"
"""As /kind/manifests/default-storage.yaml names them: the provisioner, and the image of its helper pods
(the node's Debian: `sh`, `mkdir -m 0777`, `rm -rf`), as kind's own node image ships them."""
RECIPE_SOURCES = ("versions.py", "recipe.py", "oci.py", "builder.py")
"""The modules that decide what goes into the image: changing one changes the key."""

REPOSITORY = "localhost/e2e-harness/kind-node"
BUILD_REPOSITORY = "localhost/e2e-harness/kind-node-build"
KEY_LABEL = "io.e2e-harness.node-image-key"
REGISTRY = "registry.k8s.io"

KUBE_COMMANDS = (
    "kubeadm",
    "kubelet",
    "kubectl",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
)
NODE_BINARIES = ("kubeadm", "kubelet", "kubectl", "crictl")
"""Installed in the node's /usr/bin; the rest run from the preloaded images."""
CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
KUBE_GO_TAGS = "selinux,notest,grpcnotrace"


def kube_image(name: str) -> str:
    return f"{REGISTRY}/{name}:{v.KUBERNETES}"


def harness_images() -> tuple[str, ...]:
    """The images of the harness's own node parts (/kind/manifests), made from the layers above."""
    return (PODNET_IMAGE, STORAGE_IMAGE, STORAGE_HELPER_IMAGE)


def preloaded_images() -> dict[str, str]:
    """Image name -> the binary it runs (what kubeadm and containerd will ask for)."""
    images = {kube_image(c): c for c in (*CONTROL_PLANE, "kube-proxy")}
    images[f"{REGISTRY}/etcd:{v.ETCD_IMAGE_TAG}"] = "etcd"
    images[f"{REGISTRY}/coredns/coredns:{v.COREDNS}"] = "coredns"
    images[f"{REGISTRY}/pause:{v.PAUSE_IMAGE_TAG}"] = "pause"
    return images


def version_ldflags() -> str:
    """kubeadm refuses a control plane it cannot version; stamp every binary alike."""
    major, minor = v.KUBERNETES.removeprefix("v").split(".")[:2]
    fields = {
        "gitMajor": major,
        "gitMinor": minor,
        "gitVersion": v.KUBERNETES,
        "gitCommit": "0" * 40,
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
    }
    pkgs = ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
    return " ".join(f"-X {pkg}.{k}={val}" for pkg in pkgs for k, val in fields.items())


@dataclass(frozen=True)
class GoModule:
    """A scratch module that requires one upstream module and builds its commands."""

    name: str
    require: str  # module@version
    packages: tuple[str, ...]
    output: str  # a file name, or "" for a directory of commands
    replaces: tuple[str, ...] = ()
    ldflags: str = "-s -w"
    tags: str = ""

    def go_mod(self) -> str:
        mod, version = self.require.split("@")
        text = f"module e2e-harness.local/node-image/{self.name}\n\ngo 1.26.0\n\nrequire {mod} {version}\n"
        if self.replaces:
            text += "\nreplace (\n" + "".join(f"\t{r}\n" for r in self.replaces) + ")\n"
        return text

    def build_args(self, out_dir: Path) -> list[str]:
        argv = ["go", "build", "-v", "-trimpath", "-ldflags", self.ldflags]
        if self.tags:
            argv += ["-tags", self.tags]
        target = out_dir / self.output if self.output else out_dir
        return [*argv, "-o", f"{target}{'' if self.output else '/'}", *self.packages]


def go_modules() -> tuple[GoModule, ...]:
    return (
        GoModule(
            "kubernetes",
            f"k8s.io/kubernetes@{v.KUBERNETES}",
            tuple(f"k8s.io/kubernetes/cmd/{c}" for c in KUBE_COMMANDS),
            "",
            replaces=tuple(f"k8s.io/{m} => k8s.io/{m} {v.STAGING}" for m in v.STAGING_MODULES),
            ldflags="-s -w " + version_ldflags(),
            tags=KUBE_GO_TAGS,
        ),
        GoModule("etcd", f"go.etcd.io/etcd/server/v3@{v.ETCD}", ("go.etcd.io/etcd/server/v3",), "etcd"),
        GoModule(
            "cri-tools",
            f"sigs.k8s.io/cri-tools@{v.CRI_TOOLS}",
            ("sigs.k8s.io/cri-tools/cmd/crictl",),
            "crictl",
            ldflags=f"-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version={v.CRI_TOOLS}",
        ),
        GoModule(
            "coredns", f"github.com/coredns/coredns@{v.COREDNS}", ("github.com/coredns/coredns",), "coredns"
        ),
        GoModule(
            "local-path-provisioner",
            f"github.com/rancher/local-path-provisioner@{v.LOCAL_PATH_PROVISIONER}",
            ("github.com/rancher/local-path-provisioner",),
            "local-path-provisioner",
        ),
    )


GO_ENV = {"CGO_ENABLED": "0", "GOFLAGS": "-mod=mod", "GOOS": "linux", "GOARCH": "amd64"}


def debootstrap_args(target: Path) -> list[str]:
    return [
        "debootstrap",
        "--variant=minbase",
        "--include=" + ",".join(v.DEBIAN_PACKAGES),
        v.DEBIAN_SUITE,
        str(target),
        v.DEBIAN_MIRROR,
    ]


def _hash_files(h: hashlib._Hash, root: Path, paths: list[Path]) -> None:
    for path in sorted(paths):
        rel = path.relative_to(root).as_posix()
        h.update(f"{rel}\0{oct(path.stat().st_mode & 0o777)}\0".encode())
        h.update(path.read_bytes())
        h.update(b"\0")


def rootfs_key() -> str:
    """What debootstrap produces depends only on these."""
    data = json.dumps([v.DEBIAN_SUITE, v.DEBIAN_MIRROR, sorted(v.DEBIAN_PACKAGES)]).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def cache_key() -> str:
    """The pinned versions and every file that defines the recipe."""
    h = hashlib.sha256(json.dumps(v.pins(), sort_keys=True).encode())
    files = [p for p in (*FILES.rglob("*"), *GOSRC.rglob("*"), *PODNET.rglob("*")) if p.is_file()]
    _hash_files(h, HERE, files + [HERE / name for name in RECIPE_SOURCES])
    return h.hexdigest()[:16]


def image_ref(key: str | None = None) -> ImageRef:
    return ImageRef(REPOSITORY, f"{v.KUBERNETES}-{key or cache_key()}")


def cache_dir() -> Path:
    return user_cache("node-image")


def archive_path(key: str | None = None) -> Path:
    return cache_dir() / f"kind-node-{v.KUBERNETES}-{key or cache_key()}.tar.zst"


def rootfs_archive() -> Path:
    return cache_dir() / f"debootstrap-{v.DEBIAN_SUITE}-{rootfs_key()}.tar"


KUBE_PROXY_SKIP = (
    "usr/share/doc/",
    "usr/share/man/",
    "usr/share/locale/",
    "usr/share/info/",
    "var/cache/",
    "var/lib/apt/",
    "usr/bin/containerd",
    "usr/bin/ctr",
    "usr/sbin/runc",
    "usr/lib/cni/",
    "usr/lib/systemd/",
    "lib/systemd/",
    "usr/bin/systemd",
    "usr/bin/journalctl",
)
"""kube-proxy's image is the node's Debian (for iptables) without what only the node runs."""


def kube_proxy_skips(name: str) -> bool:
    return name.startswith(KUBE_PROXY_SKIP)
