package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

func TestEmbeddedSchemaIsOrderedAndStable(t *testing.T) {
	a, err := wantSchema()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := wantSchema()
	if a.Version < 2 || len(a.steps) != a.Version || a.Checksum != b.Checksum || len(a.Checksum) != 16 {
		t.Fatalf("schema %+v", a)
	}
	for i := 1; i < len(a.Applied); i++ {
		if a.Applied[i-1] >= a.Applied[i] {
			t.Fatalf("migrations out of order: %v", a.Applied)
		}
	}
}

// testPool is a database named by DATASTORE_TEST_DATABASE_URL, emptied for
// the test; without one the test is skipped (the E2E suite runs the real
// PostgreSQL path on every platform).
func testPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	url := os.Getenv("DATASTORE_TEST_DATABASE_URL")
	if url == "" {
		t.Skip("DATASTORE_TEST_DATABASE_URL is not set (a throwaway PostgreSQL database)")
	}
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(context.Background(), `DROP TABLE IF EXISTS events, schema_migrations`); err != nil {
		t.Fatal(err)
	}
	return pool
}

func TestMigrateThenServeOnPostgres(t *testing.T) {
	pool := testPool(t)
	ctx := context.Background()
	want, _ := wantSchema()
	if err := checkSchema(ctx, pool, want); !errors.Is(err, errUnmigrated) {
		t.Fatalf("checkSchema of an empty database = %v", err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs { // concurrent Jobs: the advisory lock serialises them
		wg.Add(1)
		go func() { defer wg.Done(); _, errs[i] = migrate(ctx, pool, want) }()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if done, err := migrate(ctx, pool, want); err != nil || len(done) != 0 {
		t.Fatalf("second migrate applied %v, %v", done, err)
	}
	store := &pgStore{pool: pool, want: want}
	if err := store.Check(ctx); err != nil {
		t.Fatal(err)
	}
	ev := Event{ID: "e1", CorrelationID: "c", EventType: "x", Payload: []byte(`{"k":"v"}`)}
	got, created, err := store.Append(ctx, ev)
	if err != nil || !created || got.ReceivedAt.IsZero() || string(got.Payload) != `{"k":"v"}` {
		t.Fatalf("append: %+v %v %v", got, created, err)
	}
	again, created, err := store.Append(ctx, Event{ID: "e1", CorrelationID: "c", EventType: "y", Payload: []byte(`{}`)})
	if err != nil || created || again.EventType != "x" || !again.ReceivedAt.Equal(got.ReceivedAt) {
		t.Fatalf("repeat: %+v %v %v", again, created, err)
	}
	store.Append(ctx, Event{ID: "e0", CorrelationID: "c", EventType: "x", Payload: []byte(`{}`)})
	list, err := store.ByCorrelation(ctx, "c")
	if err != nil || len(list) != 2 || list[0].ID != "e1" || list[1].ID != "e0" {
		t.Fatalf("list %+v %v", list, err)
	}

	// an applied migration that changed is refused, naming it
	want.steps[0].checksum = "changed"
	if _, err := migrate(ctx, pool, want); err == nil || !strings.Contains(err.Error(), want.steps[0].name) {
		t.Fatalf("migrate over a changed migration = %v", err)
	}
	if err := checkSchema(ctx, pool, want); !errors.Is(err, errUnmigrated) {
		t.Fatalf("checkSchema with a changed migration = %v", err)
	}
}

func TestMigrateCommandOnPostgres(t *testing.T) {
	testPool(t)
	var out bytes.Buffer
	kv := env(map[string]string{"DATABASE_URL": os.Getenv("DATASTORE_TEST_DATABASE_URL"), "MIGRATE_WAIT": (5 * time.Second).String()})
	if code := command("migrate", nil, kv, &out); code != 0 || !strings.Contains(out.String(), `"msg":"migrated"`) {
		t.Fatalf("migrate exit %d: %s", code, out.String())
	}
}

func TestProbeCommand(t *testing.T) {
	var out bytes.Buffer
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
	if code := command("probe", nil, env(map[string]string{"LISTEN_ADDR": "127.0.0.1:1"}), &out); code != 1 {
		t.Errorf("probe of nothing exit %d, want 1", code)
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
