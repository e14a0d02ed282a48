// Command datastore is the audit-event store of the E2E example: it appends
// events to $DATA_DIR/events.jsonl and serves them by correlation id.
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"example.com/e2e-services/internal/httpkit"
)

const serviceName = "datastore"

func main() {
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") { // flags are the test binary's
		os.Exit(command(os.Args[1], os.Args[2:], os.Getenv, os.Stdout))
	}
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

	version, err := checkSchema(dataDir)
	if err != nil {
		return err
	}
	store, info, err := Open(dataDir, time.Now)
	if err != nil {
		return err
	}
	defer store.Close()
	logger.Info("replayed event log", "data_dir", dataDir, "events", info.Events,
		"skipped_lines", info.SkippedLines, "truncated_bytes", info.TruncatedBytes)

	app := httpkit.NewApp(serviceName, logger)
	handler := newHandler(app, store, dataDir, getenv("WRITE_TOKEN"))
	srv := httpkit.NewServer(addr, withSchema(handler, version), logger)
	logger.Info("starting", "listen_addr", addr)
	if err := httpkit.Run(ctx, srv); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}

// command runs a one-shot subcommand: `migrate` (the migration Job) or
// `probe [path]` (an exec readiness probe: the image has no shell or curl).
func command(name string, args []string, getenv httpkit.Getenv, stdout io.Writer) int {
	logger := httpkit.NewLogger(serviceName, stdout)
	switch name {
	case "migrate":
		s, err := migrate(getenv.String("DATA_DIR", "/data"))
		if err != nil {
			logger.Error("migrate failed", "error", err.Error())
			return 1
		}
		logger.Info("migrated", "version", s.Version, "applied", s.Applied, "checksum", s.Checksum)
		return 0
	case "probe":
		path := "/ready"
		if len(args) > 0 {
			path = args[0]
		}
		addr := getenv.String("LISTEN_ADDR", ":8080")
		if strings.HasPrefix(addr, ":") {
			addr = "127.0.0.1" + addr
		}
		client := http.Client{Timeout: 2 * time.Second}
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			fmt.Fprintln(stdout, "probe:", err)
			return 1
		}
		resp.Body.Close()
		fmt.Fprintln(stdout, "probe:", resp.Status)
		if resp.StatusCode != http.StatusOK {
			return 1
		}
		return 0
	}
	logger.Error("unknown command", "command", name, "known", "migrate, probe")
	return 2
}
