package wire

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/parser"
	"github.com/dbalproxy/dbalproxy/plan"
	"github.com/dbalproxy/dbalproxy/planner"
	"github.com/dbalproxy/dbalproxy/policy"
	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/jackc/pgx/v5/pgproto3"
	pg_query "github.com/pganalyze/pg_query_go/v6"
	"github.com/rs/zerolog"
)

// noBackends refuses every Acquire: the startup fuzzer never gets that far
// with a valid password, and must not need a database.
type noBackends struct{}

func (noBackends) Acquire(context.Context, string) (*pool.Conn, error) {
	return nil, errors.New("no backend in this test")
}
func (noBackends) Release(*pool.Conn)           {}
func (noBackends) Put(*pool.Conn)               {}
func (noBackends) TryAcquire(string) *pool.Conn { return nil }
func (noBackends) Destroy(*pool.Conn)           {}

func startupSeeds() [][]byte {
	enc := func(m pgproto3.FrontendMessage) []byte { b, _ := m.Encode(nil); return b }
	startup := enc(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": "alice", "database": "app", "options": "-c search_path=x"}})
	return [][]byte{
		startup,
		append(enc(&pgproto3.SSLRequest{}), startup...),
		append(enc(&pgproto3.GSSEncRequest{}), startup...),
		enc(&pgproto3.CancelRequest{ProcessID: 1, SecretKey: []byte{1, 2, 3, 4}}),
		append(startup, enc(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=abc")})...),
		append(startup, enc(&pgproto3.SASLInitialResponse{AuthMechanism: "PLAIN", Data: []byte("x")})...),
		append(startup, 'p', 0, 0, 0, 3),
		[]byte("GET / HTTP/1.1\r\n\r\n"),
		{0, 0, 0, 8, 0, 3, 0, 1},
	}
}

// FuzzStartup feeds arbitrary bytes to a session as its client: whatever
// comes, the session ends within its startup timeout, without a panic.
func FuzzStartup(f *testing.F) {
	for _, s := range startupSeeds() {
		f.Add(s)
	}
	sc, err := NewSCRAMCredentials("alice")
	if err != nil {
		f.Fatal(err)
	}
	srv, err := NewServer(Config{
		Logins:          Logins{"alice": {Name: "alice", Role: "user", SCRAM: sc}},
		Backends:        noBackends{},
		DefaultDatabase: "app",
		StartupTimeout:  200 * time.Millisecond,
		Logger:          zerolog.Nop(),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		defer client.Close()
		sess := newSession(srv, server)
		done := make(chan struct{})
		go func() {
			defer close(done)
			sess.run()
		}()
		go func() { _, _ = io.Copy(io.Discard, client) }()
		_ = client.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = client.Write(data)
		if len(data)%2 == 0 {
			client.Close() // half the inputs end with EOF, half wait for the timeout
		}
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			t.Fatal("session did not end after its startup timeout")
		}
	})
}

// FuzzFrames reads arbitrary bytes as a message stream: every message is
// either framed within its bounds or refused, never a panic or an
// over-long allocation.
func FuzzFrames(f *testing.F) {
	f.Add([]byte{'Q', 0, 0, 0, 9, 'S', 'E', 'L', 0, 'X', 0, 0, 0, 4})
	f.Add([]byte{'d', 0, 0, 0x40, 0})
	f.Add([]byte{'Q', 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		m := msgReader{r: bufio.NewReaderSize(bytes.NewReader(data), 64), max: 1 << 12}
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		for {
			typ, n, err := m.header()
			if err != nil {
				return
			}
			if n < 0 || n > m.max {
				t.Fatalf("header gave length %d for type %q", n, typ)
			}
			if m.fits(n) {
				b, err := m.peekWhole(n)
				if err != nil {
					return
				}
				if len(b) != n+5 {
					t.Fatalf("peekWhole gave %d bytes, want %d", len(b), n+5)
				}
				m.discard(len(b))
			} else if err := m.copyThrough(w, n); err != nil {
				return
			}
		}
	})
}

// FuzzOptions parses arbitrary startup "options" values.
func FuzzOptions(f *testing.F) {
	f.Add("-c search_path=a\\ b --work_mem=4MB")
	f.Add("-c")
	f.Add("--=x -cx")
	f.Fuzz(func(t *testing.T, s string) {
		opts, err := parseOptions(s)
		if err != nil {
			return
		}
		for k := range opts {
			if k == "" {
				t.Fatalf("empty option name from %q", s)
			}
		}
	})
}

// FuzzDenyStatement checks that no denial text, whatever a client put in a
// table name or a policy in a reason, can break out of the injected DO
// statement: the result is always exactly one DO statement.
func FuzzDenyStatement(f *testing.F) {
	f.Add("role \"user\" may not delete from public.users", "statement: DELETE on x")
	f.Add("$dbalproxy$; DROP TABLE users; --", "'); DROP TABLE x; --")
	f.Add("\\'$$", "$a$")
	f.Fuzz(func(t *testing.T, msg, detail string) {
		if strings.IndexByte(msg, 0) >= 0 || strings.IndexByte(detail, 0) >= 0 {
			return // cannot come from the protocol's C strings
		}
		sql := denyStatement(&plan.Denial{Code: CodeInsufficientPriv, Message: msg, Detail: detail}, "abc")
		res, err := pg_query.Parse(sql)
		if err != nil {
			t.Fatalf("deny statement does not parse: %v\n%s", err, sql)
		}
		if len(res.Stmts) != 1 || res.Stmts[0].Stmt.GetDoStmt() == nil {
			t.Fatalf("deny statement is not exactly one DO statement:\n%s", sql)
		}
	})
}

// scriptedBackends hands out one pool.Conn over a net.Pipe whose far end
// reads and discards what the proxy forwards, and records how it was given back.
type scriptedBackends struct{ released, destroyed int }

func (b *scriptedBackends) Acquire(context.Context, string) (*pool.Conn, error) {
	return nil, errors.New("not used")
}
func (b *scriptedBackends) Release(c *pool.Conn)         { b.released++; c.Close() }
func (b *scriptedBackends) Put(c *pool.Conn)             { b.Release(c) }
func (b *scriptedBackends) TryAcquire(string) *pool.Conn { return nil }
func (b *scriptedBackends) Destroy(c *pool.Conn)         { b.destroyed++; c.Close() }

// FuzzSession feeds arbitrary bytes, after login, to a session that decides
// with the shipped policies: it must end cleanly when the client goes away,
// never panic, and never hand a backend with unanswered requests back for
// reuse.
func FuzzSession(f *testing.F) {
	enc := func(ms ...pgproto3.FrontendMessage) []byte {
		var b []byte
		for _, m := range ms {
			b, _ = m.Encode(b)
		}
		return b
	}
	f.Add(enc(&pgproto3.Query{String: "SELECT 1; DELETE FROM users"}))
	f.Add(enc(&pgproto3.Parse{Name: "s1", Query: "SELECT * FROM users WHERE id = $1"}, &pgproto3.Bind{PreparedStatement: "s1"},
		&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}))
	f.Add(enc(&pgproto3.Parse{Query: "DELETE FROM packages"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}, &pgproto3.Terminate{}))
	f.Add(enc(&pgproto3.FunctionCall{Function: 1}, &pgproto3.Close{ObjectType: 'S', Name: "s1"}, &pgproto3.Flush{}))
	f.Add([]byte{'Q', 0, 0, 0, 5, 0, 'z', 0, 0, 0, 4})
	f.Add(enc(&pgproto3.Query{String: "SELEC"}, &pgproto3.CopyData{Data: []byte("x")}, &pgproto3.CopyDone{}))
	engine, err := policy.New(policy.Options{Dir: "../policies", Logger: zerolog.Nop()})
	if err != nil {
		f.Fatal(err)
	}
	pln, err := planner.New(planner.Config{Parser: parser.New(parser.Options{}), Policy: engine, Logger: zerolog.Nop()})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		backends := &scriptedBackends{}
		srv, err := NewServer(Config{Logins: Logins{}, Backends: backends, DefaultDatabase: "app",
			Decider: pln, Logger: zerolog.Nop(), MaxMessageSize: 1 << 16})
		if err != nil {
			t.Fatal(err)
		}
		client, server := net.Pipe()
		beProxy, beFar := net.Pipe()
		go func() { _, _ = io.Copy(io.Discard, beFar) }()
		go func() { _, _ = io.Copy(io.Discard, client) }()
		sess := newSession(srv, server)
		sess.user, sess.database = "alice", "app"
		sess.principal = plan.Principal{User: "alice", Role: "user", Claims: map[string]any{"user_id": "u_alice"}}
		sess.attach(pool.NewConn(beProxy, 1, []byte{1, 2, 3, 4}, map[string]string{"server_version": "15.0"}))
		sess.initStatements()
		sess.pumpDone = make(chan struct{})
		go sess.pump(sess.be)
		done := make(chan bool)
		go func() { done <- sess.loop() }()
		_ = client.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
		_, _ = client.Write(data)
		client.Close()
		var clean bool
		select {
		case clean = <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("session loop did not end after the client closed")
		}
		sess.teardown(clean)
		beFar.Close()
		if backends.released+backends.destroyed != 1 {
			t.Fatalf("backend given back %d times", backends.released+backends.destroyed)
		}
		if backends.released == 1 && sess.reqs.pending() != 0 {
			t.Fatal("a backend with unanswered requests was released for reuse")
		}
	})
}
