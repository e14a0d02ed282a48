package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestServeRefusesAnUnmigratedDataDir(t *testing.T) {
	dir := t.TempDir()
	if _, err := checkSchema(dir); err == nil || !strings.Contains(err.Error(), "datastore migrate") {
		t.Fatalf("checkSchema of an empty dir = %v, want a hint to migrate", err)
	}
	want, err := migrate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want.Version < 2 || len(want.Applied) != want.Version {
		t.Fatalf("migrate recorded %+v", want)
	}
	have, err := checkSchema(dir)
	if err != nil || have.Checksum != want.Checksum {
		t.Fatalf("checkSchema after migrate = %+v, %v", have, err)
	}
}

func TestServeRefusesAnOlderSchema(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, schemaFile), []byte(`{"version":1,"checksum":"old"}`), 0o644)
	if _, err := checkSchema(dir); err == nil || !strings.Contains(err.Error(), "version 1") {
		t.Fatalf("checkSchema of an old schema = %v", err)
	}
}

func TestMigrateCommandAndProbeCommand(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if code := command("migrate", nil, env(map[string]string{"DATA_DIR": dir}), &out); code != 0 {
		t.Fatalf("migrate exit %d: %s", code, out.String())
	}
	if _, err := os.Stat(filepath.Join(dir, schemaFile)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	if code := command("probe", nil, env(map[string]string{"LISTEN_ADDR": addr}), &out); code != 0 {
		t.Errorf("probe of a ready server exit %d", code)
	}
	if code := command("probe", []string{"/other"}, env(map[string]string{"LISTEN_ADDR": addr}), &out); code != 1 {
		t.Errorf("probe of a 503 exit %d, want 1", code)
	}
	if code := command("nope", nil, env(nil), &out); code != 2 {
		t.Errorf("unknown command exit %d, want 2", code)
	}
}

func TestWritesNeedTheToken(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) })
	h := withToken(ok, "s3cret")
	for _, tc := range []struct {
		method, auth string
		want         int
	}{
		{http.MethodPost, "", http.StatusUnauthorized},
		{http.MethodPost, "Bearer wrong", http.StatusUnauthorized},
		{http.MethodPost, "Bearer s3cret", http.StatusCreated},
	} {
		req := httptest.NewRequest(tc.method, "/api/v1/events", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%s with %q: %d, want %d", tc.method, tc.auth, rec.Code, tc.want)
		}
	}
	if withToken(ok, "") == nil {
		t.Fatal("no token: the handler itself")
	}
}
