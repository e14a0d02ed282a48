package httpkit

import (
	"log/slog"
	"net/http"
)

// App bundles what every service has: a logger, a metrics registry, a router
// with /health and /metrics, and the request middleware.
type App struct {
	Name    string
	Logger  *slog.Logger
	Metrics *Registry
	Router  *Router

	requests *Counter
}

// NewApp wires /health and /metrics; services add /ready and their own routes.
func NewApp(name string, logger *slog.Logger) *App {
	a := &App{
		Name:    name,
		Logger:  logger,
		Metrics: NewRegistry(),
		Router:  NewRouter(),
	}
	a.requests = a.Metrics.Counter("http_requests_total", "HTTP requests by method, route and status code.", "method", "path", "code")
	a.Router.HandleFunc(http.MethodGet, "/health", func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok", "service": name})
	})
	a.Router.Handle(http.MethodGet, "/metrics", a.Metrics)
	return a
}

// Handler returns the router wrapped in mws (outermost first) and then in
// the request-id/logging/metrics middleware, so even CORS rejections are
// logged and counted.
func (a *App) Handler(mws ...func(http.Handler) http.Handler) http.Handler {
	var h http.Handler = a.Router
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return observe(a.Logger, a.requests, a.Router.Pattern, h)
}

// WriteReady answers a readiness probe: 200 when every dependency is fine,
// else 503. deps maps dependency name to a short state for humans.
func WriteReady(w http.ResponseWriter, ok bool, deps map[string]string) {
	if ok {
		WriteJSON(w, http.StatusOK, map[string]any{"status": "ready", "dependencies": deps})
		return
	}
	WriteJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "dependencies": deps})
}
