package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"example.com/e2e-services/internal/httpkit"
)

// How a signal was deduplicated: the signal's "dedup" field and the
// X-Dedup response header.
const (
	dedupRedis    = "redis"    // in Redis, shared by all replicas
	dedupDegraded = "degraded" // in process, because Redis failed or is being skipped after a failure
	dedupMemory   = "memory"   // in process, because REDIS_ADDR is empty
)

// headerDedup names the response header that says how a request's signals
// were deduplicated ("degraded" when any of them was).
const headerDedup = "X-Dedup"

// failoverDedup deduplicates in Redis when it is configured and healthy,
// else in process. After a Redis failure it skips Redis for retryInterval
// (one request then tries again), so an outage costs one timeout per
// interval rather than one per request.
type failoverDedup struct {
	local         *dedup
	remote        *redisDedup // nil: REDIS_ADDR is empty
	retryInterval time.Duration
	now           func() time.Time
	logger        *slog.Logger

	degraded *httpkit.Counter
	up       *httpkit.Gauge

	mu      sync.Mutex
	down    bool      // the last Redis call failed
	lastErr error     // its error, while down
	retryAt time.Time // while down, Redis is skipped until then
}

func newFailoverDedup(cfg config, now func() time.Time, reg *httpkit.Registry, logger *slog.Logger) *failoverDedup {
	f := &failoverDedup{
		local:         newDedup(cfg.DedupTTL, now),
		retryInterval: cfg.RedisRetryInterval,
		now:           now,
		logger:        logger,
		degraded:      reg.Counter("gateway_dedup_degraded_total", "Signals deduplicated in process because Redis failed or was skipped after a failure."),
		up:            reg.Gauge("gateway_redis_up", "1 when the last Redis call succeeded, 0 when it failed, before the first call, or without REDIS_ADDR."),
	}
	if cfg.RedisAddr != "" {
		f.remote = &redisDedup{
			client:  newRedisClient(cfg.RedisAddr, cfg.RedisPassword, cfg.RedisTimeout),
			ttl:     cfg.DedupTTL,
			timeout: cfg.RedisTimeout,
		}
	}
	return f
}

// observe records one sighting and says whether it is new, its count in
// the window, and how it was deduplicated (dedupRedis, dedupDegraded or
// dedupMemory).
func (f *failoverDedup) observe(ctx context.Context, namespace, fp string) (created bool, occurrences int64, mode string) {
	if f.remote == nil {
		created, occurrences = f.local.observe(namespace, fp)
		return created, occurrences, dedupMemory
	}
	if ok, _ := f.allow(); ok {
		n, left, err := f.remote.observe(ctx, namespace, fp)
		if err == nil {
			f.markUp()
			// Mirror Redis's view, so a later outage continues from it.
			age := time.Duration(0)
			if left > 0 && left <= f.local.ttl {
				age = f.local.ttl - left
			}
			f.local.set(namespace, fp, f.now().Add(-age), n)
			return n == 1, n, dedupRedis
		}
		// A client that went away is not Redis's fault: fall back for this
		// signal without tripping the circuit.
		if ctx.Err() == nil {
			f.markDown(err)
		}
	}
	f.degraded.Inc()
	created, occurrences = f.local.observe(namespace, fp)
	return created, occurrences, dedupDegraded
}

// allow reports whether to call Redis: always while it is up; while down,
// once per retryInterval (the caller is the probe, everyone else skips).
// When not, it returns the error that opened the circuit.
func (f *failoverDedup) allow() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.down {
		return true, nil
	}
	now := f.now()
	if now.Before(f.retryAt) {
		return false, f.lastErr
	}
	f.retryAt = now.Add(f.retryInterval)
	return true, nil
}

func (f *failoverDedup) markDown(err error) {
	f.mu.Lock()
	was := f.down
	f.down, f.lastErr, f.retryAt = true, err, f.now().Add(f.retryInterval)
	f.mu.Unlock()
	f.up.Set(0)
	if !was {
		f.logger.Warn("redis unavailable, deduplicating in process", "error", err.Error(),
			"retry_interval", f.retryInterval.String())
	}
}

func (f *failoverDedup) markUp() {
	f.mu.Lock()
	was := f.down
	f.down, f.lastErr = false, nil
	f.mu.Unlock()
	f.up.Set(1)
	if was {
		f.logger.Info("redis available again")
	}
}

// status is the /ready detail for Redis: "not configured", "ok" or
// "down: <error>". It pings Redis (bounded by REDIS_TIMEOUT) unless the
// circuit is open, in which case it reports the last error at once.
func (f *failoverDedup) status(ctx context.Context) string {
	if f.remote == nil {
		return "not configured"
	}
	if ok, lastErr := f.allow(); !ok {
		return "down: " + lastErr.Error()
	}
	if err := f.remote.ping(ctx); err != nil {
		if ctx.Err() == nil {
			f.markDown(err)
		}
		return "down: " + err.Error()
	}
	f.markUp()
	return "ok"
}

// close releases the Redis connections.
func (f *failoverDedup) close() error {
	if f.remote == nil {
		return nil
	}
	return f.remote.client.Close()
}
