package main

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Event is one stored audit event.
type Event struct {
	ID            string          `json:"id"`
	EventID       string          `json:"event_id,omitempty"`
	CorrelationID string          `json:"correlation_id"`
	EventType     string          `json:"event_type"`
	Source        string          `json:"source"`
	Namespace     string          `json:"namespace"`
	Fingerprint   string          `json:"fingerprint"`
	Payload       json.RawMessage `json:"payload"`
	ReceivedAt    time.Time       `json:"received_at"`
}

// eventStore keeps the events; the handlers see only this.
type eventStore interface {
	// Append stores ev unless an event with its id exists; it returns the
	// stored event and whether it was new.
	Append(ctx context.Context, ev Event) (Event, bool, error)
	// ByCorrelation returns the events of one correlation id in arrival order.
	ByCorrelation(ctx context.Context, id string) ([]Event, error)
	// Check reports whether the database answers and has the schema this build wants.
	Check(ctx context.Context) error
}

// pgStore keeps events in PostgreSQL; an event is stored once its INSERT committed.
type pgStore struct {
	pool *pgxpool.Pool
	want schema

	schemaOK atomic.Bool // verified once: a running datastore only pings after that
}

// unavailable reports whether err means the database could not be reached or
// is going away (a connection error, or SQLSTATE class 08 connection, 57
// operator intervention such as a shutdown, 53 insufficient resources), as
// opposed to the database answering a query with an error.
func unavailable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		class := pgErr.Code[:min(2, len(pgErr.Code))]
		return class == "08" || class == "57" || class == "53"
	}
	return err != nil
}

const eventColumns = `id, event_id, correlation_id, event_type, source, namespace, fingerprint, payload, received_at`

func (s *pgStore) Append(ctx context.Context, ev Event) (Event, bool, error) {
	rows, err := s.pool.Query(ctx, `INSERT INTO events (id, event_id, correlation_id, event_type, source, namespace, fingerprint, payload)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING RETURNING `+eventColumns,
		ev.ID, ev.EventID, ev.CorrelationID, ev.EventType, ev.Source, ev.Namespace, ev.Fingerprint, ev.Payload)
	if err != nil {
		return Event{}, false, err
	}
	created, err := collect(rows)
	if err != nil {
		return Event{}, false, err
	}
	if len(created) == 1 {
		return created[0], true, nil
	}
	rows, err = s.pool.Query(ctx, `SELECT `+eventColumns+` FROM events WHERE id = $1`, ev.ID)
	if err != nil {
		return Event{}, false, err
	}
	have, err := collect(rows)
	if err == nil && len(have) != 1 {
		err = errors.New("event " + ev.ID + " neither inserted nor found")
	}
	if err != nil {
		return Event{}, false, err
	}
	return have[0], false, nil
}

func (s *pgStore) ByCorrelation(ctx context.Context, id string) ([]Event, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+eventColumns+` FROM events WHERE correlation_id = $1 ORDER BY seq`, id)
	if err != nil {
		return nil, err
	}
	return collect(rows)
}

func (s *pgStore) Check(ctx context.Context) error {
	if s.schemaOK.Load() {
		return s.pool.Ping(ctx)
	}
	if err := checkSchema(ctx, s.pool, s.want); err != nil {
		return err
	}
	s.schemaOK.Store(true)
	return nil
}

func collect(rows pgx.Rows) ([]Event, error) {
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Event, error) {
		var ev Event
		var payload []byte
		err := row.Scan(&ev.ID, &ev.EventID, &ev.CorrelationID, &ev.EventType, &ev.Source, &ev.Namespace,
			&ev.Fingerprint, &payload, &ev.ReceivedAt)
		ev.Payload = json.RawMessage(payload)
		ev.ReceivedAt = ev.ReceivedAt.UTC()
		return ev, err
	})
}
