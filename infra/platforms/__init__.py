"""Platforms: where the stack runs (a kind cluster, any cluster, or podman alone) and how it is
brought up.

    platform          what every platform offers the run and the fixtures; choose()
    platform_kube     the Kubernetes layer kind and cluster share: apply, waits, restart, logs, diagnostics
    platform_kind     kind (podman provider): the cluster's lifecycle, archive loads, coverage via ctr
    platform_cluster  any cluster named by kubeconfig + context + registry: push, namespace, pulls
    forwards          the run's 127.0.0.1 ports as port-forwards to a Service's ready pods
    local_cluster     `inv local-cluster`: a kind cluster fed by a registry on this machine
    kind_config       the run's kind cluster config
    kube              the Kubernetes API calls the kube platforms make
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
