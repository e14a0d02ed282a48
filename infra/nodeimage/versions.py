"""Every version the node image is made of, in one place (part of its cache key)."""

from __future__ import annotations

KIND = "v0.33.0"
"""The kind CLI the harness is tested with (`go install sigs.k8s.io/kind@KIND`)."""

KUBERNETES = "v1.37.2"
STAGING = "v0.37.2"
"""k8s.io/<staging module> version that ships with KUBERNETES."""

ETCD = "v3.7.0"
ETCD_IMAGE_TAG = "3.7.0-0"
COREDNS = "v1.14.6"
CRI_TOOLS = "v1.37.0"
"""crictl, for `kind export logs` and for people debugging a node."""
PAUSE_IMAGE_TAG = "3.10.2"
LOCAL_PATH_PROVISIONER = "v0.0.30"  # kind's default StorageClass: rancher's, as kind ships it
"""kubeadm's names for them (cmd/kubeadm/app/constants); containerd's sandbox_image uses the pause."""

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_PACKAGES = (
    "systemd",
    "containerd",
    "runc",
    "containernetworking-plugins",
    "iptables",
    "iproute2",
    "util-linux",
    "mount",
    "kmod",
    "ethtool",
    "socat",
    "conntrack",
    "ca-certificates",
    "procps",
    "jq",
    "libseccomp2",
)
"""On top of debootstrap --variant=minbase: what kubelet, containerd and kind's calls need."""

# The staging modules k8s.io/kubernetes replaces with ./staging; each is served at STAGING.
# (sample-cli-plugin and sample-controller are not required and not served.)
STAGING_MODULES = (
    "api",
    "apiextensions-apiserver",
    "apimachinery",
    "apiserver",
    "cli-runtime",
    "client-go",
    "cloud-provider",
    "cluster-bootstrap",
    "code-generator",
    "component-base",
    "component-helpers",
    "controller-manager",
    "cri-api",
    "cri-client",
    "cri-streaming",
    "csi-translation-lib",
    "dynamic-resource-allocation",
    "endpointslice",
    "externaljwt",
    "kms",
    "kube-aggregator",
    "kube-controller-manager",
    "kube-proxy",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "metrics",
    "mount-utils",
    "pod-security-admission",
    "sample-apiserver",
    "streaming",
)


def pins() -> dict[str, object]:
    """Everything above, for the cache key and artifacts/node-image.json."""
    return {
        "kind": KIND,
        "kubernetes": KUBERNETES,
        "staging": STAGING,
        "etcd": ETCD,
        "etcd_image_tag": ETCD_IMAGE_TAG,
        "coredns": COREDNS,
        "cri_tools": CRI_TOOLS,
        "pause_image_tag": PAUSE_IMAGE_TAG,
        "local_path_provisioner": LOCAL_PATH_PROVISIONER,
        "debian_suite": DEBIAN_SUITE,
        "debian_mirror": DEBIAN_MIRROR,
        "debian_packages": list(DEBIAN_PACKAGES),
        "staging_modules": list(STAGING_MODULES),
    }
