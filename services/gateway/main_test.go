package main

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"example.com/e2e-services/internal/testutil"
)

func TestMain(m *testing.M) {
	testutil.MaybeRunMain(main)
	os.Exit(m.Run())
}

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestLoadConfigDefaults(t *testing.T) {
	c, err := loadConfig(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := config{ListenAddr: ":8080", DatastoreURL: "http://datastore:8080", DedupTTL: 5 * time.Minute,
		MaxBodyBytes: 1048576, AuditRetryInterval: 500 * time.Millisecond}
	if c.ListenAddr != want.ListenAddr || c.DatastoreURL != want.DatastoreURL || c.DedupTTL != want.DedupTTL ||
		c.MaxBodyBytes != want.MaxBodyBytes || c.AuditRetryInterval != want.AuditRetryInterval || len(c.CORSOrigins) != 0 {
		t.Fatalf("defaults %+v", c)
	}
	c, err = loadConfig(env(map[string]string{"DATASTORE_URL": "http://ds:9000/", "DEDUP_TTL": "2s",
		"CORS_ALLOWED_ORIGINS": "https://a.example, https://b.example,", "MAX_BODY_BYTES": "10", "AUDIT_RETRY_INTERVAL": "1s"}))
	if err != nil || c.DatastoreURL != "http://ds:9000" || c.DedupTTL != 2*time.Second || c.MaxBodyBytes != 10 ||
		c.AuditRetryInterval != time.Second || strings.Join(c.CORSOrigins, "|") != "https://a.example|https://b.example" {
		t.Fatalf("%+v %v", c, err)
	}
	for _, bad := range []map[string]string{
		{"DEDUP_TTL": "forever"}, {"MAX_BODY_BYTES": "-1"}, {"AUDIT_RETRY_INTERVAL": "0s"},
		{"DATASTORE_URL": "datastore:8080"}, {"DATASTORE_URL": "ftp://x"},
	} {
		if _, err := loadConfig(env(bad)); err == nil {
			t.Errorf("accepted %v", bad)
		}
	}
}

func TestRunFlushesOutboxOnShutdown(t *testing.T) {
	ds := newFakeDatastore(t)
	ds.down.Store(true)
	addr := testutil.FreeAddr(t)
	var logs testutil.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, env(map[string]string{"LISTEN_ADDR": addr, "DATASTORE_URL": ds.URL, "AUDIT_RETRY_INTERVAL": "1h"}), &logs)
	}()
	testutil.WaitHealthy(t, "http://"+addr+"/health")

	resp, err := http.Post("http://"+addr+amPath, jsonCT, strings.NewReader(webhook(alert("A", "n"))))
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("%v %v", resp, err)
	}
	resp.Body.Close()
	// The worker failed once and now waits an hour; only the final flush can deliver.
	testutil.Eventually(t, "first delivery attempt", func() bool { return strings.Contains(logs.String(), "audit delivery failing") })
	ds.down.Store(false)
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("run returned %v", err)
	}
	if n := len(ds.received()); n != 1 {
		t.Fatalf("final flush delivered %d events, want 1", n)
	}
	if !strings.Contains(logs.String(), `"msg":"stopped"`) {
		t.Fatalf("no stop logged:\n%s", logs.String())
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	if err := run(context.Background(), env(map[string]string{"DEDUP_TTL": "x"}), &testutil.SyncBuffer{}); err == nil {
		t.Fatal("bad DEDUP_TTL accepted")
	}
}

func TestSIGTERMExitsZero(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a subprocess")
	}
	// Nothing listens at DATASTORE_URL: shutdown must still be clean and quick.
	testutil.SIGTERMExitsZero(t, "DATASTORE_URL="+unreachableURL(t))
}
