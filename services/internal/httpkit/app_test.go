package httpkit

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"example.com/e2e-services/internal/testutil"
)

func newTestApp(t *testing.T) (*App, http.Handler, *testutil.SyncBuffer) {
	t.Helper()
	var logs testutil.SyncBuffer
	app := NewApp("svc", NewLogger("svc", &logs))
	app.Router.HandleFunc(http.MethodPost, "/things", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusCreated, map[string]string{"request_id": RequestID(r.Context())})
	})
	app.Router.HandleFunc(http.MethodGet, "/things", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("implicit 200"))
	})
	app.Router.HandleFunc(http.MethodGet, "/panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	return app, app.Handler(), &logs
}

func TestHealth(t *testing.T) {
	_, h, _ := newTestApp(t)
	rec := testutil.Do(t, h, "GET", "/health", "")
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if b := testutil.JSON(t, rec); b["status"] != "ok" || b["service"] != "svc" {
		t.Fatalf("body %v", b)
	}
}

func TestRequestIDEchoedOrGenerated(t *testing.T) {
	_, h, _ := newTestApp(t)
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)

	rec := testutil.Do(t, h, "POST", "/things", "", "X-Request-ID", "client-id.1")
	if got := rec.Header().Get("X-Request-ID"); got != "client-id.1" {
		t.Fatalf("echo: got %q", got)
	}
	if b := testutil.JSON(t, rec); b["request_id"] != "client-id.1" {
		t.Fatalf("handler saw request id %v", b["request_id"])
	}
	for _, bad := range []string{"", "bad id", strings.Repeat("x", 129), "<script>"} {
		rec := testutil.Do(t, h, "GET", "/health", "", "X-Request-ID", bad)
		if got := rec.Header().Get("X-Request-ID"); !hex32.MatchString(got) {
			t.Fatalf("for %q got %q, want generated 32-hex id", bad, got)
		}
	}
}

func TestNotFoundAndMethodNotAllowed(t *testing.T) {
	_, h, _ := newTestApp(t)
	rec := testutil.Do(t, h, "GET", "/nope", "")
	testutil.WantProblem(t, rec, http.StatusNotFound, "/nope")
	if p := testutil.JSON(t, rec); p["instance"] != "/nope" {
		t.Fatalf("instance = %v", p["instance"])
	}

	rec = testutil.Do(t, h, "DELETE", "/things", "")
	testutil.WantProblem(t, rec, http.StatusMethodNotAllowed, "DELETE")
	if allow := rec.Header().Get("Allow"); allow != "GET, POST" {
		t.Fatalf("Allow = %q", allow)
	}
	rec = testutil.Do(t, h, "POST", "/health", "")
	if rec.Code != 405 || rec.Header().Get("Allow") != "GET" {
		t.Fatalf("POST /health: %d Allow=%q", rec.Code, rec.Header().Get("Allow"))
	}
}

func TestPanicBecomes500(t *testing.T) {
	_, h, logs := newTestApp(t)
	testutil.WantProblem(t, testutil.Do(t, h, "GET", "/panic", ""), 500, "internal error")
	if !strings.Contains(logs.String(), "handler panic") {
		t.Fatal("panic not logged")
	}
}

func TestOneJSONLogLinePerRequest(t *testing.T) {
	_, h, logs := newTestApp(t)
	testutil.Do(t, h, "POST", "/things", "", "X-Request-ID", "req-42")
	testutil.Do(t, h, "GET", "/things", "")

	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 log lines, got %d:\n%s", len(lines), logs.String())
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"msg": "request", "level": "INFO", "service": "svc", "request_id": "req-42",
		"method": "POST", "path": "/things", "status": float64(201),
	} {
		if first[k] != want {
			t.Errorf("log %s = %v, want %v", k, first[k], want)
		}
	}
	if _, ok := first["duration_ms"].(float64); !ok {
		t.Errorf("duration_ms missing: %v", first)
	}
	if _, ok := first["time"]; !ok {
		t.Error("time missing")
	}
	if !strings.Contains(lines[1], `"status":200`) {
		t.Errorf("implicit 200 not logged as 200: %s", lines[1])
	}
}

func TestRequestMetricsUseRoutePattern(t *testing.T) {
	_, h, _ := newTestApp(t)
	testutil.Do(t, h, "POST", "/things", "")
	testutil.Do(t, h, "POST", "/things", "")
	testutil.Do(t, h, "GET", "/random/1", "")
	testutil.Do(t, h, "GET", "/random/2", "")

	text := testutil.Do(t, h, "GET", "/metrics", "").Body.String()
	for _, want := range []string{
		`http_requests_total{method="POST",path="/things",code="201"} 2`,
		`http_requests_total{method="GET",path="other",code="404"} 2`,
		"# TYPE process_start_time_seconds gauge",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}
	// The scrape itself shows up in the next one: counters move.
	text = testutil.Do(t, h, "GET", "/metrics", "").Body.String()
	if !strings.Contains(text, `http_requests_total{method="GET",path="/metrics",code="200"} 1`) {
		t.Errorf("scrape not counted:\n%s", text)
	}
}

func TestWriteReady(t *testing.T) {
	rec := testutil.Do(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		WriteReady(w, false, map[string]string{"x": "unreachable: no"})
	}), "GET", "/ready", "")
	b := testutil.JSON(t, rec)
	if rec.Code != 503 || b["status"] != "not ready" {
		t.Fatalf("%d %v", rec.Code, b)
	}
}
