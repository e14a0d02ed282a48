package httpkit

import (
	"fmt"
	"strconv"
	"time"
)

// Getenv is os.Getenv, injectable so config parsing is testable.
type Getenv func(string) string

// String returns the variable or def when unset or empty.
func (g Getenv) String(key, def string) string {
	if v := g(key); v != "" {
		return v
	}
	return def
}

// Duration parses a positive Go duration, or returns def when unset.
func (g Getenv) Duration(key string, def time.Duration) (time.Duration, error) {
	v := g(key)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive Go duration such as 500ms or 5m", key, v)
	}
	return d, nil
}

// Int64 parses a positive integer, or returns def when unset.
func (g Getenv) Int64(key string, def int64) (int64, error) {
	v := g(key)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive integer", key, v)
	}
	return n, nil
}
