package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// EventsFile is the append-only log inside DATA_DIR.
const EventsFile = "events.jsonl"

// Event is one stored audit event, also the line format of EventsFile.
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

// ReplayInfo says what Open found in an existing file.
type ReplayInfo struct {
	Events         int   // events loaded
	SkippedLines   int   // complete lines that were not valid events
	TruncatedBytes int64 // partial last line cut off (crash mid-write)
}

// Store keeps every event in memory and appends each new one to the file,
// fsynced before Append returns, so an acknowledged event survives a crash.
type Store struct {
	now func() time.Time

	mu     sync.Mutex
	f      *os.File
	size   int64          // bytes of complete lines in f
	events []Event        // arrival order
	byID   map[string]int // id -> index in events, for idempotency
	byCorr map[string][]int
}

// Open creates dir if needed and replays its events file.
func Open(dir string, now func() time.Time) (*Store, ReplayInfo, error) {
	var info ReplayInfo
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, info, err
	}
	f, err := os.OpenFile(filepath.Join(dir, EventsFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, info, err
	}
	s := &Store{now: now, f: f, byID: map[string]int{}, byCorr: map[string][]int{}}
	if info, err = s.replay(); err != nil {
		f.Close()
		return nil, info, err
	}
	return s, info, nil
}

// replay loads complete lines and cuts off a trailing partial one, so the
// next append starts on a fresh line instead of gluing onto garbage.
func (s *Store) replay() (ReplayInfo, error) {
	var info ReplayInfo
	r := bufio.NewReader(s.f)
	for {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			if len(line) > 0 {
				info.TruncatedBytes = int64(len(line))
				if terr := s.f.Truncate(s.size); terr != nil {
					return info, fmt.Errorf("truncating partial last line: %w", terr)
				}
			}
			break
		}
		if err != nil {
			return info, err
		}
		s.size += int64(len(line))
		var ev Event
		if json.Unmarshal(line, &ev) != nil || ev.ID == "" {
			info.SkippedLines++
			continue
		}
		if _, dup := s.byID[ev.ID]; dup {
			continue
		}
		s.index(ev)
		info.Events++
	}
	_, err := s.f.Seek(s.size, io.SeekStart)
	return info, err
}

func (s *Store) index(ev Event) {
	s.byID[ev.ID] = len(s.events)
	s.byCorr[ev.CorrelationID] = append(s.byCorr[ev.CorrelationID], len(s.events))
	s.events = append(s.events, ev)
}

// Append stores ev unless an event with the same id exists; it returns the
// stored event and whether it was new. ev.ID must be set.
func (s *Store) Append(ev Event) (Event, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.byID[ev.ID]; ok {
		return s.events[i], false, nil
	}
	ev.ReceivedAt = s.now().UTC()
	line, err := json.Marshal(ev)
	if err != nil {
		return Event{}, false, err
	}
	line = append(line, '\n')
	if _, err := s.f.Write(line); err != nil {
		s.rollback()
		return Event{}, false, fmt.Errorf("writing event: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		s.rollback()
		return Event{}, false, fmt.Errorf("syncing event: %w", err)
	}
	s.size += int64(len(line))
	s.index(ev)
	return ev, true, nil
}

// rollback drops a partially written line so the file stays line-aligned.
func (s *Store) rollback() {
	if s.f.Truncate(s.size) == nil {
		_, _ = s.f.Seek(s.size, io.SeekStart)
	}
}

// ByCorrelation returns the events of one correlation id in arrival order.
func (s *Store) ByCorrelation(id string) []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Event, 0, len(s.byCorr[id]))
	for _, i := range s.byCorr[id] {
		out = append(out, s.events[i])
	}
	return out
}

// Len returns the number of stored events.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.events)
}

// Close closes the file; the store must not be used afterwards.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return errors.New("store already closed")
	}
	err := s.f.Close()
	s.f = nil
	return err
}
