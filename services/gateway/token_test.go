package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

func TestDatastoreTokenFileIsReadAndSent(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	os.WriteFile(file, []byte("s3cret\n"), 0o600)
	c, err := loadConfig(env(map[string]string{"DATASTORE_TOKEN_FILE": file}))
	if err != nil || c.DatastoreToken != "s3cret" {
		t.Fatalf("loadConfig = %q, %v", c.DatastoreToken, err)
	}
	var got string
	ds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Get("Authorization")
		w.WriteHeader(http.StatusCreated)
	}))
	defer ds.Close()
	o := newBareOutbox(ds.URL)
	o.token = c.DatastoreToken
	if _, err := o.send(context.Background(), outboxItem{body: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	if got != "Bearer s3cret" {
		t.Fatalf("Authorization sent: %q", got)
	}
}

func TestDatastoreTokenFileMissingOrEmptyIsAnError(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, nil, 0o600)
	for _, file := range []string{filepath.Join(t.TempDir(), "absent"), empty} {
		if _, err := loadConfig(env(map[string]string{"DATASTORE_TOKEN_FILE": file})); err == nil {
			t.Errorf("loadConfig with DATASTORE_TOKEN_FILE=%s: no error", file)
		}
	}
}
