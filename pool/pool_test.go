package pool

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/testenv"
	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunMain(m)) }

func newPool(t *testing.T, mod func(*Config)) (*Pool, *testenv.Cluster, string) {
	t.Helper()
	c := testenv.Shared(t)
	db := testenv.NewDatabase(t)
	cfg := Config{ConnString: c.AppURL(db), MaxConns: 2, AcquireTimeout: 300 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, c, db
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestAcquireReuseAndReset(t *testing.T) {
	p, _, _ := newPool(t, nil)
	c1, err := p.Acquire(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	pid := c1.PID
	if err := c1.Exec(ctx(t), "BEGIN; SET LOCAL work_mem = '9MB'"); err != nil {
		t.Fatal(err)
	}
	if err := c1.Exec(ctx(t), "SET statement_timeout = '7s'; CREATE TEMP TABLE scratch (i int)"); err != nil {
		t.Fatal(err)
	}
	if c1.TxStatus != 'T' {
		t.Fatalf("TxStatus = %q, want T", c1.TxStatus)
	}
	p.Release(c1)
	c2, err := p.Acquire(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(c2)
	if c2.PID != pid {
		t.Fatalf("a released connection was not reused: pid %d, then %d", pid, c2.PID)
	}
	if c2.TxStatus != 'I' {
		t.Fatalf("reused connection in transaction state %q", c2.TxStatus)
	}
	// The temp table is gone and the setting is back to its default.
	if err := c2.Exec(ctx(t), "SELECT * FROM scratch"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("temp table survived the reset: %v", err)
	}
	if got := c2.Params["application_name"]; got != "" {
		t.Fatalf("application_name = %q after reset", got)
	}
	st := p.Stats()
	if st.Dials != 1 || st.Resets != 1 || st.Open != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestAcquireWaitsThenTimesOut(t *testing.T) {
	p, _, _ := newPool(t, nil)
	a, err := p.Acquire(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Acquire(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = p.Acquire(ctx(t), "")
	if !errors.Is(err, ErrAcquireTimeout) {
		t.Fatalf("third Acquire: %v, want ErrAcquireTimeout", err)
	}
	var ss interface{ SQLState() string }
	if !errors.As(err, &ss) || ss.SQLState() != "53300" {
		t.Fatalf("timeout SQLSTATE: %v", err)
	}
	if el := time.Since(start); el < 250*time.Millisecond || el > 2*time.Second {
		t.Fatalf("waited %s, want about 300ms", el)
	}
	// A waiter is served by the next Release, in order.
	var wg sync.WaitGroup
	wg.Add(1)
	var got *Conn
	go func() {
		defer wg.Done()
		got, err = p.Acquire(ctx(t), "")
	}()
	waitUntil(t, func() bool { return p.Stats().Waiting == 1 })
	p.Release(a)
	wg.Wait()
	if err != nil || got == nil || got.PID != a.PID {
		t.Fatalf("waiter got %v, %v; want the released connection", got, err)
	}
	p.Destroy(got)
	p.Release(b)
	if st := p.Stats(); st.Open != 1 || st.Timeouts != 1 || st.Destroyed != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDeadIdleConnectionIsReplaced(t *testing.T) {
	p, c, db := newPool(t, nil)
	conn, err := p.Acquire(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	pid := conn.PID
	p.Release(conn)
	// Kill the idle backend from outside, then wait past the liveness window.
	admin, err := pgx.Connect(ctx(t), c.SuperURL(db))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx(t))
	if _, err := admin.Exec(ctx(t), "SELECT pg_terminate_backend($1)", int(pid)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	conn2, err := p.Acquire(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(conn2)
	if conn2.PID == pid {
		t.Fatal("a terminated backend was handed out")
	}
	if err := conn2.Exec(ctx(t), "SELECT 1"); err != nil {
		t.Fatalf("replacement connection: %v", err)
	}
}

func TestDialErrors(t *testing.T) {
	c := testenv.Shared(t)
	p, err := New(Config{ConnString: c.AppURL("no_such_db"), AcquireTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, err = p.Acquire(ctx(t), "")
	var de *DialError
	if !errors.As(err, &de) || de.SQLState() != "3D000" || !strings.Contains(de.ClientMessage(), "no_such_db") {
		t.Fatalf("missing database: %v", err)
	}
	bad := strings.Replace(c.AppURL("postgres"), c.AppPassword(), "wrong", 1)
	p2, err := New(Config{ConnString: bad})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	_, err = p2.Acquire(ctx(t), "")
	if !errors.As(err, &de) || de.SQLState() != "08006" || strings.Contains(de.ClientMessage(), "password") {
		t.Fatalf("bad backend password must not reach clients as an auth error: %v / %q", err, de.ClientMessage())
	}
	if st := p2.Stats(); st.DialFails != 1 || st.Open != 0 {
		t.Fatalf("a failed dial kept its place: %+v", st)
	}
	if _, err := New(Config{ConnString: "postgres://u:secretpw@[bad"}); err == nil || strings.Contains(err.Error(), "secretpw") {
		t.Fatalf("invalid connection string: %v", err)
	}
}

func TestBrokenConnectionIsDestroyedOnRelease(t *testing.T) {
	p, _, _ := newPool(t, nil)
	conn, err := p.Acquire(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	conn.MarkBroken()
	p.Release(conn)
	if st := p.Stats(); st.Open != 0 || st.Destroyed != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCloseRefusesAcquire(t *testing.T) {
	p, _, _ := newPool(t, nil)
	conn, err := p.Acquire(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	p.Release(conn)
	p.Close()
	if _, err := p.Acquire(ctx(t), ""); !errors.Is(err, ErrClosed) {
		t.Fatalf("Acquire after Close: %v", err)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
