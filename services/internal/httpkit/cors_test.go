package httpkit

import (
	"net/http"
	"testing"

	"example.com/e2e-services/internal/testutil"
)

func TestCORS(t *testing.T) {
	app := NewApp("svc", NewLogger("svc", &testutil.SyncBuffer{}))
	app.Router.HandleFunc("POST", "/api", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(201) })
	h := app.Handler(CORS([]string{"https://ok.example", " https://two.example "}))

	t.Run("allowed preflight", func(t *testing.T) {
		rec := testutil.Do(t, h, "OPTIONS", "/api", "", "Origin", "https://two.example", "Access-Control-Request-Method", "POST")
		hd := rec.Header()
		if rec.Code != 204 || hd.Get("Access-Control-Allow-Origin") != "https://two.example" || hd.Get("Vary") != "Origin" {
			t.Fatalf("%d %v", rec.Code, hd)
		}
		if hd.Get("Access-Control-Allow-Methods") == "" || hd.Get("Access-Control-Max-Age") == "" ||
			hd.Get("Access-Control-Allow-Headers") != "Content-Type, X-Request-ID, X-Correlation-ID" {
			t.Fatalf("preflight headers %v", hd)
		}
	})
	t.Run("denied preflight", func(t *testing.T) {
		rec := testutil.Do(t, h, "OPTIONS", "/api", "", "Origin", "https://evil.example", "Access-Control-Request-Method", "POST")
		testutil.WantProblem(t, rec, 403, "https://evil.example")
		if rec.Header().Get("Access-Control-Allow-Origin") != "" {
			t.Fatal("denied origin got Access-Control-Allow-Origin")
		}
	})
	t.Run("allowed simple request", func(t *testing.T) {
		rec := testutil.Do(t, h, "POST", "/api", "", "Origin", "https://ok.example")
		if rec.Code != 201 || rec.Header().Get("Access-Control-Allow-Origin") != "https://ok.example" || rec.Header().Get("Vary") != "Origin" {
			t.Fatalf("%d %v", rec.Code, rec.Header())
		}
	})
	t.Run("other origin simple request", func(t *testing.T) {
		rec := testutil.Do(t, h, "POST", "/api", "", "Origin", "https://evil.example")
		if rec.Code != 201 || rec.Header().Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("%d %v", rec.Code, rec.Header())
		}
	})
	t.Run("no origin OPTIONS is routed", func(t *testing.T) {
		rec := testutil.Do(t, h, "OPTIONS", "/api", "")
		if rec.Code != 405 || rec.Header().Get("Allow") != "POST" {
			t.Fatalf("%d %v", rec.Code, rec.Header())
		}
	})
	t.Run("empty allow list denies all", func(t *testing.T) {
		h := app.Handler(CORS(nil))
		rec := testutil.Do(t, h, "OPTIONS", "/api", "", "Origin", "https://ok.example")
		testutil.WantProblem(t, rec, 403, "not allowed")
	})
}
