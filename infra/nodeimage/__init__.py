"""A kind node image built with no container registry: Debian packages + the Go module proxy."""
