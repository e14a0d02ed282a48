package httpkit

import (
	"testing"
	"time"
)

func TestGetenv(t *testing.T) {
	env := Getenv(func(k string) string {
		return map[string]string{"D": "2s", "BADD": "soon", "NEGD": "-1s", "N": "12", "BADN": "0"}[k]
	})
	if env.String("UNSET", "def") != "def" || env.String("D", "x") != "2s" {
		t.Fatal("String")
	}
	if d, err := env.Duration("D", time.Hour); err != nil || d != 2*time.Second {
		t.Fatal("Duration", d, err)
	}
	if d, err := env.Duration("UNSET", time.Hour); err != nil || d != time.Hour {
		t.Fatal("Duration default", d, err)
	}
	if n, err := env.Int64("N", 1); err != nil || n != 12 {
		t.Fatal("Int64", n, err)
	}
	for _, k := range []string{"BADD", "NEGD"} {
		if _, err := env.Duration(k, 0); err == nil {
			t.Errorf("Duration(%s) accepted", k)
		}
	}
	if _, err := env.Int64("BADN", 1); err == nil {
		t.Error("Int64(0) accepted")
	}
}
