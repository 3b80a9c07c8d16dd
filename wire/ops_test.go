package wire_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/wire"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func wantCode(t *testing.T, what string, err error, code, msg string) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != code || !strings.Contains(pe.Message, msg) {
		t.Fatalf("%s: got %v, want %s %q", what, err, code, msg)
	}
}

func TestPerLoginConnectionLimit(t *testing.T) {
	p := startProxy(t)
	p.Server.SetLimits(wire.Limits{MaxLoginConns: 1, LoginMaxConns: map[string]int{"bob": 2, "carol": -1}})
	ctx := ctxT(t, 20*time.Second)
	a1, err := pgx.Connect(ctx, p.URL("alice"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = pgx.Connect(ctx, p.URL("alice"))
	wantCode(t, "second alice", err, "53300", `too many connections for login "alice"`)
	if got := p.Server.Stats().RejectedLogin; got != 1 {
		t.Errorf("RejectedLogin = %d, want 1", got)
	}
	// The first session is untouched by the refusal.
	if _, err := a1.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	a1.Close(ctx)
	waitFor(t, "alice's session to end", 5*time.Second, func() bool { return p.Server.LoginConns("alice") == 0 })
	a2, err := pgx.Connect(ctx, p.URL("alice"))
	if err != nil {
		t.Fatalf("alice after the first closed: %v", err)
	}
	defer a2.Close(ctx)

	var bobs []*pgx.Conn
	for i := range 2 {
		c, err := pgx.Connect(ctx, p.URL("bob"))
		if err != nil {
			t.Fatalf("bob %d: %v", i, err)
		}
		bobs = append(bobs, c)
	}
	_, err = pgx.Connect(ctx, p.URL("bob"))
	wantCode(t, "third bob", err, "53300", `too many connections for login "bob"`)
	for i := range 3 { // carol: no limit
		c, err := pgx.Connect(ctx, p.URL("carol"))
		if err != nil {
			t.Fatalf("carol %d: %v", i, err)
		}
		bobs = append(bobs, c)
	}
	for _, c := range bobs {
		c.Close(ctx)
	}

	// A lower total limit applies to new connections at once.
	p.Server.SetLimits(wire.Limits{MaxClientConns: 1})
	_, err = pgx.Connect(ctx, p.URL("dave"))
	wantCode(t, "over the total", err, "53300", "too many client connections (limit 1)")
	if st := p.Server.Stats(); st.RejectedTotal != 1 || st.Accepted < 8 {
		t.Errorf("stats %+v", st)
	}
}

// TestDrainLetsTransactionsFinish: Drain closes an idle session with 57P01 at
// once, lets a session inside a transaction commit, then closes it, refuses
// new connections, and returns when all sessions are gone.
func TestDrainLetsTransactionsFinish(t *testing.T) {
	p := startProxy(t)
	ctx := ctxT(t, 30*time.Second)
	direct, err := pgx.Connect(ctx, p.DirectDB)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	if _, err := direct.Exec(ctx, "CREATE TABLE drained (x int)"); err != nil {
		t.Fatal(err)
	}
	inTx, err := pgx.Connect(ctx, p.URL("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer inTx.Close(ctx)
	idle, err := pgx.Connect(ctx, p.URL("bob"))
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close(ctx)
	if _, err := inTx.Exec(ctx, "BEGIN; INSERT INTO drained VALUES (1)"); err != nil {
		t.Fatal(err)
	}

	drained := make(chan error, 1)
	go func() {
		dctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		drained <- p.Server.Drain(dctx)
	}()
	waitFor(t, "draining", 5*time.Second, p.Server.Draining)
	// The idle session is told and closed.
	waitFor(t, "the idle session to be closed", 5*time.Second, func() bool { return p.Server.ClientConns() == 1 })
	_, err = idle.Exec(ctx, "SELECT 1")
	wantCode(t, "idle session", err, "57P01", "terminating connection due to administrator command")
	// New connections are refused.
	if c, err := pgconn.Connect(ctx, p.URL("carol")); err == nil {
		c.Close(ctx)
		t.Fatal("a new connection was accepted while draining")
	}
	// The transaction goes on and commits.
	time.Sleep(100 * time.Millisecond)
	if _, err := inTx.Exec(ctx, "INSERT INTO drained VALUES (2)"); err != nil {
		t.Fatalf("statement in the transaction while draining: %v", err)
	}
	if _, err := inTx.Exec(ctx, "COMMIT"); err != nil {
		t.Fatalf("COMMIT while draining: %v", err)
	}
	select {
	case err := <-drained:
		if err != nil {
			t.Fatalf("Drain: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Drain did not return after the transaction ended")
	}
	_, err = inTx.Exec(ctx, "SELECT 1")
	wantCode(t, "session after its transaction", err, "57P01", "terminating connection")
	var n int
	if err := direct.QueryRow(ctx, "SELECT count(*) FROM drained").Scan(&n); err != nil || n != 2 {
		t.Fatalf("committed rows = %d, %v; want 2", n, err)
	}
}

// TestDrainDeadlineRollsBack: a transaction still open at the deadline is
// closed with 57P01 and rolled back.
func TestDrainDeadlineRollsBack(t *testing.T) {
	p := startProxy(t)
	ctx := ctxT(t, 30*time.Second)
	direct, err := pgx.Connect(ctx, p.DirectDB)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	if _, err := direct.Exec(ctx, "CREATE TABLE drained (x int)"); err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, p.URL("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "BEGIN; INSERT INTO drained VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := p.Server.Drain(dctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain = %v, want the deadline", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Drain took %s", d)
	}
	_, err = c.Exec(ctx, "COMMIT")
	wantCode(t, "COMMIT after the deadline", err, "57P01", "terminating connection")
	var n int
	if err := direct.QueryRow(ctx, "SELECT count(*) FROM drained").Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows = %d, %v; want 0 (rolled back)", n, err)
	}
}
