package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"example.com/e2e-services/internal/testutil"
)

const (
	amPath  = "/api/v1/signals/alertmanager"
	k8sPath = "/api/v1/signals/kubernetes-event"
	jsonCT  = "application/json"
)

func webhook(alerts ...string) string {
	return `{"version":"4","status":"firing","receiver":"e2e","groupLabels":{},"commonLabels":{},"alerts":[` +
		strings.Join(alerts, ",") + `]}`
}

func alert(name, ns string) string {
	return `{"status":"firing","labels":{"alertname":"` + name + `","namespace":"` + ns +
		`","severity":"critical"},"annotations":{"summary":"s"},"startsAt":"2024-01-01T00:00:00Z"}`
}

const k8sEventBody = `{"kind":"Event","apiVersion":"v1","metadata":{"name":"web.1","namespace":"shop"},
	"involvedObject":{"kind":"Pod","name":"web-0","namespace":"shop"},"reason":"BackOff","message":"restarting","type":"Warning","count":3}`

func signalsOf(t *testing.T, rec *httptest.ResponseRecorder) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, s := range testutil.JSON(t, rec)["signals"].([]any) {
		out = append(out, s.(map[string]any))
	}
	return out
}

func TestAlertmanagerCreatedThenDuplicate(t *testing.T) {
	g := newTestGateway(t, newFakeDatastore(t).URL)
	body := webhook(alert("HighLatency", "shop"))

	for i, want := range []struct {
		code   int
		status string
	}{{201, "created"}, {202, "duplicate"}, {202, "duplicate"}} {
		rec := testutil.Do(t, g.h, "POST", amPath, body, "Content-Type", jsonCT)
		if rec.Code != want.code {
			t.Fatalf("request %d: %d %s", i, rec.Code, rec.Body)
		}
		s := signalsOf(t, rec)[0]
		if s["status"] != want.status || s["occurrences"] != float64(i+1) {
			t.Fatalf("request %d: %v", i, s)
		}
		if rec.Header().Get("X-Dedup") != "memory" || s["dedup"] != "memory" {
			t.Fatalf("request %d: X-Dedup %q, signal dedup %v", i, rec.Header().Get("X-Dedup"), s["dedup"])
		}
		if s["source"] != "alertmanager" || s["namespace"] != "shop" || s["alertname"] != "HighLatency" ||
			s["severity"] != "critical" || !hex64.MatchString(s["fingerprint"].(string)) ||
			s["correlation_id"] != rec.Header().Get("X-Correlation-ID") {
			t.Fatalf("signal fields: %v", s)
		}
		if labels, _ := s["labels"].(map[string]any); labels["namespace"] != "shop" {
			t.Fatalf("labels: %v", s["labels"])
		}
	}
	// After the TTL it is new again.
	g.clock.Advance(time.Minute)
	rec := testutil.Do(t, g.h, "POST", amPath, body, "Content-Type", jsonCT)
	if s := signalsOf(t, rec)[0]; rec.Code != 201 || s["occurrences"] != float64(1) {
		t.Fatalf("after TTL: %d %v", rec.Code, s)
	}
}

func TestMixedBatchIs201(t *testing.T) {
	g := newTestGateway(t, newFakeDatastore(t).URL)
	testutil.Do(t, g.h, "POST", amPath, webhook(alert("A", "ns")), "Content-Type", jsonCT)
	rec := testutil.Do(t, g.h, "POST", amPath, webhook(alert("A", "ns"), alert("B", "ns"), alert("A", "other")), "Content-Type", jsonCT)
	if rec.Code != 201 {
		t.Fatalf("%d", rec.Code)
	}
	var statuses []string
	for _, s := range signalsOf(t, rec) {
		statuses = append(statuses, s["status"].(string))
	}
	if strings.Join(statuses, ",") != "duplicate,created,created" {
		t.Fatalf("statuses %v (namespaces are separate)", statuses)
	}
}

func TestKubernetesEvent(t *testing.T) {
	g := newTestGateway(t, newFakeDatastore(t).URL)
	rec := testutil.Do(t, g.h, "POST", k8sPath, k8sEventBody, "Content-Type", "application/json; charset=utf-8")
	if rec.Code != 201 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	s := signalsOf(t, rec)[0]
	for k, want := range map[string]any{"source": "kubernetes-event", "namespace": "shop", "reason": "BackOff",
		"kind": "Pod", "name": "web-0", "type": "Warning", "message": "restarting", "status": "created"} {
		if s[k] != want {
			t.Errorf("%s = %v, want %v", k, s[k], want)
		}
	}
	rec = testutil.Do(t, g.h, "POST", k8sPath, strings.Replace(k8sEventBody, `"count":3`, `"count":4`, 1), "Content-Type", jsonCT)
	if rec.Code != 202 || signalsOf(t, rec)[0]["occurrences"] != float64(2) {
		t.Fatalf("repeat: %d %s", rec.Code, rec.Body)
	}
}

func TestIngestionErrors(t *testing.T) {
	g := newTestGateway(t, newFakeDatastore(t).URL, func(c *config) { c.MaxBodyBytes = 512 })
	for _, tc := range []struct {
		name, method, path, ct, body string
		status                       int
		detail                       string
	}{
		{"bad JSON", "POST", amPath, jsonCT, `{"alerts":[`, 400, "malformed JSON"},
		{"empty body", "POST", amPath, jsonCT, ``, 400, "empty"},
		{"no alerts", "POST", amPath, jsonCT, webhook(), 400, "alerts must be a non-empty list"},
		{"alerts missing", "POST", amPath, jsonCT, `{"version":"4"}`, 400, "alerts must be a non-empty list"},
		{"JSON null", "POST", amPath, jsonCT, `null`, 400, "alerts must be a non-empty list"},
		{"missing alertname", "POST", amPath, jsonCT, webhook(alert("A", "n"), `{"labels":{"severity":"x"}}`), 400, "alerts[1].labels.alertname is required"},
		{"labels not strings", "POST", amPath, jsonCT, webhook(`{"labels":{"alertname":1}}`), 400, "malformed JSON"},
		{"k8s missing reason", "POST", k8sPath, jsonCT, `{"involvedObject":{"kind":"Pod","name":"p"}}`, 400, "reason is required"},
		{"k8s missing kind", "POST", k8sPath, jsonCT, `{"reason":"R","involvedObject":{"name":"p"}}`, 400, "involvedObject.kind is required"},
		{"k8s missing name", "POST", k8sPath, jsonCT, `{"reason":"R","involvedObject":{"kind":"Pod"}}`, 400, "involvedObject.name is required"},
		{"wrong content type", "POST", amPath, "text/plain", webhook(alert("A", "n")), 415, "application/json"},
		{"no content type", "POST", k8sPath, "", k8sEventBody, 415, "application/json"},
		{"too large", "POST", amPath, jsonCT, webhook(strings.Repeat(alert("A", "n")+",", 10) + alert("A", "n")), 413, "512 bytes"},
		{"unknown path", "POST", "/api/v1/signals/nope", jsonCT, `{}`, 404, "/api/v1/signals/nope"},
		{"wrong method", "GET", amPath, "", "", 405, "GET"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := testutil.Do(t, g.h, tc.method, tc.path, tc.body, "Content-Type", tc.ct)
			testutil.WantProblem(t, rec, tc.status, tc.detail)
			if tc.status == 405 && rec.Header().Get("Allow") != "POST" {
				t.Fatalf("Allow = %q", rec.Header().Get("Allow"))
			}
		})
	}
	if n := g.received.Value(sourceAlertmanager); n != 0 {
		t.Fatalf("rejected requests counted as received: %v", n)
	}
	if g.outbox.len() != 0 {
		t.Fatal("rejected requests queued audit events")
	}
}

func TestCorrelationIDEchoedOrGenerated(t *testing.T) {
	g := newTestGateway(t, newFakeDatastore(t).URL)
	rec := testutil.Do(t, g.h, "POST", amPath, webhook(alert("A", "n"), alert("B", "n")), "Content-Type", jsonCT, "X-Correlation-ID", "corr-123")
	if rec.Header().Get("X-Correlation-ID") != "corr-123" {
		t.Fatalf("not echoed: %q", rec.Header().Get("X-Correlation-ID"))
	}
	for _, s := range signalsOf(t, rec) {
		if s["correlation_id"] != "corr-123" {
			t.Fatalf("signal correlation id %v", s["correlation_id"])
		}
	}
	rec = testutil.Do(t, g.h, "POST", amPath, webhook(alert("A", "n")), "Content-Type", jsonCT, "X-Correlation-ID", "not valid!")
	if got := rec.Header().Get("X-Correlation-ID"); !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(got) || signalsOf(t, rec)[0]["correlation_id"] != got {
		t.Fatalf("generated correlation id %q", got)
	}
	// Errors carry it too, so a failed request can be traced.
	rec = testutil.Do(t, g.h, "POST", amPath, "", "Content-Type", jsonCT, "X-Correlation-ID", "corr-err")
	if rec.Code != 400 || rec.Header().Get("X-Correlation-ID") != "corr-err" {
		t.Fatalf("error response: %d %v", rec.Code, rec.Header())
	}
}

func TestAuditEventsCarryCorrelationID(t *testing.T) {
	ds := newFakeDatastore(t)
	g := newTestGateway(t, ds.URL)
	for i := 0; i < 2; i++ {
		testutil.Do(t, g.h, "POST", amPath, webhook(alert("A", "shop")), "Content-Type", jsonCT, "X-Correlation-ID", fmt.Sprint("corr-", i))
	}
	testutil.Eventually(t, "2 audit events", func() bool { return len(ds.received()) == 2 })
	evs := ds.received()
	for i, want := range []string{"signal.created", "signal.duplicate"} {
		ev := evs[i]
		if ev["event_type"] != want || ev["correlation_id"] != fmt.Sprint("corr-", i) || ev["source"] != "alertmanager" ||
			ev["namespace"] != "shop" || !hex64.MatchString(ev["fingerprint"].(string)) || len(ev["event_id"].(string)) != 32 {
			t.Fatalf("event %d: %v", i, ev)
		}
		if p := ev["payload"].(map[string]any); p["alertname"] != "A" || p["occurrences"] != float64(i+1) || p["dedup"] != "memory" {
			t.Fatalf("payload %v", p)
		}
	}
	if evs[0]["event_id"] == evs[1]["event_id"] {
		t.Fatal("event ids not unique")
	}
	testutil.Eventually(t, "pending gauge 0", func() bool { return g.outbox.pending.Value() == 0 })
	if g.outbox.sent.Value() != 2 {
		t.Fatalf("sent = %v", g.outbox.sent.Value())
	}
}

func TestDegradesWhileDatastoreDown(t *testing.T) {
	ds := newFakeDatastore(t)
	ds.down.Store(true)
	g := newTestGateway(t, ds.URL)

	rec := testutil.Do(t, g.h, "GET", "/ready", "")
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), `"datastore":"unreachable: `) ||
		!strings.Contains(rec.Body.String(), `"redis":"not configured"`) {
		t.Fatalf("ready while down: %d %s", rec.Code, rec.Body)
	}
	if rec := testutil.Do(t, g.h, "GET", "/health", ""); rec.Code != 200 {
		t.Fatalf("health depends on datastore: %d", rec.Code)
	}
	for _, ns := range []string{"a", "b", "c"} {
		if rec := testutil.Do(t, g.h, "POST", amPath, webhook(alert("A", ns)), "Content-Type", jsonCT); rec.Code != 201 {
			t.Fatalf("ingestion failed while datastore down: %d", rec.Code)
		}
	}
	testutil.Eventually(t, "failed attempts counted", func() bool { return g.outbox.failed.Value() >= 2 })
	if g.outbox.len() != 3 || g.outbox.pending.Value() != 3 {
		t.Fatalf("pending %d", g.outbox.len())
	}

	ds.down.Store(false)
	testutil.Eventually(t, "outbox drained", func() bool { return len(ds.received()) == 3 && g.outbox.len() == 0 })
	if rec := testutil.Do(t, g.h, "GET", "/ready", ""); rec.Code != 200 || testutil.JSON(t, rec)["status"] != "ready" ||
		!strings.Contains(rec.Body.String(), `"redis":"not configured"`) {
		t.Fatalf("ready after recovery: %d %s", rec.Code, rec.Body)
	}
	metrics := testutil.Do(t, g.h, "GET", "/metrics", "").Body.String()
	for _, want := range []string{"gateway_audit_events_sent_total 3\n", "gateway_audit_outbox_pending 0\n",
		// In-process dedup by configuration is not degraded.
		"gateway_dedup_degraded_total 0\n", "gateway_redis_up 0\n"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}
}

func TestReadyNamesUnreachableDatastore(t *testing.T) {
	g := newTestGateway(t, unreachableURL(t))
	rec := testutil.Do(t, g.h, "GET", "/ready", "")
	b := testutil.JSON(t, rec)
	deps, _ := b["dependencies"].(map[string]any)
	if rec.Code != 503 || b["status"] != "not ready" || !strings.HasPrefix(fmt.Sprint(deps["datastore"]), "unreachable: ") {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

func TestConcurrentRequestsCountExactly(t *testing.T) {
	g := newTestGateway(t, newFakeDatastore(t).URL)
	const n = 100
	var wg sync.WaitGroup
	codes := make([]int, n)
	occ := make([]float64, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			rec := testutil.Do(t, g.h, "POST", amPath, webhook(alert("Storm", "ns")), "Content-Type", jsonCT)
			codes[i] = rec.Code
			occ[i] = signalsOf(t, rec)[0]["occurrences"].(float64)
		}(i)
	}
	wg.Wait()
	created, seen := 0, map[float64]bool{}
	for i := range codes {
		if codes[i] == 201 {
			created++
		}
		seen[occ[i]] = true
	}
	if created != 1 || len(seen) != n || !seen[n] {
		t.Fatalf("created %d, distinct occurrences %d", created, len(seen))
	}
	metrics := testutil.Do(t, g.h, "GET", "/metrics", "").Body.String()
	for _, want := range []string{
		`gateway_signals_received_total{source="alertmanager"} 100`,
		`gateway_signals_created_total{source="alertmanager"} 1`,
		`gateway_signals_duplicate_total{source="alertmanager"} 99`,
		`gateway_signals_received_total{source="kubernetes-event"} 0`,
		`http_requests_total{method="POST",path="/api/v1/signals/alertmanager",code="201"} 1`,
		`http_requests_total{method="POST",path="/api/v1/signals/alertmanager",code="202"} 99`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestGatewayCORS(t *testing.T) {
	g := newTestGateway(t, newFakeDatastore(t).URL)
	rec := testutil.Do(t, g.h, "OPTIONS", amPath, "", "Origin", "https://ui.example", "Access-Control-Request-Method", "POST")
	if rec.Code != http.StatusNoContent || rec.Header().Get("Access-Control-Allow-Origin") != "https://ui.example" {
		t.Fatalf("allowed preflight: %d %v", rec.Code, rec.Header())
	}
	rec = testutil.Do(t, g.h, "OPTIONS", amPath, "", "Origin", "https://evil.example", "Access-Control-Request-Method", "POST")
	testutil.WantProblem(t, rec, http.StatusForbidden, "not allowed")
	if rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("denied preflight carries Access-Control-Allow-Origin")
	}
	rec = testutil.Do(t, g.h, "POST", amPath, webhook(alert("A", "n")), "Content-Type", jsonCT, "Origin", "https://ui.example")
	if rec.Code != 201 || rec.Header().Get("Access-Control-Allow-Origin") != "https://ui.example" || rec.Header().Get("Vary") != "Origin" {
		t.Fatalf("actual request: %d %v", rec.Code, rec.Header())
	}
}
