package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"strings"
	"testing"

	"example.com/e2e-services/internal/testutil"
)

func TestMain(m *testing.M) {
	testutil.MaybeRunMain(main)
	os.Exit(m.Run())
}

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

// nowhere is a database address nothing listens on: the server must still start.
const nowhere = "postgres://e2e@127.0.0.1:1/events?sslmode=disable&connect_timeout=1"

func TestRunServesWithTheDatabaseDownAndStopsCleanly(t *testing.T) {
	addr := testutil.FreeAddr(t)
	var logs testutil.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, env(map[string]string{"LISTEN_ADDR": addr, "DATABASE_URL": nowhere, "DB_TIMEOUT": "1s"}), &logs)
	}()

	testutil.WaitHealthy(t, "http://"+addr+"/health")
	resp, err := http.Get("http://" + addr + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("/ready with no database: %d, want 503", resp.StatusCode)
	}
	if resp.Header.Get("X-Schema-Checksum") == "" {
		t.Errorf("no X-Schema-Checksum header")
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("run returned %v", err)
	}
	for _, want := range []string{`"msg":"starting"`, `"db_host":"127.0.0.1"`, `"msg":"request"`, `"msg":"stopped"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s:\n%s", want, logs.String())
		}
	}
}

func TestRunRefusesABadConfig(t *testing.T) {
	for name, kv := range map[string]map[string]string{
		"database url": {"DATABASE_URL": "postgres://%zz"},
		"timeout":      {"DATABASE_URL": nowhere, "DB_TIMEOUT": "soon"},
	} {
		kv["LISTEN_ADDR"] = "127.0.0.1:0"
		if err := run(context.Background(), env(kv), &testutil.SyncBuffer{}); err == nil {
			t.Errorf("%s: run returned nil", name)
		}
	}
}

func TestMigrateGivesUpOnAnAbsentDatabaseNamingIt(t *testing.T) {
	var out bytes.Buffer
	code := command("migrate", nil, env(map[string]string{"DATABASE_URL": nowhere, "MIGRATE_WAIT": "1500ms", "DB_TIMEOUT": "500ms"}), &out)
	if code != 1 || !strings.Contains(out.String(), "MIGRATE_WAIT=1.5s") || !strings.Contains(out.String(), "waiting for the database") {
		t.Fatalf("migrate exit %d:\n%s", code, out.String())
	}
	if code := command("migrate", nil, env(map[string]string{"MIGRATE_WAIT": "never"}), &out); code != 1 {
		t.Fatalf("migrate with a bad MIGRATE_WAIT exit %d", code)
	}
}

func TestSIGTERMExitsZero(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a subprocess")
	}
	testutil.SIGTERMExitsZero(t, "DATABASE_URL="+nowhere)
}
