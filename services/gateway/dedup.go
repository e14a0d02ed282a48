package main

import (
	"sync"
	"time"
)

// dedup remembers fingerprints per namespace for ttl after their first
// sighting. One mutex guards everything: the critical section is a couple
// of map operations, and it makes occurrence counts exact under load.
type dedup struct {
	ttl time.Duration
	now func() time.Time

	mu        sync.Mutex
	byNS      map[string]map[string]*dedupEntry // namespace -> fingerprint -> entry
	lastSweep time.Time
}

type dedupEntry struct {
	first       time.Time
	occurrences int64
}

func newDedup(ttl time.Duration, now func() time.Time) *dedup {
	return &dedup{ttl: ttl, now: now, byNS: map[string]map[string]*dedupEntry{}, lastSweep: now()}
}

// observe records one sighting and reports whether it is new (created) and
// how many times it was seen in the current window.
func (d *dedup) observe(namespace, fp string) (created bool, occurrences int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	d.sweep(now)

	ns := d.byNS[namespace]
	if ns == nil {
		ns = map[string]*dedupEntry{}
		d.byNS[namespace] = ns
	}
	e := ns[fp]
	if e == nil || now.Sub(e.first) >= d.ttl {
		ns[fp] = &dedupEntry{first: now, occurrences: 1}
		return true, 1
	}
	e.occurrences++
	return false, e.occurrences
}

// set overwrites the entry for namespace+fp with what the shared store
// reported (first sighting and count), so that if the store becomes
// unavailable, in-process dedup continues from the last known state
// instead of treating every known signal as new.
func (d *dedup) set(namespace, fp string, first time.Time, occurrences int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sweep(d.now())
	ns := d.byNS[namespace]
	if ns == nil {
		ns = map[string]*dedupEntry{}
		d.byNS[namespace] = ns
	}
	ns[fp] = &dedupEntry{first: first, occurrences: occurrences}
}

// sweep drops expired entries at most once per ttl, so memory stays bounded
// by the signals of roughly two windows without a background goroutine.
func (d *dedup) sweep(now time.Time) {
	if now.Sub(d.lastSweep) < d.ttl {
		return
	}
	d.lastSweep = now
	for name, ns := range d.byNS {
		for fp, e := range ns {
			if now.Sub(e.first) >= d.ttl {
				delete(ns, fp)
			}
		}
		if len(ns) == 0 {
			delete(d.byNS, name)
		}
	}
}

// size returns the number of remembered fingerprints (for tests).
func (d *dedup) size() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, ns := range d.byNS {
		n += len(ns)
	}
	return n
}
