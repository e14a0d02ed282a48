package httpkit

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"example.com/e2e-services/internal/testutil"
)

func decodeHandler(max int64) http.Handler {
	app := NewApp("svc", NewLogger("svc", &testutil.SyncBuffer{}))
	app.Router.HandleFunc("POST", "/in", func(w http.ResponseWriter, r *http.Request) {
		var v struct{ Name string }
		if err := DecodeJSON(w, r, max, &v); err != nil {
			WriteError(w, r, err)
			return
		}
		WriteJSON(w, 200, v)
	})
	return app.Handler()
}

func TestDecodeJSON(t *testing.T) {
	h := decodeHandler(64)
	ok := testutil.Do(t, h, "POST", "/in", `{"Name":"x"}`, "Content-Type", "application/json; charset=utf-8")
	if ok.Code != 200 {
		t.Fatalf("charset parameter rejected: %d %s", ok.Code, ok.Body)
	}
	for _, tc := range []struct {
		name, ct, body string
		status         int
		detail         string
	}{
		{"no content type", "", `{}`, 415, "application/json"},
		{"wrong content type", "text/plain", `{}`, 415, "text/plain"},
		{"too large", "application/json", `{"Name":"` + strings.Repeat("a", 100) + `"}`, 413, "64 bytes"},
		{"empty", "application/json", "", 400, "empty"},
		{"whitespace", "application/json", " \n", 400, "empty"},
		{"malformed", "application/json", `{"Name":`, 400, "malformed JSON"},
		{"wrong type", "application/json", `{"Name":1}`, 400, "malformed JSON"},
		{"trailing junk", "application/json", `{} x`, 400, "malformed JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := testutil.Do(t, h, "POST", "/in", tc.body, "Content-Type", tc.ct)
			testutil.WantProblem(t, rec, tc.status, tc.detail)
		})
	}
}

func TestWriteErrorPlainErrorIs500(t *testing.T) {
	rec := testutil.Do(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = r.WithContext(WithRequestID(r.Context(), "id1"))
		w.Header().Set(HeaderRequestID, "id1")
		WriteError(w, r, errors.New("disk on fire"))
	}), "GET", "/x", "")
	testutil.WantProblem(t, rec, 500, "disk on fire")
}
