// Package testutil holds test helpers shared by both services' tests.
package testutil

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Do sends one request through h. hdr holds header name/value pairs.
func Do(t testing.TB, h http.Handler, method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// JSON decodes a response body into a generic map.
func JSON(t testing.TB, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("response is not a JSON object: %v\n%s", err, rec.Body.String())
	}
	return m
}

// WantProblem checks status, problem+json shape and that detail contains want.
func WantProblem(t testing.TB, rec *httptest.ResponseRecorder, status int, want string) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d; body %s", rec.Code, status, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json", ct)
	}
	p := JSON(t, rec)
	if p["type"] != "about:blank" || p["title"] != http.StatusText(status) || p["status"] != float64(status) {
		t.Fatalf("bad problem body: %v", p)
	}
	if p["request_id"] == "" || p["request_id"] != rec.Header().Get("X-Request-ID") {
		t.Fatalf("problem request_id %v does not match header %q", p["request_id"], rec.Header().Get("X-Request-ID"))
	}
	if d, _ := p["detail"].(string); !strings.Contains(d, want) {
		t.Fatalf("detail = %q, want it to contain %q", d, want)
	}
}

// FreeAddr returns a loopback address that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// WaitHealthy polls url until it answers 200 or the deadline passes.
func WaitHealthy(t testing.TB, url string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never became healthy", url)
}

// Eventually polls cond until it holds or 10 s pass.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// SyncBuffer is a bytes.Buffer safe for a logger and a test to share.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

const helperEnv = "E2E_SERVICES_HELPER_MAIN"

// MaybeRunMain turns the test binary into the service when started by
// SIGTERMExitsZero; call it first thing in TestMain.
func MaybeRunMain(mainFn func()) {
	if os.Getenv(helperEnv) != "1" {
		return
	}
	mainFn()
	os.Exit(0) // reached only when main returned normally
}

// SIGTERMExitsZero starts the test binary as the service (via
// MaybeRunMain), waits for /health, sends SIGTERM and expects exit code 0.
func SIGTERMExitsZero(t *testing.T, env ...string) {
	t.Helper()
	addr := FreeAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, helperEnv+"=1", "LISTEN_ADDR="+addr)...)
	var out SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	WaitHealthy(t, "http://"+addr+"/health")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("process did not exit 0 after SIGTERM: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), `"msg":"stopped"`) {
		t.Fatalf("no clean stop logged:\n%s", out.String())
	}
}
