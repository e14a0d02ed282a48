package main

import (
	"sync"
	"testing"
	"time"
)

func TestDedupTTL(t *testing.T) {
	clock := newFakeClock()
	d := newDedup(5*time.Minute, clock.Now)

	if created, n := d.observe("ns", "fp"); !created || n != 1 {
		t.Fatalf("first: %v %d", created, n)
	}
	for want := int64(2); want <= 4; want++ {
		clock.Advance(time.Minute)
		if created, n := d.observe("ns", "fp"); created || n != want {
			t.Fatalf("repeat: %v %d, want duplicate %d", created, n, want)
		}
	}
	// The window is anchored at the first sighting (t=0), not the last one.
	clock.Advance(time.Minute) // t = 4m
	if created, _ := d.observe("ns", "fp"); created {
		t.Fatal("expired too early")
	}
	clock.Advance(time.Minute) // t = 5m: window over
	if created, n := d.observe("ns", "fp"); !created || n != 1 {
		t.Fatalf("after TTL: %v %d, want created 1", created, n)
	}
	if created, n := d.observe("ns", "fp"); created || n != 2 {
		t.Fatalf("new window: %v %d", created, n)
	}
}

func TestDedupIsPerNamespace(t *testing.T) {
	d := newDedup(time.Minute, newFakeClock().Now)
	d.observe("a", "fp")
	if created, n := d.observe("b", "fp"); !created || n != 1 {
		t.Fatalf("same fingerprint in another namespace: %v %d", created, n)
	}
	if created, n := d.observe("a", "fp"); created || n != 2 {
		t.Fatalf("back in a: %v %d", created, n)
	}
}

func TestDedupSweepsExpiredEntries(t *testing.T) {
	clock := newFakeClock()
	d := newDedup(time.Minute, clock.Now)
	for _, fp := range []string{"1", "2", "3"} {
		d.observe("ns", fp)
	}
	clock.Advance(2 * time.Minute)
	d.observe("other", "x")
	if n := d.size(); n != 1 {
		t.Fatalf("size after sweep = %d, want 1", n)
	}
}

func TestDedupConcurrentCountsAreExact(t *testing.T) {
	d := newDedup(time.Hour, newFakeClock().Now)
	observeConcurrently(t, 16, 250, func() (bool, int64, error) {
		c, n := d.observe("ns", "fp")
		return c, n, nil
	})
}

// observeConcurrently makes workers*each sightings of one signal from
// workers goroutines and checks the counts are exact: every occurrence
// 1..workers*each handed out once, and exactly one sighting created.
func observeConcurrently(t *testing.T, workers, each int, observe func() (created bool, n int64, err error)) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := 0
	seen := map[int64]bool{}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				c, n, err := observe()
				mu.Lock()
				if c {
					created++
				}
				if err != nil || seen[n] {
					t.Errorf("occurrence %d (%v) handed out twice or failed", n, err)
				}
				seen[n] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	total := int64(workers * each)
	if created != 1 || len(seen) != int(total) || !seen[1] || !seen[total] {
		t.Fatalf("created %d, distinct occurrences %d of %d", created, len(seen), total)
	}
}
