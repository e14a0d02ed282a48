package httpkit

import (
	"net/http"
	"sort"
	"strings"
)

// OtherPath is the metrics label for requests to unknown paths, which keeps
// label cardinality bounded whatever clients send.
const OtherPath = "other"

// Router matches exact paths and answers 404 and 405 (with Allow) as
// problem+json, which http.ServeMux only does in plain text.
type Router struct {
	routes map[string]map[string]http.Handler
}

// NewRouter returns an empty router.
func NewRouter() *Router {
	return &Router{routes: map[string]map[string]http.Handler{}}
}

// Handle registers h for method and the exact path.
func (rt *Router) Handle(method, path string, h http.Handler) {
	if rt.routes[path] == nil {
		rt.routes[path] = map[string]http.Handler{}
	}
	rt.routes[path][method] = h
}

// HandleFunc registers a handler function.
func (rt *Router) HandleFunc(method, path string, h func(http.ResponseWriter, *http.Request)) {
	rt.Handle(method, path, http.HandlerFunc(h))
}

// Pattern returns the route a request path belongs to, or OtherPath.
func (rt *Router) Pattern(path string) string {
	if _, ok := rt.routes[path]; ok {
		return path
	}
	return OtherPath
}

func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	methods, ok := rt.routes[r.URL.Path]
	if !ok {
		WriteProblem(w, r, http.StatusNotFound, "no route for "+r.URL.Path)
		return
	}
	h, ok := methods[r.Method]
	if !ok {
		allow := make([]string, 0, len(methods))
		for m := range methods {
			allow = append(allow, m)
		}
		sort.Strings(allow)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		WriteProblem(w, r, http.StatusMethodNotAllowed,
			"method "+r.Method+" not allowed on "+r.URL.Path+"; allowed: "+strings.Join(allow, ", "))
		return
	}
	h.ServeHTTP(w, r)
}
