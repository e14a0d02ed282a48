"""Cleanup: what earlier runs left behind (only what the harness made), and which runs are alive.

    cleanup   stale kind clusters, podman containers, networks, images, archives
    runlock   the flock a live run holds, the marker a kept stack leaves

May import: the core (infra/*.py) and infra.nodeimage.
"""
