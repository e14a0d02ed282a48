"""A kind node image built with no container registry: Debian packages + the Go module proxy.

    versions, recipe   what goes in, as data; the cache key
    oci, builder       the build: debootstrap, Go builds, preloaded images as OCI archives
    cache              where the image comes from: podman's store, the cache archive, a build
    select             which node image a kind cluster boots

The cache key hashes versions, recipe, oci and builder byte for byte: they stay
here and import the core where it is (infra/*.py), or every cached image is rebuilt.

May import: the core (infra/*.py) only.
"""
