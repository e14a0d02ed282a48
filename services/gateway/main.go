// Command gateway receives AlertManager webhooks and Kubernetes events,
// deduplicates them per namespace and records audit events in the datastore.
package main

import (
	"context"
	"io"
	"os"
	"time"

	"example.com/e2e-services/internal/httpkit"
	"github.com/redis/go-redis/v9"
)

const (
	serviceName = "gateway"
	// flushTimeout bounds the last outbox delivery attempt on shutdown.
	flushTimeout = 5 * time.Second
)

func main() {
	if err := run(context.Background(), os.Getenv, os.Stdout); err != nil {
		httpkit.NewLogger(serviceName, os.Stdout).Error("exiting", "error", err.Error())
		os.Exit(1)
	}
}

// run serves until ctx is cancelled or a SIGTERM/SIGINT arrives, then
// drains requests and gives the audit outbox one last bounded flush.
func run(ctx context.Context, getenv httpkit.Getenv, stdout io.Writer) error {
	logger := httpkit.NewLogger(serviceName, stdout)
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	redis.SetLogger(slogRedisLogger{logger})
	app := httpkit.NewApp(serviceName, logger)
	g := newGateway(app, cfg, time.Now)
	defer g.dedup.close()
	srv := httpkit.NewServer(cfg.ListenAddr, g.handler(app), logger)

	workerCtx, stopWorker := context.WithCancel(context.Background())
	workerDone := make(chan struct{})
	go func() {
		defer close(workerDone)
		g.outbox.run(workerCtx)
	}()

	logger.Info("starting", "listen_addr", cfg.ListenAddr, "datastore_url", cfg.DatastoreURL,
		"dedup_ttl", cfg.DedupTTL.String(), "max_body_bytes", cfg.MaxBodyBytes,
		"cors_allowed_origins", cfg.CORSOrigins, "audit_retry_interval", cfg.AuditRetryInterval.String(),
		"dedup_mode", cfg.dedupMode(), "redis_addr", cfg.RedisAddr, "redis_password_set", cfg.RedisPassword != "",
		"redis_timeout", cfg.RedisTimeout.String(), "redis_retry_interval", cfg.RedisRetryInterval.String())

	// One bounded check at start, so gateway_redis_up and a warning about an
	// unreachable Redis do not wait for the first signal or readiness probe.
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		g.dedup.status(workerCtx)
	}()
	runErr := httpkit.Run(ctx, srv)
	<-probeDone

	// Handlers have finished, so nothing enqueues any more.
	stopWorker()
	<-workerDone
	flushCtx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	if !g.outbox.flush(flushCtx) {
		logger.Warn("audit events not delivered before exit", "pending", g.outbox.len())
	}
	if runErr == nil {
		logger.Info("stopped")
	}
	return runErr
}
