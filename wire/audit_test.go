package wire_test

import (
	"bytes"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/audit"
	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/wire"
	"github.com/jackc/pgx/v5"
)

// lockedBuffer is a bytes.Buffer safe for the audit writer and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// teeAuditor hands every record to each of its auditors.
type teeAuditor []wire.Auditor

func (t teeAuditor) Log(r *audit.Record) {
	for _, a := range t {
		a.Log(r)
	}
}

// recordStrings returns every string of a record (Tables included) by field
// name, except those listed in skip.
func recordStrings(r audit.Record, skip ...string) map[string]string {
	out := map[string]string{}
	v := reflect.ValueOf(r)
	for i := 0; i < v.NumField(); i++ {
		name := v.Type().Field(i).Name
		if slices.Contains(skip, name) {
			continue
		}
		switch f := v.Field(i); f.Kind() {
		case reflect.String:
			out[name] = f.String()
		case reflect.Slice:
			if ss, ok := f.Interface().([]string); ok {
				out[name] = strings.Join(ss, "\x00")
			}
		}
	}
	return out
}

// TestAuditRecords checks the audit records of statements and logins field
// by field, and that neither literals nor passwords reach them.
func TestAuditRecords(t *testing.T) {
	t.Parallel()
	sink := &auditSink{}
	var out lockedBuffer
	logger, err := audit.New(audit.Config{Writer: &out, QueueSize: 10000, BlockTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = logger.Close() })
	p := startProxy(t, withPolicy(t, policyEngine(t, "", decision.ModeStrict), sink),
		func(w *wire.Config, _ *pool.Config) { w.Auditor = teeAuditor{sink, logger} })
	p.loadDemo(t)
	db := connect(t, p.DirectDB)
	ctx := ctxT(t, 60*time.Second)
	const secret = "secret-slug-123"
	if _, err := db.Exec(ctx, "INSERT INTO page_views (slug, title) VALUES ('"+secret+"', 'Secret')"); err != nil {
		t.Fatal(err)
	}
	alice := connect(t, p.URL("alice")+"&application_name=audit-test")
	aliceAddr := alice.PgConn().Conn().LocalAddr().String()
	carol := connect(t, p.URL("carol"))

	// newRecord waits for the first record after mark (an index into the
	// sink) that matches.
	newRecord := func(t *testing.T, mark int, what string, match func(audit.Record) bool) audit.Record {
		t.Helper()
		var rec audit.Record
		waitFor(t, what, 3*time.Second, func() bool {
			recs := sink.Records()
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
	isStatement := func(command string) func(audit.Record) bool {
		return func(r audit.Record) bool { return r.Event == audit.EventStatement && r.Command == command }
	}

	var aliceSession, selectFingerprint string
	for _, c := range []struct {
		name string
		mode pgx.QueryExecMode
	}{{"simple", pgx.QueryExecModeSimpleProtocol}, {"extended", pgx.QueryExecModeCacheStatement}} {
		t.Run("select/"+c.name, func(t *testing.T) {
			mark := len(sink.Records())
			rows, err := alice.Query(ctx, "SELECT id, title FROM page_views WHERE slug = '"+secret+"' OR level >= 2", c.mode)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for rows.Next() {
				n++
			}
			rows.Close()
			if err := rows.Err(); err != nil || n != 4 {
				t.Fatalf("SELECT: %d rows, %v; want 4", n, err)
			}
			r := newRecord(t, mark, "the SELECT's record", isStatement("SELECT"))
			if r.SessionID == "" || r.ClientAddr != aliceAddr {
				t.Errorf("session %q client addr %q, want non-empty and %q", r.SessionID, r.ClientAddr, aliceAddr)
			}
			if aliceSession != "" && r.SessionID != aliceSession {
				t.Errorf("session id %q changed within one connection (was %q)", r.SessionID, aliceSession)
			}
			aliceSession = r.SessionID
			if r.User != "alice" || r.Role != "user" || r.UserID != "u_alice" {
				t.Errorf("user %q role %q user_id %q", r.User, r.Role, r.UserID)
			}
			if r.Database != p.DB || r.ApplicationName != "audit-test" {
				t.Errorf("database %q application %q, want %q audit-test", r.Database, r.ApplicationName, p.DB)
			}
			if !slices.Equal(r.Tables, []string{"public.page_views"}) {
				t.Errorf("tables %v", r.Tables)
			}
			if r.Fingerprint == "" || (selectFingerprint != "" && r.Fingerprint != selectFingerprint) {
				t.Errorf("fingerprint %q (previous %q)", r.Fingerprint, selectFingerprint)
			}
			selectFingerprint = r.Fingerprint
			if !strings.Contains(r.Query, "slug = $1") || !strings.HasPrefix(r.Query, "SELECT") {
				t.Errorf("query %q is not the normalized text (slug = $1)", r.Query)
			}
			if r.Decision != audit.DecisionAllow || r.Reason == "" || r.PolicyVersion == "" {
				t.Errorf("decision %q reason %q version %q", r.Decision, r.Reason, r.PolicyVersion)
			}
			if r.DurationMS < 0 || r.DurationMS > 10000 {
				t.Errorf("duration %v ms", r.DurationMS)
			}
			if r.Rows != 4 || !r.Success || r.SQLState != "" || r.Error != "" {
				t.Errorf("rows %d success %v sqlstate %q error %q, want 4 true", r.Rows, r.Success, r.SQLState, r.Error)
			}
			if len(r.DecisionID) != audit.DecisionIDLen || !decisionIDRe.MatchString("decision_id="+r.DecisionID) {
				t.Errorf("decision id %q", r.DecisionID)
			}
			if r.Time.IsZero() {
				t.Errorf("time not set")
			}
			for name, v := range recordStrings(r, "QueryRaw") {
				if strings.Contains(v, secret) {
					t.Errorf("the literal %q is in the record's %s: %q", secret, name, v)
				}
			}
		})
	}

	t.Run("same-shape-same-fingerprint", func(t *testing.T) {
		mark := len(sink.Records())
		rows, err := alice.Query(ctx, "SELECT id, title FROM page_views WHERE slug = 'other' OR level >= 3", pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			t.Fatal(err)
		}
		rows.Close()
		r := newRecord(t, mark, "the SELECT's record", isStatement("SELECT"))
		if r.Fingerprint != selectFingerprint || r.Rows != 1 {
			t.Errorf("fingerprint %q rows %d, want %q 1", r.Fingerprint, r.Rows, selectFingerprint)
		}
	})

	t.Run("login-success", func(t *testing.T) {
		r := newRecord(t, 0, "alice's login record", func(r audit.Record) bool {
			return r.Event == audit.EventLogin && r.SessionID == aliceSession
		})
		if !r.Success || r.SQLState != "" || r.User != "alice" || r.Role != "user" || r.UserID != "u_alice" {
			t.Errorf("login record: %+v", r)
		}
		if r.ClientAddr != aliceAddr || r.Database != p.DB || r.ApplicationName != "audit-test" {
			t.Errorf("login record: addr %q db %q app %q", r.ClientAddr, r.Database, r.ApplicationName)
		}
		if len(r.DecisionID) != audit.DecisionIDLen || r.Command != "" || r.Query != "" {
			t.Errorf("login record: %+v", r)
		}
	})

	var carolSession string
	for _, c := range []struct {
		name string
		mode pgx.QueryExecMode
	}{{"simple", pgx.QueryExecModeSimpleProtocol}, {"extended", pgx.QueryExecModeCacheStatement}} {
		t.Run("update/"+c.name, func(t *testing.T) {
			mark := len(sink.Records())
			tag, err := carol.Exec(ctx, "UPDATE page_views SET title = title WHERE level >= $1", c.mode, 2)
			if err != nil || tag.RowsAffected() != 3 {
				t.Fatalf("UPDATE: %q %v", tag, err)
			}
			r := newRecord(t, mark, "the UPDATE's record", isStatement("UPDATE"))
			if r.Rows != 3 || !r.Success || r.Decision != audit.DecisionAllow || r.User != "carol" || r.Role != "god" {
				t.Errorf("rows %d success %v decision %q user %q role %q, want 3 true allow carol god",
					r.Rows, r.Success, r.Decision, r.User, r.Role)
			}
			if r.SessionID == aliceSession || r.SessionID == "" {
				t.Errorf("carol's session id %q (alice's %q)", r.SessionID, aliceSession)
			}
			carolSession = r.SessionID
		})
	}

	t.Run("failing-statement", func(t *testing.T) {
		for _, m := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
			mark := len(sink.Records())
			_, err := carol.Exec(ctx, "INSERT INTO packages (name, version) VALUES ($1, $2)", m, "forms", "9.9")
			if sqlState(err) != "23505" {
				t.Fatalf("%v: duplicate INSERT: %v, want 23505", m, err)
			}
			r := newRecord(t, mark, "the INSERT's record", isStatement("INSERT"))
			if r.Success || r.SQLState != "23505" || r.Error == "" || r.Decision != audit.DecisionAllow || r.Rows >= 0 {
				t.Errorf("%v: success %v sqlstate %q error %q decision %q rows %d, want false 23505 <msg> allow <0",
					m, r.Success, r.SQLState, r.Error, r.Decision, r.Rows)
			}
			if r.SessionID != carolSession {
				t.Errorf("session %q, want carol's %q", r.SessionID, carolSession)
			}
		}
	})

	t.Run("denied-statement", func(t *testing.T) {
		mark := len(sink.Records())
		_, err := alice.Exec(ctx, "DELETE FROM packages")
		_, id := wantDenied(t, err)
		r := newRecord(t, mark, "the DELETE's record", isStatement("DELETE"))
		if r.DecisionID != id || r.Decision != audit.DecisionDeny || r.Success || r.SQLState != "42501" || r.Rows >= 0 {
			t.Errorf("denied record: %+v (client's decision id %s)", r, id)
		}
	})

	passwords := []string{"wrong-password-xyz-123", "mallory-secret-pw-456"}
	t.Run("login-failure", func(t *testing.T) {
		mark := len(sink.Records())
		for _, c := range []struct{ login, password string }{{"bob", passwords[0]}, {"mallory", passwords[1]}} {
			c2, err := pgx.Connect(ctx, p.URLWithPassword(c.login, c.password))
			if err == nil {
				_ = c2.Close(ctx)
				t.Fatalf("%s logged in with a wrong password", c.login)
			}
			if sqlState(err) != "28P01" {
				t.Errorf("%s: %v, want 28P01", c.login, err)
			}
		}
		r := newRecord(t, mark, "bob's failed login record", func(r audit.Record) bool {
			return r.Event == audit.EventLogin && r.User == "bob"
		})
		if r.Success || r.SQLState != "28P01" || r.SessionID == "" || r.ClientAddr == "" || r.Database != p.DB {
			t.Errorf("failed login record: %+v", r)
		}
		r = newRecord(t, mark, "mallory's failed login record", func(r audit.Record) bool {
			return r.Event == audit.EventLogin && r.User == "mallory"
		})
		if r.Success || r.SQLState == "" {
			t.Errorf("unknown login's record: %+v", r)
		}
	})

	t.Run("no-secrets", func(t *testing.T) {
		for _, r := range sink.Records() {
			for name, v := range recordStrings(r) {
				for _, pw := range passwords {
					if strings.Contains(v, pw) {
						t.Errorf("a password is in a record's %s: %+v", name, r)
					}
				}
			}
			for name, v := range recordStrings(r, "QueryRaw") {
				if strings.Contains(v, secret) {
					t.Errorf("the literal %q is in a record's %s: %q", secret, name, v)
				}
			}
		}
		// What the audit logger writes (literals off by default).
		if err := logger.Close(); err != nil {
			t.Fatal(err)
		}
		text := out.String()
		if !strings.Contains(text, "slug = $1") || !strings.Contains(text, `"login"`) {
			t.Fatalf("the audit output lacks the records:\n%s", text)
		}
		for _, s := range append([]string{secret}, passwords...) {
			if strings.Contains(text, s) {
				t.Errorf("the audit output contains %q", s)
			}
		}
	})
}
