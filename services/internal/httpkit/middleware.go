package httpkit

import (
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// statusRecorder remembers the status a handler wrote, for logs and metrics.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// observe assigns the request id, recovers panics, and emits one log line
// and one http_requests_total increment per request.
func observe(logger *slog.Logger, requests *Counter, pattern func(string) string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := IDOrNew(r.Header.Get(HeaderRequestID))
		w.Header().Set(HeaderRequestID, id)
		r = r.WithContext(WithRequestID(r.Context(), id))
		rec := &statusRecorder{ResponseWriter: w}

		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				logger.Error("handler panic", "request_id", id, "panic", p)
				if rec.status == 0 {
					WriteProblem(rec, r, http.StatusInternalServerError, "internal error")
				}
			}
			if rec.status == 0 {
				rec.status = http.StatusOK
			}
			requests.Inc(r.Method, pattern(r.URL.Path), strconv.Itoa(rec.status))
			logger.Info("request",
				"request_id", id,
				"method", r.Method,
				"path", r.URL.Path,
				"status", rec.status,
				"duration_ms", float64(time.Since(start).Microseconds())/1000,
			)
		}()
		next.ServeHTTP(rec, r)
	})
}
