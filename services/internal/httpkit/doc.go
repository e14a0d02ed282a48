// Package httpkit holds the HTTP plumbing shared by the datastore and the
// gateway: JSON logging, request ids, problem+json errors, a small
// Prometheus text registry, routing with 404/405, CORS and graceful run.
// Standard library only, so the binaries stay static and run FROM scratch.
package httpkit
