// Command datastore is the audit-event store of the E2E example: it keeps
// events in PostgreSQL and serves them by correlation id.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

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

// openPool configures the database pool from DATABASE_URL and the libpq
// variables (PGHOST, PGUSER, PGPASSWORD, ...); it connects on first use, so
// the server starts, and says it is not ready, while the database is down.
func openPool(getenv httpkit.Getenv) (*pgxpool.Pool, time.Duration, error) {
	timeout, err := getenv.Duration("DB_TIMEOUT", 2*time.Second)
	if err != nil {
		return nil, 0, err
	}
	cfg, err := pgxpool.ParseConfig(getenv("DATABASE_URL"))
	if err != nil {
		return nil, 0, fmt.Errorf("DATABASE_URL or the PG* environment: %w", err)
	}
	cfg.ConnConfig.ConnectTimeout = timeout
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	return pool, timeout, err
}

// openStore is the store on the configured database, with the schema this build embeds.
func openStore(getenv httpkit.Getenv) (*pgStore, time.Duration, error) {
	want, err := wantSchema()
	if err != nil {
		return nil, 0, err
	}
	pool, timeout, err := openPool(getenv)
	if err != nil {
		return nil, 0, err
	}
	return &pgStore{pool: pool, want: want}, timeout, nil
}

func dbAttrs(pool *pgxpool.Pool) []any {
	c := pool.Config().ConnConfig
	return []any{"db_host", c.Host, "db_port", c.Port, "db_name", c.Database, "db_user", c.User}
}

// run serves until ctx is cancelled or a SIGTERM/SIGINT arrives.
func run(ctx context.Context, getenv httpkit.Getenv, stdout io.Writer) error {
	logger := httpkit.NewLogger(serviceName, stdout)
	addr := getenv.String("LISTEN_ADDR", ":8080")
	store, timeout, err := openStore(getenv)
	if err != nil {
		return err
	}
	defer store.pool.Close()
	pool, want := store.pool, store.want

	app := httpkit.NewApp(serviceName, logger)
	handler := newHandler(app, store, timeout, getenv("WRITE_TOKEN"))
	srv := httpkit.NewServer(addr, withSchema(handler, want), logger)
	logger.Info("starting", append([]any{"listen_addr", addr, "schema", want.Checksum}, dbAttrs(pool)...)...)
	if err := httpkit.Run(ctx, srv); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}

// command runs a one-shot subcommand: `migrate` (the migration Job) or
// `probe [path]` (an exec probe: the image has no shell or curl).
func command(name string, args []string, getenv httpkit.Getenv, stdout io.Writer) int {
	logger := httpkit.NewLogger(serviceName, stdout)
	switch name {
	case "migrate":
		if err := runMigrate(getenv, logger); err != nil {
			logger.Error("migrate failed", "error", err.Error())
			return 1
		}
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

// runMigrate waits up to MIGRATE_WAIT for the database (it may still be
// starting beside the Job), then applies the embedded migrations.
func runMigrate(getenv httpkit.Getenv, logger *slog.Logger) error {
	wait, err := getenv.Duration("MIGRATE_WAIT", 60*time.Second)
	if err != nil {
		return err
	}
	store, timeout, err := openStore(getenv)
	if err != nil {
		return err
	}
	defer store.pool.Close()
	pool, want := store.pool, store.want
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for attempt := 1; ; attempt++ {
		pingCtx, stop := context.WithTimeout(ctx, timeout)
		err = pool.Ping(pingCtx)
		stop()
		if err == nil {
			break
		}
		if attempt%10 == 1 { // a line a second: it polls every 100 ms
			logger.Info("waiting for the database", append([]any{"attempt", attempt, "error", err.Error()}, dbAttrs(pool)...)...)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the database did not answer within MIGRATE_WAIT=%s: %w", wait, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	done, err := migrate(ctx, pool, want)
	if err != nil {
		return err
	}
	logger.Info("migrated", "version", want.Version, "applied_now", done, "checksum", want.Checksum)
	return nil
}
