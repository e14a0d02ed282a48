package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"

	"example.com/e2e-services/internal/httpkit"
)

// maxEventBytes is the contract's fixed 1 MiB body limit.
const maxEventBytes = 1 << 20

type server struct {
	store   *Store
	dataDir string

	stored    *httpkit.Counter
	duplicate *httpkit.Counter
}

// newHandler wires the datastore routes onto app and returns the root handler.
func newHandler(app *httpkit.App, store *Store, dataDir, writeToken string) http.Handler {
	s := &server{
		store:     store,
		dataDir:   dataDir,
		stored:    app.Metrics.Counter("datastore_events_stored_total", "Events appended to the event log."),
		duplicate: app.Metrics.Counter("datastore_events_duplicate_total", "Events not stored again because their event_id was known."),
	}
	app.Router.HandleFunc(http.MethodGet, "/ready", s.ready)
	app.Router.HandleFunc(http.MethodPost, "/api/v1/events", withToken(s.postEvent, writeToken))
	app.Router.HandleFunc(http.MethodGet, "/api/v1/events", s.listEvents)
	return app.Handler()
}

// ready probes that DATA_DIR still accepts writes (a full or read-only
// volume would otherwise only show up as failing POSTs).
func (s *server) ready(w http.ResponseWriter, _ *http.Request) {
	f, err := os.CreateTemp(s.dataDir, ".ready-*")
	if err == nil {
		name := f.Name()
		err = f.Close()
		_ = os.Remove(name)
	}
	if err != nil {
		httpkit.WriteReady(w, false, map[string]string{"data_dir": "not writable: " + err.Error()})
		return
	}
	httpkit.WriteReady(w, true, map[string]string{"data_dir": "writable"})
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
	stored, created, err := s.store.Append(ev)
	if err != nil {
		httpkit.WriteProblem(w, r, http.StatusInternalServerError, err.Error())
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
	events := s.store.ByCorrelation(id)
	httpkit.WriteJSON(w, http.StatusOK, map[string]any{
		"correlation_id": id,
		"count":          len(events),
		"events":         events,
	})
}
