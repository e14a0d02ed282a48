package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"example.com/e2e-services/internal/httpkit"
)

type gateway struct {
	cfg    config
	dedup  *failoverDedup
	outbox *outbox
	probe  *http.Client
	logger *slog.Logger

	received, created, duplicate *httpkit.Counter
}

// newGateway registers the gateway routes and metrics on app.
func newGateway(app *httpkit.App, cfg config, now func() time.Time) *gateway {
	reg := app.Metrics
	g := &gateway{
		cfg:       cfg,
		dedup:     newFailoverDedup(cfg, now, reg, app.Logger),
		outbox:    newOutbox(cfg.DatastoreURL, cfg.AuditRetryInterval, reg, app.Logger),
		probe:     &http.Client{},
		logger:    app.Logger,
		received:  reg.Counter("gateway_signals_received_total", "Valid signals received.", "source"),
		created:   reg.Counter("gateway_signals_created_total", "Signals that were new within the dedup window.", "source"),
		duplicate: reg.Counter("gateway_signals_duplicate_total", "Signals deduplicated within the dedup window.", "source"),
	}
	g.outbox.token = cfg.DatastoreToken
	for _, src := range []string{sourceAlertmanager, sourceK8sEvent} {
		// Export 0 before the first signal so tests can diff from a baseline.
		g.received.Add(0, src)
		g.created.Add(0, src)
		g.duplicate.Add(0, src)
	}
	app.Router.HandleFunc(http.MethodGet, "/ready", g.ready)
	app.Router.HandleFunc(http.MethodPost, "/api/v1/signals/alertmanager", ingest[alertmanagerWebhook](g))
	app.Router.HandleFunc(http.MethodPost, "/api/v1/signals/kubernetes-event", ingest[kubernetesEvent](g))
	return g
}

// handler is the full middleware chain for the server.
func (g *gateway) handler(app *httpkit.App) http.Handler {
	return app.Handler(httpkit.CORS(g.cfg.CORSOrigins))
}

// ready needs the datastore. Redis is reported but not required: without
// it the gateway deduplicates in process.
func (g *gateway) ready(w http.ResponseWriter, r *http.Request) {
	redisStatus := make(chan string, 1)
	go func() { redisStatus <- g.dedup.status(r.Context()) }() // bounded by REDIS_TIMEOUT

	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	ok, deps := true, map[string]string{"datastore": "ok"}
	if err := g.pingDatastore(ctx); err != nil {
		ok, deps["datastore"] = false, "unreachable: "+err.Error()
	}
	deps["redis"] = <-redisStatus
	httpkit.WriteReady(w, ok, deps)
}

func (g *gateway) pingDatastore(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.cfg.DatastoreURL+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := g.probe.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /health answered %s", resp.Status)
	}
	return nil
}

// signalSource is a decoded request body that yields validated signals.
type signalSource interface {
	signals() ([]signal, error)
}

// ingest handles one webhook type: decode, validate, dedup, audit, answer.
func ingest[T signalSource](g *gateway) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		corr := httpkit.IDOrNew(r.Header.Get(httpkit.HeaderCorrelationID))
		w.Header().Set(httpkit.HeaderCorrelationID, corr)

		var body T
		if err := httpkit.DecodeJSON(w, r, g.cfg.MaxBodyBytes, &body); err != nil {
			httpkit.WriteError(w, r, err)
			return
		}
		sigs, err := body.signals()
		if err != nil {
			httpkit.WriteError(w, r, err)
			return
		}
		status, mode := http.StatusAccepted, ""
		for i := range sigs {
			if g.accept(r.Context(), &sigs[i], corr) {
				status = http.StatusCreated
			}
			if mode != dedupDegraded {
				mode = sigs[i].Dedup
			}
		}
		w.Header().Set(headerDedup, mode)
		httpkit.WriteJSON(w, status, map[string]any{"signals": sigs})
	}
}

// accept dedups one signal, counts it and queues its audit event; it
// reports whether the signal was new.
func (g *gateway) accept(ctx context.Context, s *signal, corr string) bool {
	created, n, mode := g.dedup.observe(ctx, s.Namespace, s.Fingerprint)
	s.CorrelationID = corr
	s.Occurrences = n
	s.Dedup = mode
	g.received.Inc(s.Source)
	eventType := "signal.duplicate"
	if created {
		s.Status = "created"
		eventType = "signal.created"
		g.created.Inc(s.Source)
	} else {
		s.Status = "duplicate"
		g.duplicate.Inc(s.Source)
	}
	g.outbox.enqueue(auditEvent{
		EventID:       httpkit.NewID(),
		CorrelationID: corr,
		EventType:     eventType,
		Source:        s.Source,
		Namespace:     s.Namespace,
		Fingerprint:   s.Fingerprint,
		Payload:       *s,
	})
	return created
}
