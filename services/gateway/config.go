package main

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"example.com/e2e-services/internal/httpkit"
)

// config is the gateway's environment, see API.md.
type config struct {
	ListenAddr         string
	DatastoreURL       string // no trailing slash
	DedupTTL           time.Duration
	MaxBodyBytes       int64
	CORSOrigins        []string
	AuditRetryInterval time.Duration
	DatastoreToken     string // sent as a bearer token with every audit event

	// Redis holds the dedup state shared by all replicas. RedisAddr empty:
	// in-process dedup only.
	RedisAddr          string // host:port
	RedisPassword      string
	RedisTimeout       time.Duration // bounds every Redis operation, connecting included
	RedisRetryInterval time.Duration // after a failure, Redis is skipped this long
}

// dedupMode is how the gateway deduplicates when Redis is healthy: "redis"
// with REDIS_ADDR, else "memory".
func (c config) dedupMode() string {
	if c.RedisAddr == "" {
		return dedupMemory
	}
	return dedupRedis
}

func loadConfig(getenv httpkit.Getenv) (config, error) {
	c := config{
		ListenAddr:   getenv.String("LISTEN_ADDR", ":8080"),
		DatastoreURL: strings.TrimRight(getenv.String("DATASTORE_URL", "http://datastore:8080"), "/"),
	}
	// Parse only: resolving the host here would be a DNS lookup at start.
	if u, err := url.Parse(c.DatastoreURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return c, fmt.Errorf("DATASTORE_URL=%q: want an http(s) URL", c.DatastoreURL)
	}
	var err error
	if c.DedupTTL, err = getenv.Duration("DEDUP_TTL", 5*time.Minute); err != nil {
		return c, err
	}
	if c.MaxBodyBytes, err = getenv.Int64("MAX_BODY_BYTES", 1<<20); err != nil {
		return c, err
	}
	if c.AuditRetryInterval, err = getenv.Duration("AUDIT_RETRY_INTERVAL", 500*time.Millisecond); err != nil {
		return c, err
	}
	if file := getenv("DATASTORE_TOKEN_FILE"); file != "" {
		raw, err := os.ReadFile(file)
		if err != nil {
			return c, fmt.Errorf("DATASTORE_TOKEN_FILE: %w", err)
		}
		if c.DatastoreToken = strings.TrimSpace(string(raw)); c.DatastoreToken == "" {
			return c, fmt.Errorf("DATASTORE_TOKEN_FILE=%q is empty", file)
		}
	}
	if c.RedisAddr = strings.TrimSpace(getenv("REDIS_ADDR")); c.RedisAddr != "" {
		if err := checkHostPort(c.RedisAddr); err != nil {
			return c, fmt.Errorf("REDIS_ADDR=%q: want host:port such as redis:6379 (%v)", c.RedisAddr, err)
		}
	}
	c.RedisPassword = getenv("REDIS_PASSWORD")
	if c.RedisTimeout, err = getenv.Duration("REDIS_TIMEOUT", 300*time.Millisecond); err != nil {
		return c, err
	}
	if c.RedisRetryInterval, err = getenv.Duration("REDIS_RETRY_INTERVAL", time.Second); err != nil {
		return c, err
	}
	for _, o := range strings.Split(getenv("CORS_ALLOWED_ORIGINS"), ",") {
		if o = strings.TrimSpace(o); o != "" {
			c.CORSOrigins = append(c.CORSOrigins, o)
		}
	}
	return c, nil
}

var hostName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// checkHostPort accepts host:port with a non-empty host and a port in
// 1-65535. Like DATASTORE_URL, the host is not resolved here.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" {
		return fmt.Errorf("missing host")
	}
	if net.ParseIP(host) == nil && !hostName.MatchString(host) {
		return fmt.Errorf("host %q is neither a host name nor an IP address", host)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not a number in 1-65535", port)
	}
	return nil
}
