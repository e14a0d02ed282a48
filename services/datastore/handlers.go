package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"time"

	"example.com/e2e-services/internal/httpkit"
)

// maxEventBytes is the contract's fixed 1 MiB body limit.
const maxEventBytes = 1 << 20

type server struct {
	store   eventStore
	timeout time.Duration // of each request's database calls

	stored    *httpkit.Counter
	duplicate *httpkit.Counter
}

// newHandler wires the datastore routes onto app and returns the root handler.
func newHandler(app *httpkit.App, store eventStore, timeout time.Duration, writeToken string) http.Handler {
	s := &server{
		store:     store,
		timeout:   timeout,
		stored:    app.Metrics.Counter("datastore_events_stored_total", "Events appended to the event log."),
		duplicate: app.Metrics.Counter("datastore_events_duplicate_total", "Events not stored again because their event_id was known."),
	}
	app.Router.HandleFunc(http.MethodGet, "/ready", s.ready)
	app.Router.HandleFunc(http.MethodPost, "/api/v1/events", withToken(s.postEvent, writeToken))
	app.Router.HandleFunc(http.MethodGet, "/api/v1/events", s.listEvents)
	return app.Handler()
}

// ready says whether the database answers and has this build's schema. The
// manifest makes it the startup probe: once started, the datastore stays in
// its Service while the database is down and answers 503 itself.
func (s *server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	if err := s.store.Check(ctx); err != nil {
		httpkit.WriteReady(w, false, map[string]string{"database": err.Error()})
		return
	}
	httpkit.WriteReady(w, true, map[string]string{"database": "ok"})
}

// storeFailed answers a failed store call: 503 when the database could not
// be reached (the client may retry), 500 when it answered with an error.
func (s *server) storeFailed(w http.ResponseWriter, r *http.Request, err error) {
	if unavailable(err) {
		httpkit.WriteProblem(w, r, http.StatusServiceUnavailable, "database unavailable: "+err.Error())
		return
	}
	httpkit.WriteProblem(w, r, http.StatusInternalServerError, err.Error())
}

// eventRequest is the POST body; Payload stays raw JSON (only compacted on store).
type eventRequest struct {
	EventID       string          `json:"event_id"`
	CorrelationID string          `json:"correlation_id"`
	EventType     string          `json:"event_type"`
	Source        string          `json:"source"`
	Namespace     string          `json:"namespace"`
	Fingerprint   string          `json:"fingerprint"`
	Payload       json.RawMessage `json:"payload"`
}

func (s *server) postEvent(w http.ResponseWriter, r *http.Request) {
	var req eventRequest
	if err := httpkit.DecodeJSON(w, r, maxEventBytes, &req); err != nil {
		httpkit.WriteError(w, r, err)
		return
	}
	ev, err := toEvent(req)
	if err != nil {
		httpkit.WriteError(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	stored, created, err := s.store.Append(ctx, ev)
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	if !created {
		s.duplicate.Inc()
		httpkit.WriteJSON(w, http.StatusOK, stored)
		return
	}
	s.stored.Inc()
	httpkit.WriteJSON(w, http.StatusCreated, stored)
}

// toEvent validates a request and assigns the id (event_id or generated).
func toEvent(req eventRequest) (Event, error) {
	switch {
	case req.CorrelationID == "":
		return Event{}, httpkit.Errorf(http.StatusBadRequest, "correlation_id is required")
	case req.EventType == "":
		return Event{}, httpkit.Errorf(http.StatusBadRequest, "event_type is required")
	}
	p := bytes.TrimSpace(req.Payload)
	switch {
	case len(p) == 0 || string(p) == "null":
		p = []byte("{}")
	case p[0] != '{':
		return Event{}, httpkit.Errorf(http.StatusBadRequest, "payload must be a JSON object")
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, p); err != nil {
		return Event{}, httpkit.Errorf(http.StatusBadRequest, "payload: %v", err)
	}
	p = compact.Bytes()
	id := req.EventID
	if id == "" {
		id = httpkit.NewID()
	}
	return Event{
		ID:            id,
		EventID:       req.EventID,
		CorrelationID: req.CorrelationID,
		EventType:     req.EventType,
		Source:        req.Source,
		Namespace:     req.Namespace,
		Fingerprint:   req.Fingerprint,
		Payload:       p,
	}, nil
}

func (s *server) listEvents(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("correlation_id")
	if id == "" {
		httpkit.WriteProblem(w, r, http.StatusBadRequest, "query parameter correlation_id is required")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	events, err := s.store.ByCorrelation(ctx, id)
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	httpkit.WriteJSON(w, http.StatusOK, map[string]any{
		"correlation_id": id,
		"count":          len(events),
		"events":         events,
	})
}
