package httpkit

import (
	"bufio"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Registry is a minimal Prometheus registry (text format 0.0.4) for
// counters and gauges with labels; enough for E2E assertions without
// pulling in client_golang.
type Registry struct {
	mu      sync.Mutex
	metrics map[string]*metric
}

type metric struct {
	name, help, kind string
	labels           []string

	mu     sync.Mutex
	series map[string]*series
}

type series struct {
	values []string
	value  float64
}

// NewRegistry returns a registry that already exports
// process_start_time_seconds.
func NewRegistry() *Registry {
	r := &Registry{metrics: map[string]*metric{}}
	start := float64(time.Now().UnixNano()) / 1e9
	r.Gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.").Set(start)
	return r
}

func (r *Registry) register(kind, name, help string, labels []string) *metric {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.metrics[name]; dup {
		panic("httpkit: metric registered twice: " + name)
	}
	m := &metric{name: name, help: help, kind: kind, labels: labels, series: map[string]*series{}}
	if len(labels) == 0 {
		// Unlabelled metrics are exported as 0 from the start, so a scrape
		// before the first event already shows them.
		m.series[""] = &series{}
	}
	r.metrics[name] = m
	return m
}

// add changes the series selected by values by delta, or sets it when set.
func (m *metric) add(delta float64, set bool, values []string) {
	if len(values) != len(m.labels) {
		panic(fmt.Sprintf("httpkit: %s wants %d label values, got %d", m.name, len(m.labels), len(values)))
	}
	key := strings.Join(values, "\xff")
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.series[key]
	if !ok {
		s = &series{values: append([]string(nil), values...)}
		m.series[key] = s
	}
	if set {
		s.value = delta
	} else {
		s.value += delta
	}
}

func (m *metric) get(values []string) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.series[strings.Join(values, "\xff")]; ok {
		return s.value
	}
	return 0
}

// Counter only goes up.
type Counter struct{ m *metric }

// Counter registers a counter; name should end in _total.
func (r *Registry) Counter(name, help string, labels ...string) *Counter {
	return &Counter{r.register("counter", name, help, labels)}
}

// Inc adds 1 to the series for the label values.
func (c *Counter) Inc(values ...string) { c.Add(1, values...) }

// Add adds v (>= 0); Add(0, ...) makes a labelled series visible at 0.
func (c *Counter) Add(v float64, values ...string) {
	if v < 0 {
		panic("httpkit: counter " + c.m.name + " cannot decrease")
	}
	c.m.add(v, false, values)
}

// Value returns the current value (for tests and logs).
func (c *Counter) Value(values ...string) float64 { return c.m.get(values) }

// Gauge can go up and down.
type Gauge struct{ m *metric }

// Gauge registers a gauge.
func (r *Registry) Gauge(name, help string, labels ...string) *Gauge {
	return &Gauge{r.register("gauge", name, help, labels)}
}

// Set sets the series for the label values to v.
func (g *Gauge) Set(v float64, values ...string) { g.m.add(v, true, values) }

// Add adds v (may be negative).
func (g *Gauge) Add(v float64, values ...string) { g.m.add(v, false, values) }

// Value returns the current value.
func (g *Gauge) Value(values ...string) float64 { return g.m.get(values) }

// ServeHTTP writes all metrics in the Prometheus text format.
func (r *Registry) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	bw := bufio.NewWriter(w)
	r.write(bw)
	_ = bw.Flush()
}

func (r *Registry) write(w *bufio.Writer) {
	r.mu.Lock()
	ms := make([]*metric, 0, len(r.metrics))
	for _, m := range r.metrics {
		ms = append(ms, m)
	}
	r.mu.Unlock()
	sort.Slice(ms, func(i, j int) bool { return ms[i].name < ms[j].name })

	for _, m := range ms {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", m.name, escapeHelp(m.help), m.name, m.kind)
		m.mu.Lock()
		keys := make([]string, 0, len(m.series))
		for k := range m.series {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			s := m.series[k]
			w.WriteString(m.name)
			if len(m.labels) > 0 {
				w.WriteByte('{')
				for i, l := range m.labels {
					if i > 0 {
						w.WriteByte(',')
					}
					fmt.Fprintf(w, "%s=\"%s\"", l, escapeLabel(s.values[i]))
				}
				w.WriteByte('}')
			}
			w.WriteByte(' ')
			w.WriteString(strconv.FormatFloat(s.value, 'g', -1, 64))
			w.WriteByte('\n')
		}
		m.mu.Unlock()
	}
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
func escapeLabel(s string) string { return labelEscaper.Replace(s) }
