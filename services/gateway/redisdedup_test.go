package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
)

const fpA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

func newTestRedisDedup(t *testing.T, addr string, ttl time.Duration) *redisDedup {
	t.Helper()
	r := &redisDedup{client: newRedisClient(addr, "", time.Second), ttl: ttl, timeout: time.Second}
	t.Cleanup(func() { r.client.Close() })
	return r
}

func TestRedisDedupCountsAndTTL(t *testing.T) {
	mr := miniredis.RunT(t)
	r := newTestRedisDedup(t, mr.Addr(), 5*time.Minute)
	ctx := context.Background()
	key := "gateway:dedup:shop:" + fpA

	n, left, err := r.observe(ctx, "shop", fpA)
	if err != nil || n != 1 || left != 5*time.Minute {
		t.Fatalf("first: %d %v %v", n, left, err)
	}
	if got, _ := mr.Get(key); got != "1" || mr.TTL(key) != 5*time.Minute {
		t.Fatalf("key %s = %q ttl %v; keys %v", key, got, mr.TTL(key), mr.Keys())
	}
	// Repeats count up and do not extend the window: it starts at the first sighting.
	for want := int64(2); want <= 4; want++ {
		mr.FastForward(time.Minute)
		n, left, err := r.observe(ctx, "shop", fpA)
		if err != nil || n != want || left != 5*time.Minute-time.Duration(want-1)*time.Minute {
			t.Fatalf("repeat: %d %v %v, want %d", n, left, err, want)
		}
	}
	if ttl := mr.TTL(key); ttl != 2*time.Minute {
		t.Fatalf("TTL after repeats = %v, want 2m (anchored at the first sighting)", ttl)
	}
	// Other namespaces are separate.
	if n, _, err := r.observe(ctx, "other", fpA); err != nil || n != 1 {
		t.Fatalf("other namespace: %d %v", n, err)
	}
	mr.FastForward(2 * time.Minute) // t = 5m: window over, key gone
	if mr.Exists(key) {
		t.Fatal("key outlived the TTL")
	}
	if n, _, err := r.observe(ctx, "shop", fpA); err != nil || n != 1 || mr.TTL(key) != 5*time.Minute {
		t.Fatalf("after TTL: %d %v ttl %v", n, err, mr.TTL(key))
	}
}

func TestRedisDedupRepairsKeyWithoutTTL(t *testing.T) {
	mr := miniredis.RunT(t)
	r := newTestRedisDedup(t, mr.Addr(), time.Minute)
	key := dedupKey("ns", fpA)
	mr.Set(key, "7") // e.g. written by hand: no expiry
	if n, _, err := r.observe(context.Background(), "ns", fpA); err != nil || n != 8 || mr.TTL(key) != time.Minute {
		t.Fatalf("%d %v ttl %v", n, err, mr.TTL(key))
	}
}

func TestRedisDedupSubMillisecondTTL(t *testing.T) {
	mr := miniredis.RunT(t)
	r := newTestRedisDedup(t, mr.Addr(), time.Microsecond)
	// PEXPIRE 0 would delete the key at once; the TTL is rounded up to 1ms.
	if n, _, err := r.observe(context.Background(), "ns", fpA); err != nil || n != 1 || mr.TTL(dedupKey("ns", fpA)) != time.Millisecond {
		t.Fatalf("%d %v ttl %v", n, err, mr.TTL(dedupKey("ns", fpA)))
	}
}

func TestRedisDedupConcurrentCountsAreExact(t *testing.T) {
	mr := miniredis.RunT(t)
	r := newTestRedisDedup(t, mr.Addr(), time.Hour)
	observeConcurrently(t, 8, 25, func() (bool, int64, error) {
		n, _, err := r.observe(context.Background(), "ns", fpA)
		return n == 1, n, err
	})
}

func TestRedisDedupErrors(t *testing.T) {
	mr := miniredis.RunT(t)
	r := newTestRedisDedup(t, mr.Addr(), time.Minute)
	mr.Set(dedupKey("ns", fpA), "not a number")
	if _, _, err := r.observe(context.Background(), "ns", fpA); err == nil || !strings.Contains(err.Error(), "not an integer") {
		t.Fatalf("INCR on a string: %v", err)
	}
	mr.SetError("LOADING Redis is loading the dataset in memory")
	if _, _, err := r.observe(context.Background(), "ns", "b"); err == nil {
		t.Fatal("error reply not returned")
	}
	if err := r.ping(context.Background()); err == nil {
		t.Fatal("ping ignored the error reply")
	}
	mr.SetError("")
	if err := r.ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestDedupKey(t *testing.T) {
	if k := dedupKey("shop", fpA); k != "gateway:dedup:shop:"+fpA {
		t.Fatalf("plain key %q", k)
	}
	keys := map[string]string{}
	for _, ns := range []string{"shop", "a:b", "a", "#a", "with space", "", strings.Repeat("n", 129), "ünïcode"} {
		k := dedupKey(ns, fpA)
		parts := strings.Split(k, ":")
		if len(parts) != 4 || parts[0] != "gateway" || parts[1] != "dedup" || parts[3] != fpA {
			t.Errorf("namespace %q: key %q does not have 4 parts", ns, k)
		}
		if ns != "shop" && ns != "a" && !hex64.MatchString(strings.TrimPrefix(parts[2], "#")) {
			t.Errorf("namespace %q: not escaped: %q", ns, k)
		}
		if other, dup := keys[k]; dup {
			t.Errorf("namespaces %q and %q share key %q", ns, other, k)
		}
		keys[k] = ns
	}
	// A fingerprint is escaped the same way, should it ever contain a ':'.
	if k := dedupKey("ns", "x:y"); strings.Count(k, ":") != 3 {
		t.Fatalf("fingerprint not escaped: %q", k)
	}
}
