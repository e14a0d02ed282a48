package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"sort"

	"example.com/e2e-services/internal/httpkit"
)

// Signal sources, also the `source` metric label.
const (
	sourceAlertmanager = "alertmanager"
	sourceK8sEvent     = "kubernetes-event"
)

// signal is one normalised alert or event. Details are the source-specific
// fields, flattened into the response object and the audit payload.
type signal struct {
	Fingerprint   string
	Status        string // "created" or "duplicate"
	Occurrences   int64
	Namespace     string
	Source        string
	CorrelationID string
	Dedup         string // dedupRedis, dedupDegraded or dedupMemory
	Details       map[string]any
}

func (s signal) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(s.Details)+7)
	for k, v := range s.Details {
		m[k] = v
	}
	m["fingerprint"] = s.Fingerprint
	m["status"] = s.Status
	m["occurrences"] = s.Occurrences
	m["namespace"] = s.Namespace
	m["source"] = s.Source
	m["correlation_id"] = s.CorrelationID
	if s.Dedup != "" {
		m["dedup"] = s.Dedup
	}
	return json.Marshal(m)
}

// alertmanagerWebhook holds the parts of the webhook we use; the rest
// (version, receiver, groupLabels, annotations, timestamps) is ignored.
type alertmanagerWebhook struct {
	Alerts []struct {
		Labels map[string]string `json:"labels"`
	} `json:"alerts"`
}

func (p alertmanagerWebhook) signals() ([]signal, error) {
	if len(p.Alerts) == 0 {
		return nil, badRequest("alerts must be a non-empty list")
	}
	out := make([]signal, 0, len(p.Alerts))
	for i, a := range p.Alerts {
		if a.Labels["alertname"] == "" {
			return nil, badRequest("alerts[%d].labels.alertname is required", i)
		}
		labels := a.Labels
		out = append(out, signal{
			Fingerprint: alertFingerprint(labels),
			Namespace:   orDefault(labels["namespace"]),
			Source:      sourceAlertmanager,
			Details: map[string]any{
				"alertname": labels["alertname"],
				"severity":  labels["severity"],
				"labels":    labels,
			},
		})
	}
	return out, nil
}

// kubernetesEvent holds the Event fields we use.
type kubernetesEvent struct {
	Metadata struct {
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	InvolvedObject struct {
		Kind      string `json:"kind"`
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"involvedObject"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
	Type    string `json:"type"`
}

func (e kubernetesEvent) signals() ([]signal, error) {
	obj := e.InvolvedObject
	switch {
	case e.Reason == "":
		return nil, badRequest("reason is required")
	case obj.Kind == "":
		return nil, badRequest("involvedObject.kind is required")
	case obj.Name == "":
		return nil, badRequest("involvedObject.name is required")
	}
	ns := obj.Namespace
	if ns == "" {
		ns = e.Metadata.Namespace
	}
	ns = orDefault(ns)
	return []signal{{
		Fingerprint: fingerprint(sourceK8sEvent, ns, obj.Kind, obj.Name, e.Reason),
		Namespace:   ns,
		Source:      sourceK8sEvent,
		Details: map[string]any{
			"reason":  e.Reason,
			"kind":    obj.Kind,
			"name":    obj.Name,
			"type":    e.Type,
			"message": e.Message,
		},
	}}, nil
}

// alertFingerprint hashes the source and the labels sorted by key, so
// annotations, timestamps and key order do not matter but any label does.
func alertFingerprint(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := []string{sourceAlertmanager}
	for _, k := range keys {
		parts = append(parts, k, labels[k])
	}
	return fingerprint(parts...)
}

// fingerprint is SHA-256 over the JSON array of parts: JSON quoting keeps
// it unambiguous (no separator inside a value can fake a boundary).
func fingerprint(parts ...string) string {
	b, _ := json.Marshal(parts) // a []string always marshals
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func orDefault(ns string) string {
	if ns == "" {
		return "default"
	}
	return ns
}

func badRequest(format string, args ...any) error {
	return httpkit.Errorf(http.StatusBadRequest, format, args...)
}
