package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"example.com/e2e-services/internal/httpkit"
)

// outboxLimit bounds memory while the datastore is down; beyond it the
// oldest events are dropped (and counted as failed).
const outboxLimit = 10000

// auditEvent is what the datastore's POST /api/v1/events receives.
type auditEvent struct {
	EventID       string `json:"event_id"`
	CorrelationID string `json:"correlation_id"`
	EventType     string `json:"event_type"`
	Source        string `json:"source"`
	Namespace     string `json:"namespace"`
	Fingerprint   string `json:"fingerprint"`
	Payload       signal `json:"payload"`
}

type outboxItem struct {
	seq           uint64
	correlationID string
	body          []byte // marshalled at enqueue: a snapshot, never mutated
}

// outbox decouples ingestion from the datastore: handlers enqueue, one
// worker delivers in order, retrying every interval while the datastore is
// unavailable. The event_id makes redelivery after an ambiguous failure
// harmless, since the datastore dedups on it.
type outbox struct {
	url      string
	client   *http.Client
	interval time.Duration
	limit    int
	logger   *slog.Logger

	sent, failed *httpkit.Counter
	pending      *httpkit.Gauge

	mu      sync.Mutex
	queue   []outboxItem
	nextSeq uint64
	failing bool   // last attempt failed; used to log transitions, not every retry
	token   string // bearer token for the datastore; empty: none sent

	wake chan struct{}
}

func newOutbox(datastoreURL string, interval time.Duration, reg *httpkit.Registry, logger *slog.Logger) *outbox {
	return &outbox{
		url:      datastoreURL + "/api/v1/events",
		client:   &http.Client{Timeout: 5 * time.Second},
		interval: interval,
		limit:    outboxLimit,
		logger:   logger,
		sent:     reg.Counter("gateway_audit_events_sent_total", "Audit events accepted by the datastore."),
		failed:   reg.Counter("gateway_audit_events_failed_total", "Failed audit delivery attempts, plus events dropped because the outbox was full."),
		pending:  reg.Gauge("gateway_audit_outbox_pending", "Audit events waiting for delivery."),
		wake:     make(chan struct{}, 1),
	}
}

// enqueue never blocks on the datastore.
func (o *outbox) enqueue(ev auditEvent) {
	body, err := json.Marshal(ev)
	if err != nil {
		o.failed.Inc()
		o.logger.Error("audit event not encodable", "event_id", ev.EventID, "error", err.Error())
		return
	}
	o.mu.Lock()
	if len(o.queue) >= o.limit {
		o.queue[0] = outboxItem{}
		o.queue = o.queue[1:]
		o.failed.Inc()
		o.logger.Warn("audit outbox full, dropped oldest event", "limit", o.limit)
	}
	o.nextSeq++
	o.queue = append(o.queue, outboxItem{seq: o.nextSeq, correlationID: ev.CorrelationID, body: body})
	o.pending.Set(float64(len(o.queue)))
	o.mu.Unlock()

	select {
	case o.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// len returns the number of queued events.
func (o *outbox) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queue)
}

// run delivers until ctx is done: immediately when woken, every interval
// while the datastore fails.
func (o *outbox) run(ctx context.Context) {
	for {
		if o.flush(ctx) {
			select {
			case <-ctx.Done():
				return
			case <-o.wake:
			}
			continue
		}
		t := time.NewTimer(o.interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// flush sends queued events in order until the queue is empty (true) or an
// attempt fails or ctx ends (false). Only one goroutine may flush at a time.
func (o *outbox) flush(ctx context.Context) bool {
	for {
		o.mu.Lock()
		if len(o.queue) == 0 {
			o.mu.Unlock()
			return true
		}
		item := o.queue[0]
		o.mu.Unlock()

		permanent, err := o.send(ctx, item)
		if err != nil && ctx.Err() != nil {
			return false // shutting down: not the datastore's fault
		}
		if err != nil {
			o.failed.Inc()
			if permanent {
				o.logger.Error("audit event rejected, dropping it", "error", err.Error())
				o.pop(item.seq)
				continue
			}
			o.setFailing(true, err)
			return false
		}
		o.setFailing(false, nil)
		o.sent.Inc()
		o.pop(item.seq)
	}
}

// pop removes item seq if it is still the head (it may have been dropped
// by enqueue while it was in flight).
func (o *outbox) pop(seq uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.queue) > 0 && o.queue[0].seq == seq {
		o.queue[0] = outboxItem{}
		o.queue = o.queue[1:]
	}
	o.pending.Set(float64(len(o.queue)))
}

func (o *outbox) setFailing(failing bool, err error) {
	o.mu.Lock()
	was := o.failing
	o.failing = failing
	o.mu.Unlock()
	switch {
	case failing && !was:
		o.logger.Warn("audit delivery failing, will retry", "retry_interval", o.interval.String(), "error", err.Error())
	case !failing && was:
		o.logger.Info("audit delivery recovered")
	}
}

// send POSTs one event. A 4xx other than 408/429 is permanent: retrying
// the same body would fail forever and block the queue behind it.
func (o *outbox) send(ctx context.Context, item outboxItem) (permanent bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.url, bytes.NewReader(item.body))
	if err != nil {
		return true, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(httpkit.HeaderCorrelationID, item.correlationID)
	if o.token != "" {
		req.Header.Set("Authorization", "Bearer "+o.token)
	}
	resp, err := o.client.Do(req)
	if err != nil {
		return false, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return false, nil
	}
	err = fmt.Errorf("datastore answered %s", resp.Status)
	retry := resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests
	return !retry, err
}
