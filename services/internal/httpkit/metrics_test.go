package httpkit

import (
	"strings"
	"sync"
	"testing"

	"example.com/e2e-services/internal/testutil"
)

func TestMetricsText(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("jobs_total", "Jobs done.\nSecond line \\ here.", "kind")
	g := r.Gauge("queue_depth", "Items queued.")
	plain := r.Counter("plain_total", "No labels.")

	c.Inc(`a"b\c` + "\n")
	c.Add(2.5, "z")
	g.Set(7)
	g.Add(-2)

	rec := testutil.Do(t, r, "GET", "/metrics", "")
	if ct := rec.Header().Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	text := rec.Body.String()
	want := `# HELP jobs_total Jobs done.\nSecond line \\ here.
# TYPE jobs_total counter
jobs_total{kind="a\"b\\c\n"} 1
jobs_total{kind="z"} 2.5
# HELP plain_total No labels.
# TYPE plain_total counter
plain_total 0
# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.
# TYPE process_start_time_seconds gauge
process_start_time_seconds `
	if !strings.Contains(text, want) {
		t.Fatalf("got:\n%s\nwant to contain:\n%s", text, want)
	}
	if !strings.Contains(text, "# TYPE queue_depth gauge\nqueue_depth 5\n") {
		t.Fatalf("gauge wrong:\n%s", text)
	}
	if plain.Value() != 0 || c.Value("z") != 2.5 || g.Value() != 5 {
		t.Fatal("Value accessors disagree with the text")
	}
}

func TestCountersAreExactUnderConcurrency(t *testing.T) {
	c := NewRegistry().Counter("n_total", "n", "l")
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 500; j++ {
				c.Inc("x")
			}
		}()
	}
	wg.Wait()
	if got := c.Value("x"); got != 10000 {
		t.Fatalf("got %v", got)
	}
}

func TestMetricsMisuse(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("a_total", "a", "l")
	mustPanic(t, "wrong label count", func() { c.Inc() })
	mustPanic(t, "negative add", func() { c.Add(-1, "x") })
	mustPanic(t, "duplicate name", func() { r.Gauge("a_total", "again") })
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: no panic", what)
		}
	}()
	f()
}
