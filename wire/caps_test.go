package wire_test

import (
	"context"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestMaxRows checks the policy's row cap (1000 for role user in the
// shipped policies): rows past it are withheld, the client gets a NOTICE,
// a SELECT's tag reports what was sent, and the session goes on. Roles
// without a cap get everything.
func TestMaxRows(t *testing.T) {
	sink := &auditSink{}
	p := startProxy(t, withPolicy(t, policyEngine(t, "", decision.ModeStrict), sink))
	ctx := ctxT(t, 30*time.Second)
	const q = "SELECT g FROM generate_series(1, 2500) g"
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec} {
		t.Run(mode.String(), func(t *testing.T) {
			var notices []string
			cfg, err := pgx.ParseConfig(p.URL("alice"))
			if err != nil {
				t.Fatal(err)
			}
			cfg.DefaultQueryExecMode = mode
			cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
			conn, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			for round := range 2 {
				rows, err := conn.Query(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				n, last := 0, 0
				for rows.Next() {
					if err := rows.Scan(&last); err != nil {
						t.Fatal(err)
					}
					n++
				}
				if err := rows.Err(); err != nil {
					t.Fatal(err)
				}
				if n != 1000 || last != 1000 {
					t.Fatalf("round %d: got %d rows ending at %d, want the first 1000", round, n, last)
				}
				if tag := rows.CommandTag(); tag.String() != "SELECT 1000" {
					t.Fatalf("tag %q, want SELECT 1000", tag)
				}
			}
			if len(notices) != 2 || notices[0] != "result truncated to 1000 rows by policy (max_rows)" {
				t.Fatalf("notices %q", notices)
			}
			var one int
			if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
				t.Fatalf("session after a capped result: %v", err)
			}
		})
	}
	t.Run("uncapped role", func(t *testing.T) {
		conn, err := pgx.Connect(ctx, p.URL("dave"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		var n int
		rows, _ := conn.Query(ctx, q)
		for rows.Next() {
			n++
		}
		if rows.Err() != nil || n != 2500 {
			t.Fatalf("supergod got %d rows, %v", n, rows.Err())
		}
	})
}
