// Command datastore is the audit-event store of the E2E example: it appends
// events to $DATA_DIR/events.jsonl and serves them by correlation id.
package main

import (
	"context"
	"io"
	"os"
	"time"

	"example.com/e2e-services/internal/httpkit"
)

const serviceName = "datastore"

func main() {
	if err := run(context.Background(), os.Getenv, os.Stdout); err != nil {
		httpkit.NewLogger(serviceName, os.Stdout).Error("exiting", "error", err.Error())
		os.Exit(1)
	}
}

// run serves until ctx is cancelled or a SIGTERM/SIGINT arrives.
func run(ctx context.Context, getenv httpkit.Getenv, stdout io.Writer) error {
	logger := httpkit.NewLogger(serviceName, stdout)
	addr := getenv.String("LISTEN_ADDR", ":8080")
	dataDir := getenv.String("DATA_DIR", "/data")

	store, info, err := Open(dataDir, time.Now)
	if err != nil {
		return err
	}
	defer store.Close()
	logger.Info("replayed event log", "data_dir", dataDir, "events", info.Events,
		"skipped_lines", info.SkippedLines, "truncated_bytes", info.TruncatedBytes)

	app := httpkit.NewApp(serviceName, logger)
	srv := httpkit.NewServer(addr, newHandler(app, store, dataDir), logger)
	logger.Info("starting", "listen_addr", addr)
	if err := httpkit.Run(ctx, srv); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}
