package httpkit

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"example.com/e2e-services/internal/testutil"
)

func TestServeDrainsInFlightRequestsAndReturnsNil(t *testing.T) {
	started := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(started)
		time.Sleep(200 * time.Millisecond) // still running when shutdown begins
		io.WriteString(w, "done")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ln.Addr().String(), h, NewLogger("svc", io.Discard))
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- Serve(ctx, srv, ln) }()

	body := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			body <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body <- string(b)
	}()
	<-started
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Serve returned %v, want nil", err)
	}
	if got := <-body; got != "done" {
		t.Fatalf("in-flight request got %q", got)
	}
}

func TestRunFailsOnBusyAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := NewServer(ln.Addr().String(), http.NotFoundHandler(), NewLogger("svc", io.Discard))
	if err := Run(context.Background(), srv); err == nil {
		t.Fatal("Run on a busy address returned nil")
	}
}

func TestRunReturnsNilAfterCancel(t *testing.T) {
	addr := testutil.FreeAddr(t)
	srv := NewServer(addr, http.NotFoundHandler(), NewLogger("svc", io.Discard))
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- Run(ctx, srv) }()
	testutil.Eventually(t, "server listening", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
