package main

import (
	"crypto/subtle"
	"net/http"

	"example.com/e2e-services/internal/httpkit"
)

// withToken makes a write route need `Authorization: Bearer <token>`; reads stay open.
// An empty token (WRITE_TOKEN unset) turns the check off.
func withToken(next http.HandlerFunc, token string) http.HandlerFunc {
	if token == "" {
		return next
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			httpkit.WriteProblem(w, r, http.StatusUnauthorized, "writes need the bearer token of WRITE_TOKEN")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// withSchema names the schema the server runs on in every response.
func withSchema(next http.Handler, s schema) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Schema-Checksum", s.Checksum)
		next.ServeHTTP(w, r)
	})
}
