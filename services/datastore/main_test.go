package main

import (
	"context"
	"os"
	"path/filepath"
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

func TestRunServesAndStopsCleanly(t *testing.T) {
	addr := testutil.FreeAddr(t)
	dir := t.TempDir()
	if _, err := migrate(dir); err != nil {
		t.Fatal(err)
	}
	var logs testutil.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, env(map[string]string{"LISTEN_ADDR": addr, "DATA_DIR": dir}), &logs) }()

	testutil.WaitHealthy(t, "http://"+addr+"/ready")
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("run returned %v", err)
	}
	for _, want := range []string{`"msg":"replayed event log"`, `"msg":"starting"`, `"msg":"request"`, `"msg":"stopped"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s:\n%s", want, logs.String())
		}
	}
}

func TestRunFailsOnBadDataDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	err := run(context.Background(), env(map[string]string{"LISTEN_ADDR": "127.0.0.1:0", "DATA_DIR": file}), &testutil.SyncBuffer{})
	if err == nil {
		t.Fatal("run with DATA_DIR being a file returned nil")
	}
}

func TestSIGTERMExitsZero(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a subprocess")
	}
	dir := t.TempDir()
	if _, err := migrate(dir); err != nil {
		t.Fatal(err)
	}
	testutil.SIGTERMExitsZero(t, "DATA_DIR="+dir)
}
