package wire_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/testenv"
	"github.com/dbalproxy/dbalproxy/wire"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/rs/zerolog"
)

func wantCode(t *testing.T, what string, err error, code, msg string) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != code || !strings.Contains(pe.Message, msg) {
		t.Fatalf("%s: got %v, want %s %q", what, err, code, msg)
	}
}

func TestPerLoginConnectionLimit(t *testing.T) {
	sink := &auditSink{}
	p := startProxy(t, func(w *wire.Config, _ *pool.Config) { w.Auditor = sink })
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
	waitFor(t, "the login records", 2*time.Second, func() bool { return len(sink.Records()) == 2 })
	// The two records may come in either order.
	r := sink.Records()[1]
	if r.Success {
		r = sink.Records()[0]
	}
	if r.Success || r.SQLState != "53300" || r.User != "alice" {
		t.Errorf("refused login's audit record: success %v, sqlstate %q, user %q", r.Success, r.SQLState, r.User)
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

// TestCancelForwardedToPeer: two proxies behind one "load balancer"; a
// cancel that reaches the instance that did not hand out the key is
// forwarded to the one that did, and cancels the statement there. A key of
// no peer is ignored.
func TestCancelForwardedToPeer(t *testing.T) {
	c := testenv.Shared(t)
	db := testenv.NewDatabase(t)
	logins := wire.Logins{}
	sc, err := wire.NewSCRAMCredentials("alice")
	if err != nil {
		t.Fatal(err)
	}
	logins["alice"] = &wire.Login{Name: "alice", Role: "user", SCRAM: sc}
	var lns [2]net.Listener
	peers := map[int]string{}
	for i := range lns {
		if lns[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		peers[i+1] = lns[i].Addr().String()
	}
	for i, ln := range lns {
		p, err := pool.New(pool.Config{ConnString: c.AppURL(db), MaxConns: 5})
		if err != nil {
			t.Fatal(err)
		}
		srv, err := wire.NewServer(wire.Config{Logins: logins, Backends: p, DefaultDatabase: db, PeerID: i + 1, Peers: peers,
			Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = srv.Serve(ln); close(done) }()
		t.Cleanup(func() { _ = srv.Close(); <-done; p.Close() })
	}
	ctx := ctxT(t, 30*time.Second)
	conn, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://alice:alice@%s/%s?sslmode=disable", peers[1], db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// Its servers run in session pooling: the pid is the backend's real
	// one and the peer id goes into the secret.
	if got := conn.SecretKey()[0] >> 1; got != 1 || conn.PID()>>24 != 0 {
		t.Fatalf("cancel key %#x/%x does not carry peer id 1 in its secret", conn.PID(), conn.SecretKey())
	}
	sendCancel := func(addr string, pid uint32, secret []byte) {
		t.Helper()
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		buf, _ := (&pgproto3.CancelRequest{ProcessID: pid, SecretKey: secret}).Encode(nil)
		if _, err := nc.Write(buf); err != nil {
			t.Fatal(err)
		}
		_, _ = nc.Read(make([]byte, 1)) // closed without an answer
	}
	run := func(cancel func()) error {
		res := make(chan error, 1)
		go func() { _, err := conn.Exec(ctx, "SELECT pg_sleep(3)").ReadAll(); res <- err }()
		time.Sleep(300 * time.Millisecond)
		start := time.Now()
		cancel()
		err := <-res
		if err == nil && time.Since(start) < time.Second {
			t.Fatal("statement ended early without an error")
		}
		return err
	}
	// A key of a peer id nobody has (3) is ignored: the statement completes.
	if err := run(func() { sendCancel(peers[2], 3<<24|conn.PID()&0xffffff, conn.SecretKey()) }); err != nil {
		t.Fatalf("cancel with an unknown peer id: %v", err)
	}
	// A wrong secret, forwarded, is ignored by the peer that owns the pid.
	if err := run(func() { sendCancel(peers[2], conn.PID(), []byte{1, 2, 3, 4}) }); err != nil {
		t.Fatalf("forwarded cancel with a wrong secret: %v", err)
	}
	// The right key at the other instance cancels.
	err = run(func() { sendCancel(peers[2], conn.PID(), conn.SecretKey()) })
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57014" {
		t.Fatalf("cancel through the other instance: %v, want 57014", err)
	}
}
