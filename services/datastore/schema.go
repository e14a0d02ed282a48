package main

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations are the schema steps, applied in name order by `datastore migrate`
// (the datastore-migrate Job) before the server may serve.
//
//go:embed migrations/*.sql
var migrations embed.FS

// migrationLock is the advisory lock two concurrent `migrate` runs take in turn.
const migrationLock = 0x6532_6568 // "e2eh"

// schema is what the embedded migrations define.
type schema struct {
	Version  int
	Applied  []string
	Checksum string // of every migration, in the X-Schema-Checksum header
	steps    []step
}

type step struct {
	name, sql, checksum string
}

// wantSchema is the schema the embedded migrations define.
func wantSchema() (schema, error) {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return schema{}, err
	}
	sort.Strings(names)
	all := sha256.New()
	s := schema{Version: len(names)}
	for _, name := range names {
		body, err := migrations.ReadFile(name)
		if err != nil {
			return schema{}, err
		}
		base := filepath.Base(name)
		one := sha256.Sum256(body)
		s.Applied = append(s.Applied, base)
		s.steps = append(s.steps, step{base, string(body), hex.EncodeToString(one[:])[:16]})
		all.Write([]byte(base + "\x00"))
		all.Write(body)
	}
	s.Checksum = hex.EncodeToString(all.Sum(nil))[:16]
	return s, nil
}

const createLedger = `CREATE TABLE IF NOT EXISTS schema_migrations (
	name       TEXT PRIMARY KEY,
	checksum   TEXT NOT NULL,
	applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)`

// migrate applies the embedded migrations not yet applied, each in its own
// transaction with its ledger row, under an advisory lock (idempotent).
// It returns the names it applied now.
func migrate(ctx context.Context, pool *pgxpool.Pool, want schema) ([]string, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
		return nil, err
	}
	defer conn.Exec(context.Background(), `SELECT pg_advisory_unlock($1)`, migrationLock) //nolint:errcheck
	if _, err := conn.Exec(ctx, createLedger); err != nil {
		return nil, err
	}
	have, err := applied(ctx, conn.Conn())
	if err != nil {
		return nil, err
	}
	var done []string
	for _, st := range want.steps {
		if sum, ok := have[st.name]; ok {
			if sum != st.checksum {
				return done, fmt.Errorf("migration %s was applied with checksum %s, this build has %s: "+
					"a migration must never change once applied; add a new one", st.name, sum, st.checksum)
			}
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, st.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)`, st.name, st.checksum)
			return err
		})
		if err != nil {
			return done, fmt.Errorf("migration %s: %w", st.name, err)
		}
		done = append(done, st.name)
	}
	return done, nil
}

func applied(ctx context.Context, conn *pgx.Conn) (map[string]string, error) {
	rows, err := conn.Query(ctx, `SELECT name, checksum FROM schema_migrations`)
	if err != nil {
		return nil, err
	}
	have := map[string]string{}
	var name, sum string
	_, err = pgx.ForEachRow(rows, []any{&name, &sum}, func() error {
		have[name] = sum
		return nil
	})
	return have, err
}

// errUnmigrated is a database the current migrations were not (all) applied to.
var errUnmigrated = errors.New("run `datastore migrate` (the datastore-migrate Job)")

// checkSchema refuses a database the embedded migrations were not applied to.
func checkSchema(ctx context.Context, pool *pgxpool.Pool, want schema) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("the database has no schema: %w", errUnmigrated)
	}
	have, err := applied(ctx, conn.Conn())
	if err != nil {
		return err
	}
	var missing []string
	for _, st := range want.steps {
		if sum, ok := have[st.name]; !ok || sum != st.checksum {
			missing = append(missing, st.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the database lacks migrations %s (has %d of %d): %w",
			strings.Join(missing, ", "), len(want.steps)-len(missing), len(want.steps), errUnmigrated)
	}
	return nil
}
