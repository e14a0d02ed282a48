package httpkit

import (
	"encoding/json"
	"net/http"
)

// Problem is an RFC 7807 error body, extended with the request id so a
// failing E2E assertion can be matched to the server log line.
type Problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	Instance  string `json:"instance"`
	RequestID string `json:"request_id"`
}

// WriteJSON writes v as application/json with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	writeBody(w, "application/json", status, v)
}

// WriteProblem writes an application/problem+json error for r.
func WriteProblem(w http.ResponseWriter, r *http.Request, status int, detail string) {
	writeBody(w, "application/problem+json", status, Problem{
		Type:      "about:blank",
		Title:     http.StatusText(status),
		Status:    status,
		Detail:    detail,
		Instance:  r.URL.Path,
		RequestID: RequestID(r.Context()),
	})
}

func writeBody(w http.ResponseWriter, contentType string, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only our own response types get here; failing loudly beats a
		// half-written body.
		http.Error(w, `{"error":"response encoding failed"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
