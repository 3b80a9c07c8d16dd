package wire_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dbalproxy/dbalproxy/policy"
)

// TestAdminCannotTouchGodRows: with the shipped policies an admin (bob)
// reads every users row but updates and deletes only rows whose role is user
// or admin. An UPDATE or DELETE of a god or supergod row finds no row (0
// rows affected, no error, as under PostgreSQL's RLS USING), even an UPDATE
// that would demote the row to "user", which the write check alone allows;
// user rows stay within reach.
func TestAdminCannotTouchGodRows(t *testing.T) {
	p, _, direct := demoProxy(t, policy.ModeStrict)
	ctx := ctxT(t, 60*time.Second)
	before := digest(t, direct)

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		bob := connectMode(t, p.URL("bob"), mode)
		for _, tc := range []struct {
			sql  string
			args []any
		}{
			{"UPDATE users SET role = 'user' WHERE id = 'u_dave'", nil},
			{"UPDATE users SET role = $1 WHERE id = $2", []any{"admin", "u_carol"}},
			{"UPDATE users SET email = email WHERE id = 'u_carol'", nil},
			{"UPDATE users SET username = username || '!' WHERE role IN ('god', 'supergod') RETURNING id", nil},
			{"DELETE FROM users WHERE id = $1", []any{"u_carol"}},
			{"DELETE FROM users WHERE role = 'supergod' RETURNING id", nil},
			{"WITH d AS (DELETE FROM users WHERE id IN ('u_carol', 'u_dave') RETURNING id) SELECT id FROM d", nil},
		} {
			rows, err := bob.Query(ctx, tc.sql, tc.args...)
			if err != nil {
				t.Fatalf("%q: %v", tc.sql, err)
			}
			n := 0
			for rows.Next() {
				n++
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				t.Fatalf("%q: %v", tc.sql, err)
			}
			if n != 0 || (rows.CommandTag().RowsAffected() != 0) {
				t.Errorf("%q: %d rows returned, tag %q; want none", tc.sql, n, rows.CommandTag())
			}
		}
		wantUnchanged(t, direct, before)

		var gods int
		if err := bob.QueryRow(ctx, "SELECT count(*) FROM users WHERE role IN ('god', 'supergod')").Scan(&gods); err != nil || gods != 2 {
			t.Errorf("admin reads god rows: %d, %v; want 2", gods, err)
		}
		tx, err := bob.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if tag, err := tx.Exec(ctx, "UPDATE users SET email = $1 WHERE id = $2", "erin2@example.com", "u_erin"); err != nil || tag.RowsAffected() != 1 {
			t.Errorf("admin updates a user row: %v, %v", tag, err)
		}
		if tag, err := tx.Exec(ctx, "UPDATE users SET role = 'user' WHERE id = 'u_bob'"); err != nil || tag.RowsAffected() != 1 {
			t.Errorf("admin updates an admin row: %v, %v", tag, err)
		}
		if tag, err := tx.Exec(ctx, "DELETE FROM users WHERE id = 'u_frank'"); err != nil || tag.RowsAffected() != 1 {
			t.Errorf("admin deletes a user row: %v, %v", tag, err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		wantUnchanged(t, direct, before)
	}
}
