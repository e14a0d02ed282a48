package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"example.com/e2e-services/internal/httpkit"
)

func newBareOutbox(url string) *outbox {
	return newOutbox(url, 10*time.Millisecond, httpkit.NewRegistry(), httpkit.NewLogger("gateway", io.Discard))
}

func TestOutboxDropsOldestWhenFull(t *testing.T) {
	o := newBareOutbox(unreachableURL(t))
	o.limit = 3
	for i := 0; i < 5; i++ {
		o.enqueue(auditEvent{EventID: fmt.Sprint(i)})
	}
	if o.len() != 3 || o.failed.Value() != 2 || o.pending.Value() != 3 {
		t.Fatalf("len %d failed %v pending %v", o.len(), o.failed.Value(), o.pending.Value())
	}
	if string(o.queue[0].body) == "" || o.queue[0].seq != 3 {
		t.Fatalf("oldest not dropped: head seq %d", o.queue[0].seq)
	}
}

func TestOutboxDropsPermanentlyRejectedEvents(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
	}))
	defer srv.Close()
	o := newBareOutbox(srv.URL)
	o.enqueue(auditEvent{EventID: "x"})
	if !o.flush(context.Background()) || o.len() != 0 || o.failed.Value() != 1 || o.sent.Value() != 0 {
		t.Fatalf("a 400 must be dropped, not retried forever: len %d failed %v", o.len(), o.failed.Value())
	}
}

func TestOutboxFlushStopsAtFirstRetryableFailure(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	o := newBareOutbox(srv.URL)
	o.enqueue(auditEvent{EventID: "a"})
	o.enqueue(auditEvent{EventID: "b"})
	if o.flush(context.Background()) || calls != 1 || o.len() != 2 {
		t.Fatalf("flush: calls %d len %d", calls, o.len())
	}
}

func TestOutboxFlushIsBoundedByContext(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release // a datastore that hangs until the test ends
	}))
	defer srv.Close()
	defer close(release)
	o := newBareOutbox(srv.URL)
	o.enqueue(auditEvent{EventID: "a"})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if o.flush(ctx) || time.Since(start) > 2*time.Second || o.len() != 1 {
		t.Fatal("flush not bounded by its context")
	}
	if o.failed.Value() != 0 {
		t.Fatal("attempt cut short by shutdown counted as datastore failure")
	}
}
