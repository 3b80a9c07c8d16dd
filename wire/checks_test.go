package wire_test

import (
	"strings"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/audit"
	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/jackc/pgx/v5"
)

// Write checks through the proxy with the shipped policies: an admin may not
// make anyone god or supergod, a user may not move or create rows outside its
// own; the client gets 42501 and nothing is written, in both protocols, and
// the session goes on.
func TestChecksThroughProxy(t *testing.T) {
	p, sink, direct := demoProxy(t, decision.ModeStrict)
	ctx := ctxT(t, 60*time.Second)
	before := digest(t, direct)

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		bob := connectMode(t, p.URL("bob"), mode)
		alice := connectMode(t, p.URL("alice"), mode)
		for _, tc := range []struct {
			conn *pgx.Conn
			who  string
			sql  string
			args []any
		}{
			{bob, "admin", "UPDATE users SET role = 'god' WHERE id = 'u_erin'", nil},
			{bob, "admin", "UPDATE users SET role = $1 WHERE id = $2", []any{"supergod", "u_erin"}},
			{bob, "admin", "INSERT INTO users (id, username, email, role) VALUES ($1, $2, $3, $4)", []any{"u_x", "x", "x@example.com", "god"}},
			{bob, "admin", "INSERT INTO users (id, username, email, role) VALUES ('u_y', 'y', 'y@example.com', 'user') ON CONFLICT (id) DO NOTHING; UPDATE users SET role = 'god' WHERE id = 'u_y'", nil},
			{bob, "admin", "INSERT INTO users (id, username, email, role) VALUES ('u_erin', 'erin', 'erin@example.com', 'user') ON CONFLICT (id) DO UPDATE SET role = 'god'", nil},
			{alice, "user", "UPDATE users SET id = 'u_mallory' WHERE id = 'u_alice'", nil},
			{alice, "user", "UPDATE users SET id = $1", []any{"u_mallory"}},
		} {
			if mode != pgx.QueryExecModeSimpleProtocol && strings.Contains(tc.sql, ";") {
				continue
			}
			_, err := tc.conn.Exec(ctx, tc.sql, tc.args...)
			pe, id := wantProxyError(t, err, "42501")
			if !strings.Contains(pe.Message, "row-level security") && !strings.Contains(pe.Message, "may not") {
				t.Errorf("%s %q: message %q", tc.who, tc.sql, pe.Message)
			}
			if rec := recordByDecisionID(t, sink, id); rec.Decision != audit.DecisionDeny || rec.Success {
				t.Errorf("%q: audit record %+v, want a failed deny", tc.sql, rec)
			}
			// The session goes on.
			var one int
			if err := tc.conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
				t.Fatalf("after %q: SELECT 1 = %d, %v", tc.sql, one, err)
			}
		}
		wantUnchanged(t, direct, before)

		// Permitted writes go through.
		tx, err := bob.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if tag, err := tx.Exec(ctx, "UPDATE users SET role = $1 WHERE id = $2", "admin", "u_erin"); err != nil || tag.RowsAffected() != 1 {
			t.Errorf("admin makes erin admin: %v, %v", tag, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO users (id, username, email, role) VALUES ($1, $2, $3, $4)", "u_z", "z", "z@example.com", "user"); err != nil {
			t.Errorf("admin inserts a user: %v", err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		var email string
		if err := alice.QueryRow(ctx, "UPDATE users SET email = $1 RETURNING email", "alice2@example.com").Scan(&email); err != nil || email != "alice2@example.com" {
			t.Errorf("alice updates her email: %q, %v", email, err)
		}
		if _, err := alice.Exec(ctx, "UPDATE users SET email = 'alice@example.com'"); err != nil {
			t.Fatal(err)
		}
		wantUnchanged(t, direct, before)
	}
}
