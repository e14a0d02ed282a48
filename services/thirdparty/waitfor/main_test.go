package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestWaitsUntilTheURLAnswers200(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls++; calls < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	var out bytes.Buffer
	if code := run([]string{srv.URL, "5s"}, &out); code != 0 || calls != 3 {
		t.Fatalf("exit %d after %d calls: %s", code, calls, out.String())
	}
}

func TestGivesUpSayingWhatItSawLast(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	var out bytes.Buffer
	if code := run([]string{srv.URL, "300ms"}, &out); code != 1 || !strings.Contains(out.String(), "503") {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	// while it waits, its log says why, once per new answer
	if n := strings.Count(out.String(), srv.URL+": 503"); n != 1 {
		t.Fatalf("%d lines for the same answer: %s", n, out.String())
	}
	if code := run(nil, &out); code != 2 {
		t.Fatalf("no args: exit %d", code)
	}
}
