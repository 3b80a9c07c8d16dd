package wire_test

import (
	"strings"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/audit"
	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/jackc/pgx/v5"
)

// deepSum is SELECT 1+1+...+1 with n terms: a left-deep tree of n-1
// operators, which the C code of pg_query walks recursively.
func deepSum(n int) string {
	return "SELECT 1" + strings.Repeat("+1", n-1)
}

// TestDeepStatementRefused sends statements whose parse trees are far too
// deep for pg_query's C code (a 30,000-term sum, 60 KB, overflowed its stack
// and killed the proxy with every session): the proxy answers 54001 like
// PostgreSQL, the session goes on, and a concurrent session does not notice.
func TestDeepStatementRefused(t *testing.T) {
	sink := &auditSink{}
	p := startProxy(t, withPolicy(t, policyEngine(t, "", decision.ModeStrict), sink))
	ctx := ctxT(t, 60*time.Second)
	conn, err := pgx.Connect(ctx, p.URL("bob"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	other, err := pgx.Connect(ctx, p.URL("carol"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)

	// The other session is in the middle of a statement while the deep ones
	// arrive.
	done := make(chan error, 1)
	go func() {
		var one int
		done <- other.QueryRow(ctx, "SELECT 1 FROM pg_sleep(1)").Scan(&one)
	}()

	deep := deepSum(30000)
	for _, c := range []struct {
		name string
		sql  string
		mode pgx.QueryExecMode
	}{
		{"simple", deep, pgx.QueryExecModeSimpleProtocol},
		{"extended", deep, pgx.QueryExecModeCacheStatement},
		{"describe-exec", deep, pgx.QueryExecModeDescribeExec},
		// A text that mentions dbal.token is parsed for an end-user switch
		// before the planner sees it.
		{"token comment", deep + " -- SET dbal.token", pgx.QueryExecModeSimpleProtocol},
		{"nested subqueries", "SELECT " + strings.Repeat("(SELECT ", 3000) + "1" + strings.Repeat(")", 3000), pgx.QueryExecModeSimpleProtocol},
		{"not chain", "SELECT " + strings.Repeat("NOT ", 20000) + "true", pgx.QueryExecModeCacheStatement},
	} {
		_, err := conn.Exec(ctx, c.sql, c.mode)
		pe, id := wantProxyError(t, err, "54001")
		if pe.Message != "stack depth limit exceeded" {
			t.Errorf("%s: message %q, want PostgreSQL's %q", c.name, pe.Message, "stack depth limit exceeded")
		}
		rec := recordByDecisionID(t, sink, id)
		if rec.Decision != audit.DecisionDeny || rec.Reason != "stack depth limit exceeded" {
			t.Errorf("%s: audit record %+v, want a denial for the stack depth", c.name, rec)
		}
		// The session goes on, in both protocols.
		var n int
		if err := conn.QueryRow(ctx, "SELECT 41 + 1", pgx.QueryExecModeSimpleProtocol).Scan(&n); err != nil || n != 42 {
			t.Fatalf("%s: simple query after the refusal: %d, %v", c.name, n, err)
		}
		if err := conn.QueryRow(ctx, "SELECT $1::int + 1", 41).Scan(&n); err != nil || n != 42 {
			t.Fatalf("%s: extended query after the refusal: %d, %v", c.name, n, err)
		}
	}

	// A deep but modest sum still works, as do wide flat lists.
	var n int
	if err := conn.QueryRow(ctx, deepSum(200), pgx.QueryExecModeSimpleProtocol).Scan(&n); err != nil || n != 200 {
		t.Fatalf("200-term sum: %d, %v", n, err)
	}
	in := "SELECT count(*) FROM generate_series(1, 10) g WHERE g IN (" + strings.Repeat("1, ", 20000) + "2)" +
		strings.Repeat(" OR g = 3", 5000)
	if err := conn.QueryRow(ctx, in).Scan(&n); err != nil || n != 3 {
		t.Fatalf("wide IN list and OR chain: %d, %v", n, err)
	}

	if err := <-done; err != nil {
		t.Fatalf("the concurrent session failed: %v", err)
	}
	var s string
	if err := other.QueryRow(ctx, "SELECT 'still here'").Scan(&s); err != nil || s != "still here" {
		t.Fatalf("the concurrent session after the deep statements: %q, %v", s, err)
	}
	stillServes(t, p)
}

// TestDeepStatementForwardedInPermissiveMode: in permissive mode the proxy
// forwards a text it cannot analyze, and PostgreSQL refuses the deep one
// itself; the proxy must survive it (and its audit record) all the same.
func TestDeepStatementForwardedInPermissiveMode(t *testing.T) {
	sink := &auditSink{}
	p := startProxy(t, withPolicy(t, policyEngine(t, "", decision.ModePermissive), sink))
	ctx := ctxT(t, 60*time.Second)
	conn, err := pgx.Connect(ctx, p.URL("bob"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		_, err := conn.Exec(ctx, deepSum(30000), mode)
		if got := sqlState(err); got != "54001" {
			t.Fatalf("mode %v: got %v, want PostgreSQL's 54001", mode, err)
		}
		var n int
		if err := conn.QueryRow(ctx, "SELECT 41 + 1", mode).Scan(&n); err != nil || n != 42 {
			t.Fatalf("mode %v: query after the refusal: %d, %v", mode, n, err)
		}
	}
	// One the proxy refuses to analyze but PostgreSQL runs is forwarded,
	// as any text the proxy cannot parse is in this mode.
	var n int
	if err := conn.QueryRow(ctx, deepSum(2000), pgx.QueryExecModeSimpleProtocol).Scan(&n); err != nil || n != 2000 {
		t.Fatalf("2000-term sum in permissive mode: %d, %v", n, err)
	}
	// A deep text that mentions dbal.token is refused in every mode: the
	// proxy cannot tell whether it switches the end user.
	_, err = conn.Exec(ctx, deepSum(2000)+" -- SET dbal.token", pgx.QueryExecModeSimpleProtocol)
	wantProxyError(t, err, "54001")
	waitFor(t, "a would-deny record for the deep statement", 3*time.Second, func() bool {
		for _, r := range sink.Records() {
			if r.Decision == audit.DecisionWouldDeny && r.Reason == "stack depth limit exceeded" {
				return true
			}
		}
		return false
	})
	stillServes(t, p)
}
