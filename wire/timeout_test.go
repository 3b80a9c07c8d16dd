package wire_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestPolicyTimeout checks timeout_ms: a statement that runs past it is
// cancelled with 57014 soon after the deadline, in both protocols and
// for each statement of a multi-statement query; statements that finish in time are not
// touched; the session stays usable.
func TestPolicyTimeout(t *testing.T) {
	dir := t.TempDir()
	rego := `package dbal

decision := {"allow": true, "reason": "test", "timeout_ms": 300}
`
	if err := os.WriteFile(filepath.Join(dir, "t.rego"), []byte(rego), 0o644); err != nil {
		t.Fatal(err)
	}
	sink := &auditSink{}
	p := startProxy(t, withPolicy(t, policyEngine(t, dir, decision.ModeStrict), sink))
	ctx := ctxT(t, 60*time.Second)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		t.Run(mode.String(), func(t *testing.T) {
			cfg, err := pgx.ParseConfig(p.URL("alice"))
			if err != nil {
				t.Fatal(err)
			}
			cfg.DefaultQueryExecMode = mode
			conn, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			start := time.Now()
			_, err = conn.Exec(ctx, "SELECT pg_sleep(5)")
			el := time.Since(start)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "57014" || pe.Message != "canceling statement due to statement timeout" {
				t.Fatalf("slow statement: %v", err)
			}
			if el < 300*time.Millisecond || el > 1500*time.Millisecond {
				t.Fatalf("cancelled after %s, want shortly after 300ms", el)
			}
			if pe.Detail != "The policy allows this statement 300 ms." {
				t.Errorf("detail %q, want the policy's 300 ms", pe.Detail)
			}
			// Each statement has its own timeout: three 200ms sleeps in a row pass.
			for range 3 {
				if _, err := conn.Exec(ctx, "SELECT pg_sleep(0.2)"); err != nil {
					t.Fatalf("a statement within its timeout: %v", err)
				}
			}
		})
	}
	t.Run("multi-statement", func(t *testing.T) {
		conn, err := pgconn.Connect(ctx, p.URL("alice"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		// Each statement of the string has its own timeout, as with
		// PostgreSQL's statement_timeout: three 200ms sleeps pass, and a
		// 500ms one after a quick one is cancelled at 300ms.
		res, err := conn.Exec(ctx, "SELECT pg_sleep(0.2); SELECT pg_sleep(0.2); SELECT pg_sleep(0.2)").ReadAll()
		if err != nil || len(res) != 3 {
			t.Fatalf("three statements within their timeouts: %d results, %v", len(res), err)
		}
		for _, r := range res {
			if r.CommandTag.String() != "SELECT 1" {
				t.Fatalf("result %q: the proxy's own SET reached the client?", r.CommandTag)
			}
		}
		start := time.Now()
		res, err = conn.Exec(ctx, "SELECT 1; SELECT pg_sleep(0.5)").ReadAll()
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "57014" || pe.Message != "canceling statement due to statement timeout" || len(res) != 2 || res[0].Err != nil {
			t.Fatalf("got %d results, %v; want the first statement and the second timed out", len(res), err)
		}
		if el := time.Since(start); el < 300*time.Millisecond || el > 1500*time.Millisecond {
			t.Fatalf("cancelled after %s, want shortly after 300ms", el)
		}
		// The timeout was the string's only.
		res, err = conn.Exec(ctx, "SHOW statement_timeout").ReadAll()
		if err != nil || len(res) != 1 || len(res[0].Rows) != 1 || string(res[0].Rows[0][0]) != "0" {
			t.Fatalf("statement_timeout after the string: %v %v", res, err)
		}
		if _, err := conn.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
			t.Fatalf("session after a timeout: %v", err)
		}
	})
	waitFor(t, "audit records of the timeouts", 2*time.Second, func() bool {
		n := 0
		for _, r := range sink.Records() {
			if r.SQLState == "57014" {
				n++
			}
		}
		return n == 3
	})
}
