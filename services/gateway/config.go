package main

import (
	"fmt"
	"net/url"
	"os"
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
	for _, o := range strings.Split(getenv("CORS_ALLOWED_ORIGINS"), ",") {
		if o = strings.TrimSpace(o); o != "" {
			c.CORSOrigins = append(c.CORSOrigins, o)
		}
	}
	return c, nil
}
