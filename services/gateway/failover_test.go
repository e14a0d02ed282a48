package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"example.com/e2e-services/internal/testutil"
	"github.com/alicebob/miniredis/v2"
)

const (
	warnRedisDown = "redis unavailable, deduplicating in process"
	infoRedisUp   = "redis available again"
)

// newRedisGateway is a test gateway deduplicating in Redis at addr. Its
// retry interval runs on the fake clock: tests advance it explicitly.
func newRedisGateway(t *testing.T, datastoreURL, addr string, tweak ...func(*config)) *testGateway {
	return newTestGateway(t, datastoreURL, append([]func(*config){func(c *config) {
		c.RedisAddr = addr
		c.RedisTimeout = time.Second
		c.RedisRetryInterval = 30 * time.Second
	}}, tweak...)...)
}

// postAlert sends one alert and returns the code, X-Dedup and the signal.
func postAlert(t *testing.T, g *testGateway, name, ns string) (int, string, map[string]any) {
	t.Helper()
	rec := testutil.Do(t, g.h, "POST", amPath, webhook(alert(name, ns)), "Content-Type", jsonCT)
	if rec.Code != 201 && rec.Code != 202 {
		t.Fatalf("POST: %d %s", rec.Code, rec.Body)
	}
	return rec.Code, rec.Header().Get("X-Dedup"), signalsOf(t, rec)[0]
}

// wantSignal checks code, header and the signal's status, occurrences and dedup.
func wantSignal(t *testing.T, what string, code int, hdr string, s map[string]any, wantCode int, wantDedup, wantStatus string, wantN int) {
	t.Helper()
	if code != wantCode || hdr != wantDedup || s["dedup"] != wantDedup || s["status"] != wantStatus || s["occurrences"] != float64(wantN) {
		t.Fatalf("%s: %d X-Dedup=%q signal=%v; want %d %s %s %d", what, code, hdr, s, wantCode, wantDedup, wantStatus, wantN)
	}
}

func metricsOf(t *testing.T, g *testGateway) string {
	return testutil.Do(t, g.h, "GET", "/metrics", "").Body.String()
}

func wantMetrics(t *testing.T, g *testGateway, want ...string) {
	t.Helper()
	m := metricsOf(t, g)
	for _, w := range want {
		if !strings.Contains(m, w+"\n") {
			t.Errorf("metrics lack %q", w)
		}
	}
}

func readyOf(t *testing.T, g *testGateway) (int, map[string]any) {
	t.Helper()
	rec := testutil.Do(t, g.h, "GET", "/ready", "")
	deps, _ := testutil.JSON(t, rec)["dependencies"].(map[string]any)
	return rec.Code, deps
}

func TestRedisDedupSharedByReplicas(t *testing.T) {
	mr := miniredis.RunT(t)
	ds := newFakeDatastore(t)
	a, b := newRedisGateway(t, ds.URL, mr.Addr()), newRedisGateway(t, ds.URL, mr.Addr())

	code, hdr, s := postAlert(t, a, "Shared", "shop")
	wantSignal(t, "first on a", code, hdr, s, 201, "redis", "created", 1)
	code, hdr, s = postAlert(t, b, "Shared", "shop")
	wantSignal(t, "repeat on b", code, hdr, s, 202, "redis", "duplicate", 2)
	code, hdr, s = postAlert(t, a, "Shared", "shop")
	wantSignal(t, "repeat on a", code, hdr, s, 202, "redis", "duplicate", 3)

	key := "gateway:dedup:shop:" + s["fingerprint"].(string)
	if v, _ := mr.Get(key); v != "3" || mr.TTL(key) != time.Minute {
		t.Fatalf("%s = %q ttl %v; keys %v", key, v, mr.TTL(key), mr.Keys())
	}
	// The window is Redis's: the replicas' clocks do not matter.
	a.clock.Advance(time.Hour)
	code, hdr, s = postAlert(t, a, "Shared", "shop")
	wantSignal(t, "after a's clock moved", code, hdr, s, 202, "redis", "duplicate", 4)
	mr.FastForward(time.Minute)
	code, hdr, s = postAlert(t, b, "Shared", "shop")
	wantSignal(t, "after Redis TTL", code, hdr, s, 201, "redis", "created", 1)

	wantMetrics(t, a, "gateway_redis_up 1", "gateway_dedup_degraded_total 0")
	if code, deps := readyOf(t, a); code != 200 || deps["redis"] != "ok" || deps["datastore"] != "ok" {
		t.Fatalf("ready: %d %v", code, deps)
	}
	testutil.Eventually(t, "audit events", func() bool { return len(ds.received()) == 5 })
	if p := ds.received()[4]["payload"].(map[string]any); p["dedup"] != "redis" {
		t.Fatalf("audit payload %v", p)
	}
}

func TestRedisOutageDegradesAndRecovers(t *testing.T) {
	mr := miniredis.RunT(t)
	addr := mr.Addr()
	g := newRedisGateway(t, newFakeDatastore(t).URL, addr)

	code, hdr, s := postAlert(t, g, "A", "shop")
	wantSignal(t, "redis up", code, hdr, s, 201, "redis", "created", 1)
	code, hdr, s = postAlert(t, g, "A", "shop")
	wantSignal(t, "redis up, repeat", code, hdr, s, 202, "redis", "duplicate", 2)

	mr.Close()
	// Accepted all the same; dedup continues in process from Redis's last count.
	code, hdr, s = postAlert(t, g, "A", "shop")
	wantSignal(t, "redis gone", code, hdr, s, 202, "degraded", "duplicate", 3)
	code, hdr, s = postAlert(t, g, "B", "shop")
	wantSignal(t, "redis gone, new alert", code, hdr, s, 201, "degraded", "created", 1)
	wantMetrics(t, g, "gateway_redis_up 0", "gateway_dedup_degraded_total 2",
		`gateway_signals_received_total{source="alertmanager"} 4`)

	// /health and /ready do not depend on Redis; /ready names it, without
	// waiting on it while the circuit is open.
	if rec := testutil.Do(t, g.h, "GET", "/health", ""); rec.Code != 200 {
		t.Fatalf("health: %d", rec.Code)
	}
	code, deps := readyOf(t, g)
	if redis := fmt.Sprint(deps["redis"]); code != 200 || deps["datastore"] != "ok" ||
		!strings.HasPrefix(redis, "down: ") || !strings.Contains(redis, addr) {
		t.Fatalf("ready while redis down: %d %v", code, deps)
	}

	// Redis is back, but the circuit stays open for the retry interval:
	// requests do not try it.
	mr2 := restartRedis(t, addr)
	g.clock.Advance(29 * time.Second)
	code, hdr, s = postAlert(t, g, "A", "shop")
	wantSignal(t, "inside retry interval", code, hdr, s, 202, "degraded", "duplicate", 4)
	if len(mr2.Keys()) != 0 {
		t.Fatalf("Redis used inside the retry interval: %v", mr2.Keys())
	}
	if _, deps := readyOf(t, g); !strings.HasPrefix(fmt.Sprint(deps["redis"]), "down: ") {
		t.Fatalf("ready inside retry interval: %v", deps)
	}

	// After it, the next request tries Redis and uses it again. The new
	// Redis is empty, so the alert starts a new window there.
	g.clock.Advance(time.Second)
	code, hdr, s = postAlert(t, g, "A", "shop")
	wantSignal(t, "after retry interval", code, hdr, s, 201, "redis", "created", 1)
	code, hdr, s = postAlert(t, g, "A", "shop")
	wantSignal(t, "recovered, repeat", code, hdr, s, 202, "redis", "duplicate", 2)
	wantMetrics(t, g, "gateway_redis_up 1", "gateway_dedup_degraded_total 3")
	if code, deps := readyOf(t, g); code != 200 || deps["redis"] != "ok" {
		t.Fatalf("ready after recovery: %d %v", code, deps)
	}

	logs := g.logs.String()
	if n := strings.Count(logs, warnRedisDown); n != 1 || !strings.Contains(logs, `"level":"WARN","msg":"`+warnRedisDown+`"`) ||
		!strings.Contains(logs, `"error":"dial tcp `+addr) {
		t.Fatalf("want one warning with the error, got %d:\n%s", n, logs)
	}
	if n := strings.Count(logs, infoRedisUp); n != 1 || strings.Index(logs, infoRedisUp) < strings.Index(logs, warnRedisDown) {
		t.Fatalf("want one recovery line after the warning, got %d:\n%s", n, logs)
	}
}

func TestRedisFailedProbeKeepsCircuitOpen(t *testing.T) {
	mr := miniredis.RunT(t)
	addr := mr.Addr()
	g := newRedisGateway(t, newFakeDatastore(t).URL, addr)
	mr.Close()
	code, hdr, s := postAlert(t, g, "A", "ns")
	wantSignal(t, "down from the start", code, hdr, s, 201, "degraded", "created", 1)

	g.clock.Advance(30 * time.Second)
	code, hdr, s = postAlert(t, g, "A", "ns") // the probe, which fails
	wantSignal(t, "failed probe", code, hdr, s, 202, "degraded", "duplicate", 2)

	restartRedis(t, addr)
	// The failed probe restarted the interval.
	g.clock.Advance(29 * time.Second)
	code, hdr, s = postAlert(t, g, "A", "ns")
	wantSignal(t, "interval restarted by the probe", code, hdr, s, 202, "degraded", "duplicate", 3)
	// A readiness check may be the probe too: it closes the circuit.
	g.clock.Advance(time.Second)
	if code, deps := readyOf(t, g); code != 200 || deps["redis"] != "ok" {
		t.Fatalf("ready as the probe: %d %v", code, deps)
	}
	code, hdr, s = postAlert(t, g, "A", "ns")
	wantSignal(t, "after ready's probe", code, hdr, s, 201, "redis", "created", 1)
	if n := strings.Count(g.logs.String(), warnRedisDown); n != 1 {
		t.Fatalf("%d warnings, want 1 per outage", n)
	}
}

func TestRedisErrorRepliesDegrade(t *testing.T) {
	mr := miniredis.RunT(t)
	mr.RequireAuth("right")
	g := newRedisGateway(t, newFakeDatastore(t).URL, mr.Addr(), func(c *config) { c.RedisPassword = "wrong" })
	code, hdr, s := postAlert(t, g, "A", "ns")
	wantSignal(t, "wrong password", code, hdr, s, 201, "degraded", "created", 1)
	if !strings.Contains(g.logs.String(), "WRONGPASS") {
		t.Fatalf("warning lacks the error:\n%s", g.logs)
	}
	if code, deps := readyOf(t, g); code != 200 || !strings.Contains(fmt.Sprint(deps["redis"]), "WRONGPASS") {
		t.Fatalf("ready: %d %v", code, deps)
	}

	ok := newRedisGateway(t, newFakeDatastore(t).URL, mr.Addr(), func(c *config) { c.RedisPassword = "right" })
	code, hdr, s = postAlert(t, ok, "A", "ns")
	wantSignal(t, "right password", code, hdr, s, 201, "redis", "created", 1)
}

// blackHole accepts connections and never answers.
func blackHole(t *testing.T) (addr string, accepted *atomic.Int32) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = &atomic.Int32{}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String(), accepted
}

func TestRedisTimeoutBoundsRequests(t *testing.T) {
	addr, accepted := blackHole(t)
	const timeout = 200 * time.Millisecond
	g := newRedisGateway(t, newFakeDatastore(t).URL, addr, func(c *config) { c.RedisTimeout = timeout })

	// Readiness with the circuit closed: one bounded attempt.
	start := time.Now()
	code, deps := readyOf(t, g)
	if took := time.Since(start); took < timeout || took > timeout+time.Second {
		t.Fatalf("ready took %v, want about %v", took, timeout)
	}
	if code != 200 || !strings.HasPrefix(fmt.Sprint(deps["redis"]), "down: ") {
		t.Fatalf("ready: %d %v", code, deps)
	}

	// That opened the circuit: requests neither wait nor connect.
	before := accepted.Load()
	start = time.Now()
	for i := 0; i < 5; i++ {
		code, hdr, s := postAlert(t, g, "A", "ns")
		wantSignal(t, "circuit open", code, hdr, s, []int{201, 202}[min(i, 1)], "degraded", []string{"created", "duplicate"}[min(i, 1)], i+1)
	}
	if took := time.Since(start); took >= timeout {
		t.Fatalf("5 requests with the circuit open took %v", took)
	}
	if accepted.Load() != before {
		t.Fatal("Redis contacted while the circuit is open")
	}

	// The probe after the interval waits at most the timeout, once.
	g.clock.Advance(30 * time.Second)
	start = time.Now()
	code, hdr, s := postAlert(t, g, "A", "ns")
	if took := time.Since(start); took < timeout || took > timeout+time.Second {
		t.Fatalf("probe took %v, want about %v", took, timeout)
	}
	wantSignal(t, "probe", code, hdr, s, 202, "degraded", "duplicate", 6)
	wantMetrics(t, g, "gateway_dedup_degraded_total 6", "gateway_redis_up 0")
}

func TestCancelledRequestDoesNotTripCircuit(t *testing.T) {
	mr := miniredis.RunT(t)
	g := newRedisGateway(t, newFakeDatastore(t).URL, mr.Addr())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if created, n, mode := g.dedup.observe(ctx, "ns", fpA); !created || n != 1 || mode != "degraded" {
		t.Fatalf("cancelled: %v %d %s", created, n, mode)
	}
	if status := g.dedup.status(ctx); !strings.HasPrefix(status, "down: ") {
		t.Fatalf("status with cancelled context: %s", status)
	}
	if strings.Contains(g.logs.String(), warnRedisDown) {
		t.Fatal("a cancelled request opened the circuit")
	}
	if created, n, mode := g.dedup.observe(context.Background(), "ns", fpA); !created || n != 1 || mode != "redis" {
		t.Fatalf("next request: %v %d %s", created, n, mode)
	}
}

func TestMixedBatchHeaderIsDegraded(t *testing.T) {
	mr := miniredis.RunT(t)
	g := newRedisGateway(t, newFakeDatastore(t).URL, mr.Addr())
	rec := testutil.Do(t, g.h, "POST", amPath, webhook(alert("A", "ns"), alert("A", "other")), "Content-Type", jsonCT)
	sigs := signalsOf(t, rec)
	if rec.Code != 201 || rec.Header().Get("X-Dedup") != "redis" || sigs[0]["dedup"] != "redis" || sigs[1]["dedup"] != "redis" {
		t.Fatalf("all redis: %d %v %v", rec.Code, rec.Header(), sigs)
	}
	// Make only the second signal's key fail (a string: INCR errors), so
	// Redis fails in the middle of a batch.
	fp := sigs[1]["fingerprint"].(string)
	mr.Set(dedupKey("other", fp), "not a number")
	rec = testutil.Do(t, g.h, "POST", amPath, webhook(alert("A", "ns"), alert("A", "other")), "Content-Type", jsonCT)
	sigs = signalsOf(t, rec)
	if rec.Code != 202 || rec.Header().Get("X-Dedup") != "degraded" || sigs[0]["dedup"] != "redis" || sigs[1]["dedup"] != "degraded" ||
		sigs[1]["status"] != "duplicate" || sigs[1]["occurrences"] != float64(2) {
		t.Fatalf("mixed: %d %v %v", rec.Code, rec.Header(), sigs)
	}
}

func TestRunWithRedis(t *testing.T) {
	mr := miniredis.RunT(t)
	mr.RequireAuth("pw")
	ds := newFakeDatastore(t)
	addr := testutil.FreeAddr(t)
	var logs testutil.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, env(map[string]string{"LISTEN_ADDR": addr, "DATASTORE_URL": ds.URL,
			"REDIS_ADDR": mr.Addr(), "REDIS_PASSWORD": "pw", "REDIS_TIMEOUT": "2s", "REDIS_RETRY_INTERVAL": "3s"}), &logs)
	}()
	testutil.WaitHealthy(t, "http://"+addr+"/health")
	// The start-up check sets the gauge before any signal arrives.
	testutil.Eventually(t, "gateway_redis_up 1", func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return err == nil && strings.Contains(string(b), "gateway_redis_up 1\n")
	})
	resp, err := http.Post("http://"+addr+amPath, jsonCT, strings.NewReader(webhook(alert("A", "n"))))
	if err != nil || resp.StatusCode != 201 || resp.Header.Get("X-Dedup") != "redis" {
		t.Fatalf("%v %v", resp, err)
	}
	resp.Body.Close()
	if len(mr.Keys()) != 1 {
		t.Fatalf("keys %v", mr.Keys())
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("run returned %v", err)
	}
	for _, want := range []string{`"dedup_mode":"redis"`, `"redis_addr":"` + mr.Addr() + `"`, `"redis_password_set":true`,
		`"redis_timeout":"2s"`, `"redis_retry_interval":"3s"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("start log lacks %s:\n%s", want, logs.String())
		}
	}
	if strings.Contains(logs.String(), `"pw"`) || strings.Contains(logs.String(), warnRedisDown) {
		t.Fatalf("password or a warning logged:\n%s", logs.String())
	}
}

func TestRunLogsMemoryMode(t *testing.T) {
	var logs testutil.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	addr := testutil.FreeAddr(t)
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, env(map[string]string{"LISTEN_ADDR": addr, "DATASTORE_URL": unreachableURL(t)}), &logs)
	}()
	testutil.WaitHealthy(t, "http://"+addr+"/health")
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `"dedup_mode":"memory"`) || !strings.Contains(logs.String(), `"redis_addr":""`) {
		t.Fatalf("start log:\n%s", logs.String())
	}
}

func TestDegradedWindowContinuesRedisWindow(t *testing.T) {
	mr := miniredis.RunT(t)
	g := newRedisGateway(t, newFakeDatastore(t).URL, mr.Addr()) // DedupTTL 1m
	postAlert(t, g, "A", "ns")
	// 40s into Redis's window (the gateway's clock does not move).
	mr.FastForward(40 * time.Second)
	code, hdr, s := postAlert(t, g, "A", "ns")
	wantSignal(t, "40s in", code, hdr, s, 202, "redis", "duplicate", 2)

	mr.Close()
	g.clock.Advance(19 * time.Second) // 59s into the window
	code, hdr, s = postAlert(t, g, "A", "ns")
	wantSignal(t, "59s in, degraded", code, hdr, s, 202, "degraded", "duplicate", 3)
	g.clock.Advance(time.Second) // the window that started in Redis is over
	code, hdr, s = postAlert(t, g, "A", "ns")
	wantSignal(t, "60s in, degraded", code, hdr, s, 201, "degraded", "created", 1)
}

func TestRedisClientFailsFast(t *testing.T) {
	c := newRedisClient("redis:6379", "pw", 250*time.Millisecond)
	defer c.Close()
	o := c.Options()
	if o.MaxRetries != 0 || o.DialerRetries != 1 || o.DialTimeout != 250*time.Millisecond ||
		o.ReadTimeout != 250*time.Millisecond || o.WriteTimeout != 250*time.Millisecond ||
		o.PoolTimeout != 250*time.Millisecond || !o.ContextTimeoutEnabled || o.Password != "pw" {
		t.Fatalf("options after defaults: %+v", o)
	}
}

// restartRedis starts an empty Redis where a closed one listened, as a
// restarted Redis pod keeps its Service address.
func restartRedis(t *testing.T, addr string) *miniredis.Miniredis {
	t.Helper()
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr(addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mr.Close)
	return mr
}
