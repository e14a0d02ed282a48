package httpkit

import (
	"io"
	"log/slog"
)

// NewLogger returns a JSON logger whose every line carries the service name,
// so logs from both services can be told apart once aggregated.
func NewLogger(service string, w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, nil)).With("service", service)
}
