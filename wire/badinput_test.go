package wire_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/wire"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/rs/zerolog"
)

// syncBuf is a goroutine-safe buffer for captured logs.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// stillServes checks that the proxy answers a normal client.
func stillServes(t *testing.T, p *proxy) {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	conn, err := pgx.Connect(ctx, p.URL("bob"))
	if err != nil {
		t.Fatalf("proxy stopped serving: %v", err)
	}
	defer conn.Close(ctx)
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("proxy stopped serving: %v", err)
	}
}

// readFatal reads the server's answer to a bad client and returns its
// ErrorResponse, if any, before the connection closed.
func readFatal(t *testing.T, c net.Conn) *pgproto3.ErrorResponse {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	fe := pgproto3.NewFrontend(c, io.Discard)
	for {
		msg, err := fe.Receive()
		if err != nil {
			return nil
		}
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			cp := *e
			return &cp
		}
	}
}

// expectClosed asserts the proxy closes c within d.
func expectClosed(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 1024)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open after %s", d)
		}
		return
	}
}

func TestBadInputBeforeStartup(t *testing.T) {
	logs := &syncBuf{}
	p := startProxy(t, func(w *wire.Config, _ *pool.Config) {
		w.StartupTimeout = 500 * time.Millisecond
		w.Logger = zerolog.New(logs)
	})
	cases := []struct {
		name string
		data []byte
	}{
		{"http request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"huge length", []byte{0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0}},
		{"tiny length", []byte{0, 0, 0, 2}},
		{"unknown protocol", []byte{0, 0, 0, 8, 0, 9, 0, 0}},
		{"startup without terminator", append([]byte{0, 0, 0, 13, 0, 3, 0, 0}, []byte("user\x00")...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", p.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tc.data); err != nil {
				t.Fatal(err)
			}
			expectClosed(t, c, 3*time.Second)
		})
	}
	t.Run("startup never finishes", func(t *testing.T) {
		c, err := net.Dial("tcp", p.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write([]byte{0, 0}) // half a length, then silence
		start := time.Now()
		expectClosed(t, c, 3*time.Second)
		if el := time.Since(start); el < 400*time.Millisecond {
			t.Fatalf("closed after %s, before the startup timeout", el)
		}
	})
	stillServes(t, p)
	if p.Server.ClientConns() > 1 {
		waitFor(t, "bad connections to be gone", 3*time.Second, func() bool { return p.Server.ClientConns() == 0 })
	}
}

func TestGSSEncRefusedThenPlainStartup(t *testing.T) {
	p := startProxy(t)
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, code := range []uint32{80877104, 80877103} { // GSSENCRequest, then SSLRequest
		var req [8]byte
		binary.BigEndian.PutUint32(req[:4], 8)
		binary.BigEndian.PutUint32(req[4:], code)
		if _, err := c.Write(req[:]); err != nil {
			t.Fatal(err)
		}
		var ans [1]byte
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := io.ReadFull(c, ans[:]); err != nil || ans[0] != 'N' {
			t.Fatalf("answer to request %d: %q, %v; want 'N'", code, ans[0], err)
		}
	}
	fe := pgproto3.NewFrontend(c, c)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "alice", "database": p.DB}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	msg, err := fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := msg.(*pgproto3.AuthenticationSASL); !ok || len(a.AuthMechanisms) != 1 || a.AuthMechanisms[0] != "SCRAM-SHA-256" {
		t.Fatalf("after GSS and SSL refusals: %#v, want AuthenticationSASL SCRAM-SHA-256", msg)
	}
}

// hijacked logs in through the proxy and returns the raw connection.
func hijacked(t *testing.T, p *proxy) net.Conn {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	pc, err := pgconn.Connect(ctx, p.URL("alice"))
	if err != nil {
		t.Fatal(err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hc.Conn.Close() })
	return hc.Conn
}

func TestBadInputAfterStartup(t *testing.T) {
	logs := &syncBuf{}
	p := startProxy(t, func(w *wire.Config, _ *pool.Config) {
		w.MaxMessageSize = 64 << 10
		w.Logger = zerolog.New(logs)
	})
	query := func(s string) []byte {
		b, _ := (&pgproto3.Query{String: s}).Encode(nil)
		return b
	}
	cases := []struct {
		name string
		data []byte
		code string
	}{
		{"unknown message type", []byte{'z', 0, 0, 0, 4}, "08P01"},
		{"length below four", []byte{'Q', 0, 0, 0, 2}, "08P01"},
		{"oversized query", query(strings.Repeat("x", 100<<10)), "08P01"},
		{"oversized length only", []byte{'Q', 0x40, 0, 0, 0}, "08P01"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := hijacked(t, p)
			if _, err := c.Write(tc.data); err != nil {
				t.Fatal(err)
			}
			e := readFatal(t, c)
			if e == nil || e.Code != tc.code || e.Severity != "FATAL" {
				t.Fatalf("got %#v, want FATAL %s", e, tc.code)
			}
			expectClosed(t, c, 3*time.Second)
		})
	}
	t.Run("truncated message then close", func(t *testing.T) {
		c := hijacked(t, p)
		_, _ = c.Write([]byte{'Q', 0, 0, 1, 0, 'S', 'E', 'L'})
		c.Close()
	})
	stillServes(t, p)
	waitFor(t, "sessions to end", 5*time.Second, func() bool { return p.Server.ClientConns() == 0 })
	// Nothing was left behind on the backend: the pool has only idle connections.
	waitFor(t, "backends to be idle", 5*time.Second, func() bool {
		st := p.Pool.Stats()
		return st.Open == st.Idle
	})
	if strings.Contains(logs.String(), "alice@") || strings.Contains(logs.String(), p.Cluster.AppPassword()) {
		t.Fatal("a password reached the proxy's log")
	}
}

func TestFailedLoginsLogNoPassword(t *testing.T) {
	logs := &syncBuf{}
	sink := &auditSink{}
	p := startProxy(t, func(w *wire.Config, _ *pool.Config) {
		w.Logger = zerolog.New(logs).Level(zerolog.DebugLevel)
		w.Auditor = sink
	})
	ctx := ctxT(t, 10*time.Second)
	const secret = "hunter2-do-not-log"
	for _, user := range []string{"alice", "nobody"} {
		_, err := pgconn.Connect(ctx, p.URLWithPassword(user, secret))
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "28P01" || pe.Message != `password authentication failed for user "`+user+`"` {
			t.Fatalf("login %s with a wrong password: %v", user, err)
		}
	}
	if strings.Contains(logs.String(), secret) {
		t.Fatal("the password reached the log")
	}
	recs := sink.Records()
	if len(recs) != 2 || recs[0].Event != "login" || recs[0].Success || recs[0].SQLState != "28P01" {
		t.Fatalf("login audit records: %+v", recs)
	}
	for _, r := range recs {
		if strings.Contains(r.Error+r.Reason+r.User, secret) {
			t.Fatal("the password reached the audit log")
		}
	}
}

func TestClientConnectionLimit(t *testing.T) {
	p := startProxy(t, func(w *wire.Config, _ *pool.Config) { w.MaxClientConns = 2 })
	ctx := ctxT(t, 10*time.Second)
	var conns []*pgconn.PgConn
	for range 2 {
		c, err := pgconn.Connect(ctx, p.URL("alice"))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	_, err := pgconn.Connect(ctx, p.URL("alice"))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "53300" {
		t.Fatalf("third client: %v, want 53300", err)
	}
	conns[0].Close(ctx)
	waitFor(t, "a free client slot", 5*time.Second, func() bool {
		c, err := pgconn.Connect(ctx, p.URL("alice"))
		if err != nil {
			return false
		}
		c.Close(ctx)
		return true
	})
	conns[1].Close(ctx)
}

func TestUnknownDatabaseRefused(t *testing.T) {
	p := startProxy(t)
	ctx := ctxT(t, 10*time.Second)
	u := strings.Replace(p.URL("alice"), "/"+p.DB+"?", "/other_db?", 1)
	_, err := pgconn.Connect(ctx, u)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "3D000" {
		t.Fatalf("connect to a database the proxy does not serve: %v, want 3D000", err)
	}
}

// selfSigned makes a throwaway certificate for 127.0.0.1.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dbalproxy test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestTLS(t *testing.T) {
	cert := selfSigned(t)
	p := startProxy(t, func(w *wire.Config, _ *pool.Config) {
		w.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		w.RequireTLS = true
	})
	ctx := ctxT(t, 10*time.Second)
	u := strings.Replace(p.URL("alice"), "sslmode=disable", "sslmode=require", 1)
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("TLS connect: %v", err)
	}
	var s string
	if err := conn.QueryRow(ctx, "SELECT 'over tls'").Scan(&s); err != nil || s != "over tls" {
		t.Fatalf("query over TLS: %q %v", s, err)
	}
	if _, ok := conn.PgConn().Conn().(*tls.Conn); !ok {
		t.Fatal("connection is not TLS")
	}
	conn.Close(ctx)
	_, err = pgconn.Connect(ctx, p.URL("alice"))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "28000" {
		t.Fatalf("plain connection to a TLS-only proxy: %v, want 28000", err)
	}
}

func TestCancelWithWrongKeyIsIgnored(t *testing.T) {
	p := startProxy(t)
	ctx := ctxT(t, 20*time.Second)
	conn, err := pgconn.Connect(ctx, p.URL("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, "SELECT pg_sleep(1)").ReadAll()
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := (&pgproto3.CancelRequest{ProcessID: conn.PID(), SecretKey: []byte{1, 2, 3, 4}}).Encode(nil)
	_, _ = c.Write(msg)
	expectClosed(t, c, 3*time.Second)
	if err := <-done; err != nil {
		t.Fatalf("a cancel with a wrong secret cancelled the statement: %v", err)
	}
}
