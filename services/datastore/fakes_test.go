package main

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// memStore is an in-memory eventStore for the handler tests; down makes
// every call fail as an unreachable database does, dbErr as one that answers
// with an error.
type memStore struct {
	mu     sync.Mutex
	events []Event
	byID   map[string]int
	down   error
	dbErr  *pgconn.PgError
	now    func() time.Time
}

func newMemStore() *memStore {
	return &memStore{byID: map[string]int{}, now: time.Now}
}

func (m *memStore) fail() error {
	if m.down != nil {
		return m.down
	}
	if m.dbErr != nil {
		return m.dbErr
	}
	return nil
}

func (m *memStore) Append(_ context.Context, ev Event) (Event, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fail(); err != nil {
		return Event{}, false, err
	}
	if i, ok := m.byID[ev.ID]; ok {
		return m.events[i], false, nil
	}
	ev.ReceivedAt = m.now().UTC()
	m.byID[ev.ID] = len(m.events)
	m.events = append(m.events, ev)
	return ev, true, nil
}

func (m *memStore) ByCorrelation(_ context.Context, id string) ([]Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fail(); err != nil {
		return nil, err
	}
	out := []Event{}
	for _, ev := range m.events {
		if ev.CorrelationID == id {
			out = append(out, ev)
		}
	}
	return out, nil
}

func (m *memStore) Check(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fail()
}
