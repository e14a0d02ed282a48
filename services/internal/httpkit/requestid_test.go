package httpkit

import (
	"regexp"
	"strings"
	"testing"
)

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{
		"abc-123_X.y":            true,
		strings.Repeat("a", 128): true,
		strings.Repeat("a", 129): false,
		"":                       false,
		"has space":              false,
		"semi;colon":             false,
		"new\nline":              false,
		"ünïcode":                false,
	} {
		if got := ValidID(id); got != want {
			t.Errorf("ValidID(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestNewIDIs32HexAndUnique(t *testing.T) {
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := NewID()
		if !hex32.MatchString(id) || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
	if IDOrNew("keep-me") != "keep-me" || IDOrNew("no way") == "no way" {
		t.Fatal("IDOrNew must keep valid ids and replace invalid ones")
	}
}
