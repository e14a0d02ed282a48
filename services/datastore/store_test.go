package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var fixedNow = func() time.Time { return time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC) }

func openStore(t *testing.T, dir string) (*Store, ReplayInfo) {
	t.Helper()
	s, info, err := Open(dir, fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, info
}

func event(id, corr string) Event {
	return Event{ID: id, EventID: id, CorrelationID: corr, EventType: "t", Payload: []byte(`{"n":1}`)}
}

func TestStorePersistsAcrossRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "data") // created if missing
	s, _ := openStore(t, dir)
	for i := 0; i < 3; i++ {
		if _, created, err := s.Append(event(fmt.Sprint("e", i), "c1")); err != nil || !created {
			t.Fatal(created, err)
		}
	}
	s.Append(event("other", "c2"))
	s.Close()

	s2, info := openStore(t, dir)
	if info.Events != 4 || s2.Len() != 4 {
		t.Fatalf("replayed %+v, len %d", info, s2.Len())
	}
	got := s2.ByCorrelation("c1")
	if len(got) != 3 || got[0].ID != "e0" || got[2].ID != "e2" || string(got[1].Payload) != `{"n":1}` {
		t.Fatalf("events after restart: %+v", got)
	}
	if !got[0].ReceivedAt.Equal(fixedNow()) {
		t.Fatalf("received_at %v", got[0].ReceivedAt)
	}
	// Idempotency also holds across the restart.
	if _, created, _ := s2.Append(event("e1", "c1")); created || s2.Len() != 4 {
		t.Fatal("known event_id stored again after restart")
	}
}

func TestStoreToleratesTruncatedLastLine(t *testing.T) {
	dir := t.TempDir()
	s, _ := openStore(t, dir)
	s.Append(event("a", "c"))
	s.Close()
	path := filepath.Join(dir, EventsFile)
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("not json\n" + `{"id":"b","correlation_id":"c","event_ty`) // crash mid-write
	f.Close()

	s2, info := openStore(t, dir)
	if info.Events != 1 || info.SkippedLines != 1 || info.TruncatedBytes == 0 {
		t.Fatalf("replay info %+v", info)
	}
	s2.Append(event("b", "c"))
	s2.Close()

	s3, info := openStore(t, dir)
	if info.Events != 2 || info.TruncatedBytes != 0 || len(s3.ByCorrelation("c")) != 2 {
		t.Fatalf("after append on repaired file: %+v", info)
	}
	data, _ := os.ReadFile(path)
	if !strings.HasSuffix(string(data), "\n") {
		t.Fatal("file does not end with a newline")
	}
}

func TestStoreConcurrentAppendsAreExact(t *testing.T) {
	s, _ := openStore(t, t.TempDir())
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := 0
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				// Every worker sends the same ids: each must be stored once.
				_, ok, err := s.Append(event(fmt.Sprint("id", i), "c"))
				if err != nil {
					t.Error(err)
				}
				if ok {
					mu.Lock()
					created++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if created != 25 || s.Len() != 25 {
		t.Fatalf("created %d, len %d, want 25", created, s.Len())
	}
}

func TestOpenFailsOnUnusableDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	if _, _, err := Open(filepath.Join(file, "sub"), fixedNow); err == nil {
		t.Fatal("Open under a regular file succeeded")
	}
}
