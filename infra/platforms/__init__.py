"""Platforms: where the stack runs (a kind cluster, or podman alone) and how it is brought up.

    platform          what every platform offers the run and the fixtures; choose()
    platform_kind     kind (podman provider): cluster, load, deploy via the Kubernetes API
    kind_config       the run's kind cluster config
    kube              the Kubernetes API calls the kind platform makes
    hostfixes         host conditions a kind node cannot cope with, patched where found
    platform_podman   the same manifests run with podman alone
    podman_hosts      podman's service names without DNS: the pods' fixed addresses, /etc/hosts
    podman_fields     what the podman platform does with every manifest field
    podman_security   a securityContext as podman run options
    manifests         the stack's YAML, rendered with the run's image refs
    ports             the 127.0.0.1 ports the NodePorts are published on
    stack             a run's stack: its platform, its setup DAG, rebuilt from a state file

May import: the core (infra/*.py), infra.nodeimage, infra.cleanup, infra.builds
and infra.gocover.coverflush (flushing counters of running services).
"""
