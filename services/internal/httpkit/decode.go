package httpkit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
)

// StatusError carries the HTTP status a request error should be answered with.
type StatusError struct {
	Status int
	Detail string
}

func (e *StatusError) Error() string { return e.Detail }

// Errorf builds a StatusError.
func Errorf(status int, format string, args ...any) *StatusError {
	return &StatusError{Status: status, Detail: fmt.Sprintf(format, args...)}
}

// WriteError answers err as problem+json, using its status when it is a
// *StatusError and 500 otherwise.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	var se *StatusError
	if errors.As(err, &se) {
		WriteProblem(w, r, se.Status, se.Detail)
		return
	}
	WriteProblem(w, r, http.StatusInternalServerError, err.Error())
}

// DecodeJSON checks the content type (415), reads at most maxBytes (413),
// and unmarshals one JSON value into dst (400 for empty or malformed bodies).
// The errors it returns are *StatusError.
func DecodeJSON(w http.ResponseWriter, r *http.Request, maxBytes int64, dst any) error {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return Errorf(http.StatusUnsupportedMediaType, "Content-Type must be application/json, got %q", ct)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return Errorf(http.StatusRequestEntityTooLarge, "request body exceeds %d bytes", maxBytes)
		}
		return Errorf(http.StatusBadRequest, "reading request body: %v", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return Errorf(http.StatusBadRequest, "request body is empty")
	}
	if err := json.Unmarshal(body, dst); err != nil {
		return Errorf(http.StatusBadRequest, "malformed JSON: %v", err)
	}
	return nil
}
