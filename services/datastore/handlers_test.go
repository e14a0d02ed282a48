package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"example.com/e2e-services/internal/httpkit"
	"example.com/e2e-services/internal/testutil"
)

const jsonCT = "application/json"

func newTestHandler(t *testing.T, store *memStore) http.Handler {
	t.Helper()
	app := httpkit.NewApp(serviceName, httpkit.NewLogger(serviceName, &testutil.SyncBuffer{}))
	return newHandler(app, store, time.Second, "")
}

func post(t *testing.T, h http.Handler, body string) (int, map[string]any) {
	t.Helper()
	rec := testutil.Do(t, h, "POST", "/api/v1/events", body, "Content-Type", jsonCT)
	if rec.Code >= 300 {
		return rec.Code, nil
	}
	return rec.Code, testutil.JSON(t, rec)
}

func TestPostEventCreatesThenIsIdempotent(t *testing.T) {
	h := newTestHandler(t, newMemStore())
	body := `{"event_id":"ev-1","correlation_id":"corr-1","event_type":"signal.created","source":"alertmanager","namespace":"ns","fingerprint":"abc","payload":{"k":"v"}}`

	code, ev := post(t, h, body)
	if code != 201 {
		t.Fatalf("first POST %d", code)
	}
	for k, want := range map[string]any{"id": "ev-1", "event_id": "ev-1", "correlation_id": "corr-1",
		"event_type": "signal.created", "source": "alertmanager", "namespace": "ns", "fingerprint": "abc"} {
		if ev[k] != want {
			t.Errorf("%s = %v, want %v", k, ev[k], want)
		}
	}
	if p, _ := ev["payload"].(map[string]any); p["k"] != "v" {
		t.Errorf("payload %v", ev["payload"])
	}
	if _, ok := ev["received_at"].(string); !ok {
		t.Errorf("received_at missing")
	}

	code, again := post(t, h, strings.Replace(body, `"k":"v"`, `"k":"changed"`, 1))
	if code != 200 || again["received_at"] != ev["received_at"] || again["payload"].(map[string]any)["k"] != "v" {
		t.Fatalf("repeat: %d %v", code, again)
	}

	list := testutil.JSON(t, testutil.Do(t, h, "GET", "/api/v1/events?correlation_id=corr-1", ""))
	if list["count"] != float64(1) {
		t.Fatalf("repeat was appended: %v", list)
	}
	metrics := testutil.Do(t, h, "GET", "/metrics", "").Body.String()
	for _, want := range []string{"datastore_events_stored_total 1\n", "datastore_events_duplicate_total 1\n",
		`http_requests_total{method="POST",path="/api/v1/events",code="201"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestPostEventGeneratesIDAndDefaultsPayload(t *testing.T) {
	h := newTestHandler(t, newMemStore())
	code, ev := post(t, h, `{"correlation_id":"c","event_type":"x"}`)
	if code != 201 || len(ev["id"].(string)) != 32 {
		t.Fatalf("%d %v", code, ev)
	}
	if _, has := ev["event_id"]; has {
		t.Errorf("event_id invented: %v", ev)
	}
	if p, ok := ev["payload"].(map[string]any); !ok || len(p) != 0 {
		t.Errorf("payload %v, want {}", ev["payload"])
	}
}

func TestListEventsInArrivalOrder(t *testing.T) {
	h := newTestHandler(t, newMemStore())
	for _, id := range []string{"3", "1", "2"} {
		post(t, h, `{"event_id":"`+id+`","correlation_id":"c","event_type":"x"}`)
	}
	post(t, h, `{"event_id":"z","correlation_id":"other","event_type":"x"}`)

	rec := testutil.Do(t, h, "GET", "/api/v1/events?correlation_id=c", "")
	b := testutil.JSON(t, rec)
	events := b["events"].([]any)
	if rec.Code != 200 || b["correlation_id"] != "c" || b["count"] != float64(3) || len(events) != 3 {
		t.Fatalf("%d %v", rec.Code, b)
	}
	for i, want := range []string{"3", "1", "2"} {
		if events[i].(map[string]any)["id"] != want {
			t.Fatalf("order: %v", events)
		}
	}
	empty := testutil.Do(t, h, "GET", "/api/v1/events?correlation_id=none", "")
	if !strings.Contains(empty.Body.String(), `"events":[]`) {
		t.Fatalf("unknown correlation id: %s", empty.Body)
	}
}

func TestEventErrors(t *testing.T) {
	h := newTestHandler(t, newMemStore())
	big := `{"correlation_id":"c","event_type":"x","payload":{"s":"` + strings.Repeat("a", maxEventBytes) + `"}}`
	for _, tc := range []struct {
		name, method, path, ct, body string
		status                       int
		detail                       string
	}{
		{"wrong content type", "POST", "/api/v1/events", "text/plain", `{}`, 415, "application/json"},
		{"too large", "POST", "/api/v1/events", jsonCT, big, 413, "exceeds"},
		{"empty body", "POST", "/api/v1/events", jsonCT, "", 400, "empty"},
		{"bad JSON", "POST", "/api/v1/events", jsonCT, `{"correlation_id":`, 400, "malformed JSON"},
		{"missing correlation_id", "POST", "/api/v1/events", jsonCT, `{"event_type":"x"}`, 400, "correlation_id is required"},
		{"missing event_type", "POST", "/api/v1/events", jsonCT, `{"correlation_id":"c"}`, 400, "event_type is required"},
		{"payload not object", "POST", "/api/v1/events", jsonCT, `{"correlation_id":"c","event_type":"x","payload":[1]}`, 400, "payload must be a JSON object"},
		{"list without parameter", "GET", "/api/v1/events", "", "", 400, "correlation_id is required"},
		{"unknown path", "GET", "/api/v1/nope", "", "", 404, "/api/v1/nope"},
		{"wrong method", "DELETE", "/api/v1/events", "", "", 405, "DELETE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := testutil.Do(t, h, tc.method, tc.path, tc.body, "Content-Type", tc.ct)
			testutil.WantProblem(t, rec, tc.status, tc.detail)
			if tc.status == 405 && rec.Header().Get("Allow") != "GET, POST" {
				t.Fatalf("Allow = %q", rec.Header().Get("Allow"))
			}
		})
	}
}

func TestHealthAndReady(t *testing.T) {
	store := newMemStore()
	h := newTestHandler(t, store)
	if b := testutil.JSON(t, testutil.Do(t, h, "GET", "/health", "")); b["service"] != "datastore" {
		t.Fatalf("health %v", b)
	}
	rec := testutil.Do(t, h, "GET", "/ready", "")
	if rec.Code != 200 || testutil.JSON(t, rec)["status"] != "ready" {
		t.Fatalf("ready: %d %s", rec.Code, rec.Body)
	}

	store.down = errors.New("dial tcp 10.0.0.9:5432: connect: connection refused")
	rec = testutil.Do(t, h, "GET", "/ready", "")
	b := testutil.JSON(t, rec)
	if rec.Code != 503 || b["status"] != "not ready" || !strings.Contains(rec.Body.String(), "connection refused") {
		t.Fatalf("ready with the database down: %d %s", rec.Code, rec.Body)
	}
	if rec := testutil.Do(t, h, "GET", "/health", ""); rec.Code != 200 {
		t.Fatalf("health with the database down: %d (the process still serves)", rec.Code)
	}
}

func TestDatabaseDownIs503AndAnErrorIs500(t *testing.T) {
	store := newMemStore()
	h := newTestHandler(t, store)
	body := `{"correlation_id":"c","event_type":"x"}`
	store.down = errors.New("failed to connect to host=postgres: connection refused")
	for _, rec := range []*httptest.ResponseRecorder{
		testutil.Do(t, h, "POST", "/api/v1/events", body, "Content-Type", jsonCT),
		testutil.Do(t, h, "GET", "/api/v1/events?correlation_id=c", ""),
	} {
		testutil.WantProblem(t, rec, 503, "database unavailable: failed to connect")
	}
	store.down = nil
	store.dbErr = &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}
	testutil.WantProblem(t, testutil.Do(t, h, "POST", "/api/v1/events", body, "Content-Type", jsonCT), 503, "administrator command")
	store.dbErr = &pgconn.PgError{Code: "42P01", Message: `relation "events" does not exist`}
	testutil.WantProblem(t, testutil.Do(t, h, "POST", "/api/v1/events", body, "Content-Type", jsonCT), 500, "relation")
	store.dbErr = nil
	if code, _ := post(t, h, body); code != 201 {
		t.Fatalf("after recovery: %d", code)
	}
}

func TestPayloadIsStoredCompacted(t *testing.T) {
	store := newMemStore()
	h := newTestHandler(t, store)
	if code, _ := post(t, h, `{"correlation_id":"c","event_type":"x","payload": { "a" : [1, 2] } }`); code != 201 {
		t.Fatal(code)
	}
	if got := string(store.events[0].Payload); got != `{"a":[1,2]}` {
		t.Fatalf("payload stored as %s", got)
	}
}
