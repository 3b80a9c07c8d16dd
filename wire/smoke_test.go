package wire_test

import (
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestSmoke is the shortest end-to-end check: log in through the proxy,
// run a statement, see a denial, keep going.
func TestSmoke(t *testing.T) {
	sink := &auditSink{}
	p := startProxy(t, withPolicy(t, policyEngine(t, "", "strict"), sink))
	p.loadDemo(t)
	ctx := ctxT(t, 20*time.Second)
	conn, err := pgx.Connect(ctx, p.URL("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM page_views").Scan(&n); err != nil || n != 5 {
		t.Fatalf("count = %d, %v", n, err)
	}
	_, err = conn.Exec(ctx, "DELETE FROM page_views")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" {
		t.Fatalf("DELETE as user: got %v, want 42501", err)
	}
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM page_views").Scan(&n); err != nil || n != 5 {
		t.Fatalf("after denial: count = %d, %v", n, err)
	}
	waitFor(t, "audit records", 2*time.Second, func() bool { return len(sink.Records()) >= 4 })
}
