package main

import (
	"encoding/json"
	"regexp"
	"testing"
)

var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

func alertSignals(t *testing.T, body string) []signal {
	t.Helper()
	var w alertmanagerWebhook
	if err := json.Unmarshal([]byte(body), &w); err != nil {
		t.Fatal(err)
	}
	sigs, err := w.signals()
	if err != nil {
		t.Fatal(err)
	}
	return sigs
}

func TestAlertFingerprintIsDeterministic(t *testing.T) {
	a := alertSignals(t, `{"alerts":[{"labels":{"alertname":"High","namespace":"ns","severity":"critical"},
		"annotations":{"summary":"one"},"startsAt":"2024-01-01T00:00:00Z"}]}`)[0]
	b := alertSignals(t, `{"alerts":[{"startsAt":"2030-01-01T00:00:00Z","annotations":{"summary":"two","x":"y"},
		"labels":{"severity":"critical","namespace":"ns","alertname":"High"}}]}`)[0]
	if !hex64.MatchString(a.Fingerprint) || a.Fingerprint != b.Fingerprint {
		t.Fatalf("key order/annotations/timestamps changed the fingerprint: %s vs %s", a.Fingerprint, b.Fingerprint)
	}
	for _, changed := range []string{
		`{"alerts":[{"labels":{"alertname":"High","namespace":"ns","severity":"warning"}}]}`,
		`{"alerts":[{"labels":{"alertname":"High","namespace":"ns","severity":"critical","pod":"p"}}]}`,
		`{"alerts":[{"labels":{"alertname":"High","namespace":"ns"}}]}`,
		// Same concatenated text, different boundaries.
		`{"alerts":[{"labels":{"alertname":"High","namespace":"nsseverity","":"critical"}}]}`,
	} {
		if fp := alertSignals(t, changed)[0].Fingerprint; fp == a.Fingerprint {
			t.Errorf("label change kept the fingerprint: %s", changed)
		}
	}
	if a.Namespace != "ns" || a.Details["alertname"] != "High" || a.Details["severity"] != "critical" {
		t.Fatalf("signal fields: %+v", a)
	}
	if def := alertSignals(t, `{"alerts":[{"labels":{"alertname":"X"}}]}`)[0]; def.Namespace != "default" {
		t.Fatalf("namespace default: %q", def.Namespace)
	}
}

func k8sSignal(t *testing.T, body string) signal {
	t.Helper()
	var e kubernetesEvent
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatal(err)
	}
	sigs, err := e.signals()
	if err != nil {
		t.Fatal(err)
	}
	return sigs[0]
}

func TestKubernetesEventFingerprintAndNamespace(t *testing.T) {
	base := k8sSignal(t, `{"kind":"Event","metadata":{"name":"e1","namespace":"meta"},
		"involvedObject":{"kind":"Pod","name":"web-0","namespace":"obj"},"reason":"BackOff","message":"m1","type":"Warning","count":1}`)
	same := k8sSignal(t, `{"reason":"BackOff","message":"other text","count":7,"type":"Normal",
		"involvedObject":{"name":"web-0","namespace":"obj","kind":"Pod"},"metadata":{"name":"e2"}}`)
	if !hex64.MatchString(base.Fingerprint) || base.Fingerprint != same.Fingerprint || base.Namespace != "obj" {
		t.Fatalf("message/count/metadata changed the fingerprint or namespace: %+v %+v", base, same)
	}
	other := k8sSignal(t, `{"involvedObject":{"kind":"Pod","name":"web-0","namespace":"obj"},"reason":"Killing"}`)
	if other.Fingerprint == base.Fingerprint {
		t.Fatal("reason change kept the fingerprint")
	}
	if s := k8sSignal(t, `{"metadata":{"namespace":"meta"},"involvedObject":{"kind":"Node","name":"n"},"reason":"R"}`); s.Namespace != "meta" {
		t.Fatalf("metadata.namespace fallback: %q", s.Namespace)
	}
	if s := k8sSignal(t, `{"involvedObject":{"kind":"Node","name":"n"},"reason":"R"}`); s.Namespace != "default" {
		t.Fatalf("default namespace: %q", s.Namespace)
	}
	if base.Details["kind"] != "Pod" || base.Details["name"] != "web-0" || base.Details["type"] != "Warning" || base.Details["message"] != "m1" {
		t.Fatalf("details %+v", base.Details)
	}
}

func TestSignalJSONFlattensDetails(t *testing.T) {
	s := signal{Fingerprint: "f", Status: "created", Occurrences: 2, Namespace: "n", Source: sourceK8sEvent,
		CorrelationID: "c", Details: map[string]any{"reason": "R"}}
	b, _ := json.Marshal(s)
	want := `{"correlation_id":"c","fingerprint":"f","namespace":"n","occurrences":2,"reason":"R","source":"kubernetes-event","status":"created"}`
	if string(b) != want {
		t.Fatalf("got %s", b)
	}
	s.Dedup = dedupDegraded
	b, _ = json.Marshal(s)
	want = `{"correlation_id":"c","dedup":"degraded","fingerprint":"f","namespace":"n","occurrences":2,"reason":"R","source":"kubernetes-event","status":"created"}`
	if string(b) != want {
		t.Fatalf("with dedup: got %s", b)
	}
}
