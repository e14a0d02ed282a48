package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"example.com/e2e-services/internal/httpkit"
	"example.com/e2e-services/internal/testutil"
)

// fakeClock is the injectable clock for TTL tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fakeDatastore records audit events; while down it answers 503 everywhere.
type fakeDatastore struct {
	*httptest.Server
	down atomic.Bool

	mu     sync.Mutex
	events []map[string]any
	seen   map[string]bool
}

func newFakeDatastore(t *testing.T) *fakeDatastore {
	f := &fakeDatastore{seen: map[string]bool{}}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		switch r.URL.Path {
		case "/health":
			w.Write([]byte(`{"status":"ok"}`))
		case "/api/v1/events":
			body, _ := io.ReadAll(r.Body)
			var ev map[string]any
			if json.Unmarshal(body, &ev) != nil || r.Header.Get("Content-Type") != "application/json" {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			id, _ := ev["event_id"].(string)
			if f.seen[id] {
				w.WriteHeader(http.StatusOK)
				return
			}
			f.seen[id] = true
			f.events = append(f.events, ev)
			w.WriteHeader(http.StatusCreated)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeDatastore) received() []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]any(nil), f.events...)
}

// testGateway is a gateway with its outbox worker running, behind the full
// middleware chain.
type testGateway struct {
	*gateway
	h     http.Handler
	clock *fakeClock
	logs  *testutil.SyncBuffer
}

func newTestGateway(t *testing.T, datastoreURL string, tweak ...func(*config)) *testGateway {
	t.Helper()
	cfg := config{
		ListenAddr:         "127.0.0.1:0",
		DatastoreURL:       datastoreURL,
		DedupTTL:           time.Minute,
		MaxBodyBytes:       1 << 20,
		AuditRetryInterval: 20 * time.Millisecond,
		CORSOrigins:        []string{"https://ui.example"},
	}
	for _, f := range tweak {
		f(&cfg)
	}
	clock := newFakeClock()
	logs := &testutil.SyncBuffer{}
	app := httpkit.NewApp(serviceName, httpkit.NewLogger(serviceName, logs))
	g := newGateway(app, cfg, clock.Now)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); g.outbox.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; g.dedup.close() })
	return &testGateway{gateway: g, h: g.handler(app), clock: clock, logs: logs}
}

// unreachableURL points at a port with nothing listening.
func unreachableURL(t *testing.T) string {
	return "http://" + testutil.FreeAddr(t)
}
