package main

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// migrations are the schema steps, applied in name order by `datastore migrate`
// (the datastore-migrate Job) before the server may start.
//
//go:embed migrations/*.sql
var migrations embed.FS

const schemaFile = "schema.json"

// schema is what $DATA_DIR/schema.json records of the applied migrations.
type schema struct {
	Version  int      `json:"version"`
	Applied  []string `json:"applied"`
	Checksum string   `json:"checksum"`
}

// wantSchema is the schema the embedded migrations define.
func wantSchema() (schema, error) {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return schema{}, err
	}
	sort.Strings(names)
	sum := sha256.New()
	s := schema{Version: len(names)}
	for _, name := range names {
		body, err := migrations.ReadFile(name)
		if err != nil {
			return schema{}, err
		}
		s.Applied = append(s.Applied, filepath.Base(name))
		sum.Write([]byte(filepath.Base(name) + "\x00"))
		sum.Write(body)
	}
	s.Checksum = hex.EncodeToString(sum.Sum(nil))[:16]
	return s, nil
}

// migrate records the embedded schema in dataDir (idempotent).
func migrate(dataDir string) (schema, error) {
	want, err := wantSchema()
	if err != nil {
		return want, err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return want, err
	}
	body, _ := json.MarshalIndent(want, "", "  ")
	tmp := filepath.Join(dataDir, "."+schemaFile+".tmp")
	if err := os.WriteFile(tmp, append(body, '\n'), 0o644); err != nil {
		return want, err
	}
	return want, os.Rename(tmp, filepath.Join(dataDir, schemaFile))
}

// checkSchema refuses to serve a DATA_DIR the current migrations were not applied to.
func checkSchema(dataDir string) (schema, error) {
	want, err := wantSchema()
	if err != nil {
		return want, err
	}
	body, err := os.ReadFile(filepath.Join(dataDir, schemaFile))
	if errors.Is(err, fs.ErrNotExist) {
		return want, fmt.Errorf("DATA_DIR %s has no schema: run `datastore migrate` first (the datastore-migrate Job)", dataDir)
	}
	if err != nil {
		return want, err
	}
	var have schema
	if err := json.Unmarshal(body, &have); err != nil {
		return want, fmt.Errorf("%s: %w", schemaFile, err)
	}
	if have.Checksum != want.Checksum {
		return want, fmt.Errorf("DATA_DIR %s has schema version %d (%s), this build wants %d (%s): run `datastore migrate`",
			dataDir, have.Version, have.Checksum, want.Version, want.Checksum)
	}
	return have, nil
}
