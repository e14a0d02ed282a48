package httpkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
)

// Header names used across both services.
const (
	HeaderRequestID     = "X-Request-ID"
	HeaderCorrelationID = "X-Correlation-ID"
)

type ctxKey struct{}

// ValidID reports whether an incoming id (request or correlation) may be
// reused as is: 1-128 chars of [A-Za-z0-9._-]. Anything else could smuggle
// junk into logs and headers, so it is replaced by a generated id.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// NewID returns 32 random hex characters (128 bits).
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("httpkit: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}

// IDOrNew returns id when it is valid, else a fresh one.
func IDOrNew(id string) string {
	if ValidID(id) {
		return id
	}
	return NewID()
}

// WithRequestID stores the request id in ctx.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// RequestID returns the request id stored by the middleware, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}
