package pool

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestPutKeepsSessionState: Put hands the connection to the next caller as
// it is (prepared statements and State kept, no reset), while Release resets
// it and drops State.
func TestPutKeepsSessionState(t *testing.T) {
	var mine State[string]
	p, _, _ := newPool(t, nil)
	c, err := p.Acquire(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(ctx(t), "PREPARE kept AS SELECT 1"); err != nil {
		t.Fatal(err)
	}
	mine.Set(c, "mine")
	p.Put(c)
	c2, err := p.Acquire(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := mine.Get(c2); c2 != c || v != "mine" {
		t.Fatalf("Put did not keep the connection's State: %q", v)
	}
	if err := c2.Exec(ctx(t), "EXECUTE kept"); err != nil {
		t.Fatalf("Put reset the connection: %v", err)
	}
	if p.Stats().Resets != 0 {
		t.Fatal("Put ran the reset query")
	}
	// A connection left in a transaction is not kept.
	if err := c2.Exec(ctx(t), "BEGIN"); err != nil {
		t.Fatal(err)
	}
	p.Put(c2)
	if st := p.Stats(); st.Open != 0 || st.Destroyed != 1 {
		t.Fatalf("a connection inside a transaction was kept: %+v", st)
	}
	c3, err := p.Acquire(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	mine.Set(c3, "x")
	p.Release(c3)
	c4, err := p.Acquire(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(c4)
	if _, ok := mine.Get(c4); ok {
		t.Fatal("Release kept State across the reset")
	}
	if c4.InitialParams["server_version"] == "" {
		t.Fatal("InitialParams is empty")
	}
}

// TestTerminatedIdleConnectionIsReplacedAtOnce: the liveness probe sees a
// backend that went away even when the connection was used a moment ago.
func TestTerminatedIdleConnectionIsReplacedAtOnce(t *testing.T) {
	p, c, db := newPool(t, nil)
	conn, err := p.Acquire(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	pid := conn.PID
	p.Put(conn)
	admin, err := pgx.Connect(ctx(t), c.SuperURL(db))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx(t))
	if _, err := admin.Exec(ctx(t), "SELECT pg_terminate_backend($1, 5000)", int(pid)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the FATAL and FIN reach the socket
	conn2, err := p.Acquire(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(conn2)
	if conn2.PID == pid {
		t.Fatal("a terminated backend was handed out")
	}
	if err := conn2.Exec(ctx(t), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
}
