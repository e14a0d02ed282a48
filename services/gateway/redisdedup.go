package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// redisKeyPrefix starts every dedup key: gateway:dedup:<namespace>:<fingerprint>.
const redisKeyPrefix = "gateway:dedup:"

// redisDedup keeps the dedup state in Redis, shared by all gateway
// replicas: one counter per namespace+fingerprint that expires ttl after
// the first sighting.
type redisDedup struct {
	client  *redis.Client
	ttl     time.Duration
	timeout time.Duration
}

// newRedisClient configures go-redis to fail fast, since every failure has
// an in-process fallback: no command retries, a single dial attempt, and
// dial, read, write and pool waits bounded by timeout.
func newRedisClient(addr, password string, timeout time.Duration) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:     addr,
		Password: password,
		// go-redis reads 0 as "default" (3 retries, 5 dial attempts); -1
		// disables command retries, and 1 is the smallest number of dial
		// attempts.
		MaxRetries:            -1,
		DialerRetries:         1,
		DialTimeout:           timeout,
		ReadTimeout:           timeout,
		WriteTimeout:          timeout,
		PoolTimeout:           timeout,
		ContextTimeoutEnabled: true, // our per-operation deadline applies to socket I/O too
		// One pool: a pipeline that cannot dial in the dedicated pipeline
		// pool would otherwise dial again in the main pool.
		PipelinePoolSize: -1,
		// Nothing to negotiate on connect beyond HELLO/AUTH: no CLIENT
		// SETINFO, no maintenance-notification handshake.
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
}

// observe records one sighting: INCR and PEXPIRE ... NX in one MULTI/EXEC,
// so the count is exact across replicas and the window starts at the first
// sighting (later sightings do not extend it). It also returns how much of
// the window is left (PTTL), from which the caller mirrors the entry in
// process.
func (r *redisDedup) observe(ctx context.Context, namespace, fp string) (occurrences int64, left time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	key := dedupKey(namespace, fp)
	var incr *redis.IntCmd
	var pttl *redis.DurationCmd
	_, err = r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		incr = p.Incr(ctx, key)
		// go-redis has no PExpireNX; NX needs Redis >= 7.0.
		p.Do(ctx, "pexpire", key, max(r.ttl.Milliseconds(), 1), "nx")
		pttl = p.PTTL(ctx, key)
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	return incr.Val(), pttl.Val(), nil
}

// ping checks that Redis answers, within the timeout.
func (r *redisDedup) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	return r.client.Ping(ctx).Err()
}

// safeKeyPart is what goes into a key verbatim: no ':' (the separator), no
// spaces or control characters, bounded length. Namespaces and the 64-hex
// fingerprints always match.
var safeKeyPart = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

// dedupKey is gateway:dedup:<namespace>:<fingerprint>. A part that is not
// safe is replaced by '#' and its SHA-256 in hex; '#' never occurs in a
// safe part, so an escaped part cannot collide with a verbatim one.
func dedupKey(namespace, fp string) string {
	return redisKeyPrefix + keyPart(namespace) + ":" + keyPart(fp)
}

func keyPart(s string) string {
	if safeKeyPart.MatchString(s) {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "#" + hex.EncodeToString(sum[:])
}

// slogRedisLogger routes go-redis's internal log lines (mostly repeated
// dial failures) to the JSON log at debug level: the gateway logs the
// outage and the recovery itself, once each.
type slogRedisLogger struct{ logger *slog.Logger }

func (l slogRedisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.logger.DebugContext(ctx, "go-redis", "detail", fmt.Sprintf(format, v...))
}
