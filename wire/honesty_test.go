package wire_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/audit"
	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/testenv"
	"github.com/dbalproxy/dbalproxy/wire"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"
)

// loginRecords returns the login records of a sink.
func loginRecords(sink *auditSink) []audit.Record {
	var out []audit.Record
	for _, r := range sink.Records() {
		if r.Event == audit.EventLogin {
			out = append(out, r)
		}
	}
	return out
}

// waitLogin waits for the first login record after mark that matches.
func waitLogin(t *testing.T, sink *auditSink, mark int, match func(audit.Record) bool) audit.Record {
	t.Helper()
	var rec audit.Record
	waitFor(t, "a login record", 5*time.Second, func() bool {
		recs := loginRecords(sink)
		for _, r := range recs[min(mark, len(recs)):] {
			if match(r) {
				rec = r
				return true
			}
		}
		return false
	})
	return rec
}

// withAudit records the proxy's audit records in sink.
func withAudit(sink *auditSink) proxyOption {
	return func(w *wire.Config, _ *pool.Config) { w.Auditor = sink }
}

// withLogs sends the proxy's own log to buf.
func withLogs(buf *syncBuf) proxyOption {
	return func(w *wire.Config, _ *pool.Config) {
		w.Logger = zerolog.New(buf).Level(zerolog.DebugLevel)
	}
}

// pgErr returns the PostgreSQL error of a failed connect or statement.
func pgErr(t *testing.T, err error) *pgconn.PgError {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("want a PostgreSQL error, got %v", err)
	}
	return pe
}

// failedLogin checks that a login failed with code and that its audit
// record says so, with a real duration.
func failedLogin(t *testing.T, p *proxy, sink *auditSink, connURL, code string) *pgconn.PgError {
	t.Helper()
	mark := len(loginRecords(sink))
	c, err := pgx.Connect(ctxT(t, 20*time.Second), connURL)
	if err == nil {
		_ = c.Close(context.Background())
		t.Fatalf("login succeeded, want %s", code)
	}
	pe := pgErr(t, err)
	if pe.Code != code {
		t.Fatalf("login failed with %s %q, want %s", pe.Code, pe.Message, code)
	}
	r := waitLogin(t, sink, mark, func(audit.Record) bool { return true })
	if r.Success || r.SQLState != code || r.Error == "" {
		t.Errorf("login record: success %v sqlstate %q error %q, want false %s <message>", r.Success, r.SQLState, r.Error, code)
	}
	if r.DurationMS <= 0 {
		t.Errorf("login record: duration_ms %v, want the time the login took", r.DurationMS)
	}
	return pe
}

// TestLoginAuditOutcome: every failed login is audited as a failure with
// the SQLSTATE the client got, a successful one as a success, and each
// with the time the login took.
func TestLoginAuditOutcome(t *testing.T) {
	t.Parallel()

	t.Run("success", func(t *testing.T) {
		t.Parallel()
		sink := &auditSink{}
		p := startProxy(t, withAudit(sink))
		c := connect(t, p.URL("alice"))
		_ = c
		r := waitLogin(t, sink, 0, func(r audit.Record) bool { return r.User == "alice" })
		if !r.Success || r.SQLState != "" || r.Error != "" || r.DurationMS <= 0 {
			t.Errorf("login record: %+v", r)
		}
	})

	t.Run("duration-from-accept", func(t *testing.T) {
		t.Parallel()
		sink := &auditSink{}
		p := startProxy(t, withAudit(sink))
		cfg, err := pgx.ParseConfig(p.URL("alice"))
		if err != nil {
			t.Fatal(err)
		}
		const delay = 300 * time.Millisecond
		cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			time.Sleep(delay) // the client takes its time to start up
			return c, err
		}
		c, err := pgx.ConnectConfig(ctxT(t, 20*time.Second), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		r := waitLogin(t, sink, 0, func(r audit.Record) bool { return r.User == "alice" })
		if !r.Success || r.DurationMS < float64(delay.Milliseconds()) || r.DurationMS > 10000 {
			t.Errorf("login record: success %v duration_ms %v, want true and at least %v", r.Success, r.DurationMS, delay)
		}
	})

	t.Run("wrong-password", func(t *testing.T) {
		t.Parallel()
		sink := &auditSink{}
		p := startProxy(t, withAudit(sink))
		failedLogin(t, p, sink, p.URLWithPassword("bob", "not-bobs"), "28P01")
	})

	t.Run("database-not-served", func(t *testing.T) {
		t.Parallel()
		sink := &auditSink{}
		p := startProxy(t, withAudit(sink))
		failedLogin(t, p, sink, strings.Replace(p.URL("bob"), "/"+p.DB+"?", "/some_other_db?", 1), "3D000")
	})

	t.Run("unknown-database", func(t *testing.T) {
		t.Parallel()
		sink := &auditSink{}
		p := startProxy(t, withAudit(sink), func(w *wire.Config, _ *pool.Config) { w.Databases = []string{"*"} })
		pe := failedLogin(t, p, sink, strings.Replace(p.URL("bob"), "/"+p.DB+"?", "/honesty_no_such_db?", 1), "3D000")
		if !strings.Contains(pe.Message, "honesty_no_such_db") {
			t.Errorf("message %q does not name the database asked for", pe.Message)
		}
	})

	t.Run("backend-down", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := ln.Addr().String()
		ln.Close()
		sink := &auditSink{}
		p := startProxy(t, withAudit(sink), func(_ *wire.Config, pc *pool.Config) {
			pc.ConnString = "postgres://dbalproxy_backend:pw@" + dead + "/db?sslmode=disable&connect_timeout=2"
		})
		pe := failedLogin(t, p, sink, p.URL("bob"), "08006")
		for _, leak := range []string{dead, "dbalproxy_backend"} {
			if strings.Contains(pe.Message+pe.Detail+pe.Hint, leak) {
				t.Errorf("the client's error names %q: %+v", leak, pe)
			}
		}
	})

	t.Run("pool-timeout", func(t *testing.T) {
		t.Parallel()
		sink := &auditSink{}
		p := startProxy(t, withAudit(sink), func(_ *wire.Config, pc *pool.Config) {
			pc.MaxConns = 1
			pc.AcquireTimeout = 300 * time.Millisecond
		})
		holder := connect(t, p.URL("alice"))
		mustExec(t, ctxT(t, 10*time.Second), holder, "BEGIN") // holds the only backend in either pooling mode
		failedLogin(t, p, sink, p.URL("bob"), "53300")
	})

	t.Run("login-limit", func(t *testing.T) {
		t.Parallel()
		sink := &auditSink{}
		p := startProxy(t, withAudit(sink), func(w *wire.Config, _ *pool.Config) { w.MaxLoginConns = 1 })
		_ = connect(t, p.URL("bob"))
		failedLogin(t, p, sink, p.URL("bob"), "53300")
	})

	t.Run("client-limit", func(t *testing.T) {
		t.Parallel()
		sink := &auditSink{}
		p := startProxy(t, withAudit(sink), func(w *wire.Config, _ *pool.Config) { w.MaxClientConns = 1 })
		_ = connect(t, p.URL("bob"))
		failedLogin(t, p, sink, p.URL("alice"), "53300")
	})

	t.Run("startup-parameter-refused-by-the-server", func(t *testing.T) {
		t.Parallel()
		sink := &auditSink{}
		p := startProxy(t, withAudit(sink))
		failedLogin(t, p, sink, p.URL("bob")+"&DateStyle=nonsense", "22023")
	})
}

// backendRole creates a login role on the shared cluster for the proxy's
// backend connections, with password pw, and drops it at the end of the
// test (after the proxies and databases the test starts later).
func backendRole(t *testing.T, pw, attrs string) string {
	t.Helper()
	c := testenv.Shared(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	role := "honesty_be_" + hex.EncodeToString(b[:])
	ctx := ctxT(t, 30*time.Second)
	if err := testenvExec(ctx, c.SuperURL("postgres"), fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s' %s", role, pw, attrs)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = testenvExec(ctx, c.SuperURL("postgres"), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '"+role+"'")
		if err := testenvExec(ctx, c.SuperURL("postgres"), "DROP ROLE IF EXISTS "+role); err != nil {
			t.Error(err)
		}
	})
	return role
}

// asBackendRole makes the proxy's pool log in as role with password pw.
func asBackendRole(role, pw string) proxyOption {
	return func(_ *wire.Config, pc *pool.Config) {
		u, err := url.Parse(pc.ConnString)
		if err != nil {
			panic(err)
		}
		u.User = url.UserPassword(role, pw)
		pc.ConnString = u.String()
	}
}

// hidesBackend checks that a client's error names neither the backend
// role nor the backend's address.
func hidesBackend(t *testing.T, pe *pgconn.PgError, role string) {
	t.Helper()
	c := testenv.Shared(t)
	text := strings.Join([]string{pe.Message, pe.Detail, pe.Hint}, "\n")
	for _, leak := range []string{role, c.AppUser(), fmt.Sprintf("%d", c.Port()), "password", "pg_hba"} {
		if strings.Contains(text, leak) {
			t.Errorf("the client's error names %q: %s %s", leak, pe.Code, text)
		}
	}
}

// TestBackendDialErrorsHidden: when the proxy's own backend connection is
// refused, the client learns that the proxy could not connect, not the
// backend role, its password's failure or the server's address; the
// proxy's log has the real cause.
func TestBackendDialErrorsHidden(t *testing.T) {
	t.Parallel()

	t.Run("wrong-backend-password", func(t *testing.T) {
		t.Parallel()
		role := backendRole(t, "right-pw", "")
		logs, sink := &syncBuf{}, &auditSink{}
		p := startProxy(t, withAudit(sink), withLogs(logs), asBackendRole(role, "wrong-pw"))
		pe := failedLogin(t, p, sink, p.URL("bob"), "08006")
		hidesBackend(t, pe, role)
		if pe.Message != "the proxy cannot connect to the database server" {
			t.Errorf("message %q", pe.Message)
		}
		waitFor(t, "the cause in the proxy's log", 5*time.Second, func() bool {
			return strings.Contains(logs.String(), "password authentication failed") && strings.Contains(logs.String(), role)
		})
	})

	t.Run("backend-role-connection-limit", func(t *testing.T) {
		t.Parallel()
		role := backendRole(t, "pw", "CONNECTION LIMIT 0")
		sink := &auditSink{}
		p := startProxy(t, withAudit(sink), asBackendRole(role, "pw"))
		hidesBackend(t, failedLogin(t, p, sink, p.URL("bob"), "53300"), role)
	})

	t.Run("backend-role-without-connect", func(t *testing.T) {
		t.Parallel()
		role := backendRole(t, "pw", "")
		sink := &auditSink{}
		p := startProxy(t, withAudit(sink), asBackendRole(role, "pw"))
		if err := testenvExec(ctxT(t, 30*time.Second), p.Cluster.SuperURL(p.DB), "REVOKE CONNECT ON DATABASE "+p.DB+" FROM PUBLIC"); err != nil {
			t.Fatal(err)
		}
		hidesBackend(t, failedLogin(t, p, sink, p.URL("bob"), "08006"), role)
	})

	t.Run("rotated-backend-password-at-lease", func(t *testing.T) {
		t.Parallel()
		role := backendRole(t, "old-pw", "")
		logs := &syncBuf{}
		p := startProxy(t, withLogs(logs), asBackendRole(role, "old-pw"), withTxPooling(2))
		c := connect(t, p.URL("bob"))
		ctx := ctxT(t, 30*time.Second)
		mustExec(t, ctx, c, "SELECT 1")
		// The password changes and the pooled connections go away: the next
		// transaction needs a new backend connection, which is refused.
		super := p.Cluster.SuperURL("postgres")
		if err := testenvExec(ctx, super, "ALTER ROLE "+role+" PASSWORD 'new-pw'"); err != nil {
			t.Fatal(err)
		}
		if err := testenvExec(ctx, super, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '"+role+"'"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the backends to end", 10*time.Second, func() bool {
			var n int
			db, err := pgx.Connect(ctx, super)
			if err != nil {
				return false
			}
			defer db.Close(ctx)
			return db.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE usename = $1", role).Scan(&n) == nil && n == 0
		})
		_, err := c.Exec(ctx, "SELECT 1")
		pe := pgErr(t, err)
		if pe.Code != "08006" {
			t.Errorf("lease refused by the backend: %s %q, want 08006", pe.Code, pe.Message)
		}
		hidesBackend(t, pe, role)
		if !strings.Contains(logs.String(), "password authentication failed") {
			t.Errorf("the proxy's log lacks the cause:\n%s", logs.String())
		}
	})
}
