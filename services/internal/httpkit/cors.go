package httpkit

import (
	"net/http"
	"strings"
)

// CORS headers sent on an allowed preflight.
const (
	CORSAllowMethods = "GET, POST, OPTIONS"
	CORSAllowHeaders = "Content-Type, X-Request-ID, X-Correlation-ID"
	CORSMaxAge       = "600"
)

// CORS allows exact origins from the list. A preflight (OPTIONS with an
// Origin) is answered here: 204 for allowed origins, 403 for others. Other
// requests pass through and only gain Access-Control-Allow-Origin when their
// origin is allowed; the browser does the blocking for the rest.
func CORS(allowed []string) func(http.Handler) http.Handler {
	set := make(map[string]bool, len(allowed))
	for _, o := range allowed {
		if o = strings.TrimSpace(o); o != "" {
			set[o] = true
		}
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			origin := r.Header.Get("Origin")
			if origin == "" {
				next.ServeHTTP(w, r)
				return
			}
			w.Header().Add("Vary", "Origin")
			ok := set[origin]
			if ok {
				w.Header().Set("Access-Control-Allow-Origin", origin)
				w.Header().Set("Access-Control-Expose-Headers", "X-Request-ID, X-Correlation-ID")
			}
			if r.Method != http.MethodOptions {
				next.ServeHTTP(w, r)
				return
			}
			if !ok {
				WriteProblem(w, r, http.StatusForbidden, "origin "+origin+" is not allowed")
				return
			}
			w.Header().Set("Access-Control-Allow-Methods", CORSAllowMethods)
			w.Header().Set("Access-Control-Allow-Headers", CORSAllowHeaders)
			w.Header().Set("Access-Control-Max-Age", CORSMaxAge)
			w.WriteHeader(http.StatusNoContent)
		})
	}
}
