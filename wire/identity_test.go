package wire_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/audit"
	"github.com/dbalproxy/dbalproxy/identity"
	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/wire"
	"github.com/jackc/pgx/v5"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"github.com/rs/zerolog"
)

// This file tests identities from signed tokens end to end: token logins
// and per-transaction end users, with pgx through the proxy and the shipped
// policies in front of the demo schema.

var tokenSecret = []byte("test-secret-of-the-identity-tests-0123456789")

// token signs claims (plus exp in an hour unless given) with key.
func token(t testing.TB, key []byte, claims map[string]any) string {
	t.Helper()
	tok := jwt.New()
	if _, ok := claims["exp"]; !ok {
		claims["exp"] = time.Now().Add(time.Hour)
	}
	for k, v := range claims {
		if err := tok.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	b, err := jwt.Sign(tok, jwt.WithKey(jwa.HS256(), key))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// userToken is a good token for end user sub with role.
func userToken(t testing.TB, sub, role string) string {
	return token(t, tokenSecret, map[string]any{"sub": sub, "role": role, "iss": "https://auth.test", "aud": "dbalproxy"})
}

// syncBuffer is a log sink safe for the session goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// identityProxy starts a proxy with the shipped policies, the demo schema
// and three more logins: "app" logs in with a token, "api" (role admin) may
// switch the end user with tokens, and "alice" (role user) may not. Tokens
// are accepted in plaintext from loopback. The proxy's own log, at debug
// level, goes to the returned buffer.
func identityProxy(t *testing.T, transport string) (*proxy, *auditSink, *syncBuffer) {
	t.Helper()
	v, err := identity.New(identity.Config{
		Name: "test", HS256Secret: tokenSecret, Issuer: "https://auth.test", Audience: "dbalproxy",
		UserIDClaim: "sub", Roles: []string{"user", "admin"},
	})
	if err != nil {
		t.Fatal(err)
	}
	sink := &auditSink{}
	logs := &syncBuffer{}
	p := startProxy(t, withPolicy(t, policyEngine(t, "", "strict"), sink), func(w *wire.Config, _ *pool.Config) {
		logins := w.Logins.(wire.Logins)
		logins["app"] = &wire.Login{Name: "app", Token: v}
		sc, err := wire.NewSCRAMCredentials("api")
		if err != nil {
			t.Fatal(err)
		}
		logins["api"] = &wire.Login{Name: "api", Role: "admin", Claims: map[string]any{"user_id": "u_bob"}, SCRAM: sc, EndUserTokens: v}
		w.TokenTransport = transport
		w.Logger = zerolog.New(logs).Level(zerolog.DebugLevel)
	})
	p.loadDemo(t)
	return p, sink, logs
}

// userIDs runs SELECT id FROM users ORDER BY id on q.
func userIDs(t *testing.T, ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) []string {
	t.Helper()
	rows, err := q.Query(ctx, "SELECT id FROM users ORDER BY id")
	if err != nil {
		t.Fatalf("SELECT id FROM users: %v", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("SELECT id FROM users: %v", err)
	}
	return ids
}

const allUsers = "u_alice,u_bob,u_carol,u_dave,u_erin,u_frank"

// noTokenIn fails if any token appears in an audit record or in the log.
func noTokenIn(t *testing.T, sink *auditSink, logs *syncBuffer, tokens ...string) {
	t.Helper()
	recs, _ := json.Marshal(sink.Records())
	for _, tok := range tokens {
		parts := strings.Split(tok, ".")
		if len(parts) != 3 {
			continue
		}
		for name, s := range map[string]string{"audit records": string(recs), "proxy log": logs.String()} {
			for _, part := range parts {
				if len(part) > 8 && strings.Contains(s, part) {
					t.Errorf("a token reached the %s", name)
				}
			}
		}
	}
}

func TestTokenLogin(t *testing.T) {
	p, sink, logs := identityProxy(t, wire.TokenOverTLSOrLoopback)
	ctx := ctxT(t, 60*time.Second)
	good := userToken(t, "u_erin", "user")
	c := connect(t, p.URLWithPassword("app", good))
	if got := strings.Join(userIDs(t, ctx, c), ","); got != "u_erin" {
		t.Fatalf("a token login with role user and sub u_erin sees users %s, want only u_erin", got)
	}
	var okRec *audit.Record
	for _, r := range sink.Records() {
		if r.Event == audit.EventLogin && r.User == "app" && r.Success {
			okRec = &r
		}
	}
	if okRec == nil || okRec.Role != "user" || okRec.UserID != "u_erin" {
		t.Fatalf("login audit record %+v, want role user and user_id u_erin", okRec)
	}

	forged := func() string {
		parts := strings.Split(userToken(t, "u_erin", "user"), ".")
		parts[1] = base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"u_erin","role":"admin","iss":"https://auth.test","aud":"dbalproxy","exp":4102444800}`))
		return strings.Join(parts, ".")
	}()
	unsigned := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"u_erin","role":"admin","iss":"https://auth.test","aud":"dbalproxy","exp":4102444800}`)) + "."
	bad := map[string]struct{ tok, reason string }{
		"expired":     {token(t, tokenSecret, map[string]any{"sub": "u_erin", "role": "user", "iss": "https://auth.test", "aud": "dbalproxy", "exp": time.Now().Add(-time.Hour)}), "expired"},
		"not yet":     {token(t, tokenSecret, map[string]any{"sub": "u_erin", "role": "user", "iss": "https://auth.test", "aud": "dbalproxy", "nbf": time.Now().Add(time.Hour)}), "not valid yet"},
		"wrong key":   {token(t, []byte("another-secret-another-secret-another-secret"), map[string]any{"sub": "u_erin", "role": "user", "iss": "https://auth.test", "aud": "dbalproxy"}), "signature"},
		"forged":      {forged, "signature"},
		"alg none":    {unsigned, "not signed"},
		"wrong aud":   {token(t, tokenSecret, map[string]any{"sub": "u_erin", "role": "user", "iss": "https://auth.test", "aud": "other"}), "audience"},
		"wrong iss":   {token(t, tokenSecret, map[string]any{"sub": "u_erin", "role": "user", "iss": "https://evil.test", "aud": "dbalproxy"}), "issuer"},
		"role denied": {userToken(t, "u_erin", "supergod"), "role"},
		"not a token": {"app", "compact"},
	}
	var toks []string
	for name, b := range bad {
		toks = append(toks, b.tok)
		t.Run(name, func(t *testing.T) {
			cfg, err := pgx.ParseConfig(p.URLWithPassword("app", b.tok))
			if err != nil {
				t.Fatal(err)
			}
			_, err = pgx.ConnectConfig(ctx, cfg)
			pe := asPgErr(err)
			if pe == nil || pe.Code != "28P01" || !strings.Contains(pe.Message, b.reason) {
				t.Fatalf("got %v, want 28P01 naming %q", err, b.reason)
			}
			var rec *audit.Record
			for _, r := range sink.Records() {
				if r.Event == audit.EventLogin && r.User == "app" && !r.Success && strings.Contains(r.Error, b.reason) {
					rec = &r
				}
			}
			if rec == nil || rec.SQLState != "28P01" {
				t.Fatalf("no failed login audit record with 28P01 naming %q: %+v", b.reason, sink.Records())
			}
		})
	}
	noTokenIn(t, sink, logs, append(toks, good)...)
}

func TestTokenLoginNeedsTLS(t *testing.T) {
	p, sink, _ := identityProxy(t, "")
	ctx := ctxT(t, 30*time.Second)
	cfg, err := pgx.ParseConfig(p.URLWithPassword("app", userToken(t, "u_erin", "user")))
	if err != nil {
		t.Fatal(err)
	}
	_, err = pgx.ConnectConfig(ctx, cfg)
	if sqlState(err) != "28000" {
		t.Fatalf("a token login without TLS: got %v, want 28000", err)
	}
	// The proxy refuses before asking for the password, so the token never
	// crossed the wire; and the switch is refused the same way.
	api := connectMode(t, p.URL("api"), pgx.QueryExecModeSimpleProtocol)
	tx, err := api.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, "SET LOCAL dbal.token = '"+userToken(t, "u_alice", "user")+"'")
	wantProxyError(t, err, "28000")
	_ = tx.Rollback(ctx)
	if n := len(sink.Records()); n == 0 {
		t.Fatal("no audit records")
	}

	// Over TLS the same token logs in with the default transport.
	cert := selfSigned(t)
	v, err := identity.New(identity.Config{HS256Secret: tokenSecret, UserIDClaim: "sub"})
	if err != nil {
		t.Fatal(err)
	}
	tp := startProxy(t, withPolicy(t, policyEngine(t, "", "strict"), nil), func(w *wire.Config, _ *pool.Config) {
		w.Logins.(wire.Logins)["app"] = &wire.Login{Name: "app", Token: v}
		w.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	})
	tp.loadDemo(t)
	u := strings.Replace(tp.URLWithPassword("app", userToken(t, "u_erin", "user")), "sslmode=disable", "sslmode=require", 1)
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("token login over TLS: %v", err)
	}
	defer c.Close(ctx)
	if got := strings.Join(userIDs(t, ctx, c), ","); got != "u_erin" {
		t.Fatalf("token login over TLS sees %s", got)
	}
}

// endUserRecords returns the statement audit records that name end user.
func endUserRecords(sink *auditSink, endUser string) []audit.Record {
	var out []audit.Record
	for _, r := range sink.Records() {
		if r.Event != audit.EventLogin && r.EndUser == endUser {
			out = append(out, r)
		}
	}
	return out
}

func TestEndUserSwitchSimpleProtocol(t *testing.T) {
	p, sink, logs := identityProxy(t, wire.TokenOverTLSOrLoopback)
	ctx := ctxT(t, 60*time.Second)
	c := connectMode(t, p.URL("api"), pgx.QueryExecModeSimpleProtocol)
	if got := strings.Join(userIDs(t, ctx, c), ","); got != allUsers {
		t.Fatalf("the service login (admin) sees %s, want every user", got)
	}
	alice := userToken(t, "u_alice", "user")
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := tx.Exec(ctx, "SET LOCAL dbal.token = '"+alice+"'")
	if err != nil || tag.String() != "SET" {
		t.Fatalf("SET LOCAL dbal.token: %v %v", tag, err)
	}
	if got := strings.Join(userIDs(t, ctx, tx), ","); got != "u_alice" {
		t.Fatalf("inside the transaction as end user u_alice: sees %s, want only u_alice", got)
	}
	// The backend has the setting, as PostgreSQL itself would.
	var set bool
	if err := tx.QueryRow(ctx, "SELECT current_setting('dbal.token') <> ''").Scan(&set); err != nil || !set {
		t.Fatalf("current_setting: %v %v", set, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(userIDs(t, ctx, c), ","); got != allUsers {
		t.Fatalf("after COMMIT the service identity is back: sees %s, want every user", got)
	}

	// ROLLBACK ends it too, and ROLLBACK TO SAVEPOINT does not.
	tx, _ = c.Begin(ctx)
	_, err = tx.Exec(ctx, "SET LOCAL dbal.token = '"+userToken(t, "u_erin", "user")+"'")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SAVEPOINT a; ROLLBACK TO SAVEPOINT a"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(userIDs(t, ctx, tx), ","); got != "u_erin" {
		t.Fatalf("after ROLLBACK TO SAVEPOINT: sees %s, want only u_erin", got)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(userIDs(t, ctx, c), ","); got != allUsers {
		t.Fatalf("after ROLLBACK: sees %s, want every user", got)
	}

	recs := endUserRecords(sink, "u_alice")
	var sawSwitch, sawSelect bool
	for _, r := range recs {
		if r.User != "api" || r.Role != "user" || r.UserID != "u_alice" {
			t.Errorf("record %+v: want user api, role user, user_id u_alice", r)
		}
		switch r.Command {
		case "SET":
			sawSwitch = r.Query == "SET LOCAL dbal.token = $1" && r.Success
		case "SELECT":
			sawSelect = sawSelect || strings.Contains(r.Query, "users")
		}
	}
	if !sawSwitch || !sawSelect {
		t.Fatalf("want the switch and the SELECT audited under end user u_alice: %+v", recs)
	}
	last := sink.Records()[len(sink.Records())-1]
	if last.EndUser != "" || last.Role != "admin" {
		t.Errorf("the last record (after ROLLBACK) names end user %q, role %q", last.EndUser, last.Role)
	}
	noTokenIn(t, sink, logs, alice)
}

func TestEndUserSwitchExtendedProtocol(t *testing.T) {
	p, sink, logs := identityProxy(t, wire.TokenOverTLSOrLoopback)
	ctx := ctxT(t, 60*time.Second)
	// The default pgx mode prepares and caches every statement, so the
	// same prepared "SELECT id FROM users" runs for the service and for two
	// end users in turn.
	c := connect(t, p.URL("api"))
	if got := strings.Join(userIDs(t, ctx, c), ","); got != allUsers {
		t.Fatalf("service: %s", got)
	}
	var toks []string
	for _, sub := range []string{"u_alice", "u_erin"} {
		tok := userToken(t, sub, "user")
		toks = append(toks, tok)
		err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			var v string
			if err := tx.QueryRow(ctx, "SELECT set_config('dbal.token', $1, true)", tok).Scan(&v); err != nil {
				return err
			}
			if v != tok {
				t.Errorf("set_config returned another value than the token")
			}
			if got := strings.Join(userIDs(t, ctx, tx), ","); got != sub {
				t.Errorf("end user %s sees %s", sub, got)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(userIDs(t, ctx, c), ","); got != allUsers {
			t.Fatalf("after the transaction of %s the service sees %s", sub, got)
		}
	}
	var switched bool
	for _, r := range endUserRecords(sink, "u_erin") {
		if r.Command == "SELECT" && r.Query == "SELECT set_config('dbal.token', $1, true)" && r.Success &&
			r.User == "api" && r.Role == "user" && r.UserID == "u_erin" {
			switched = true
		}
	}
	if !switched {
		t.Fatalf("no audit record of the switch to end user u_erin: %+v", sink.Records())
	}
	noTokenIn(t, sink, logs, toks...)
}

func TestEndUserSwitchRefused(t *testing.T) {
	p, sink, logs := identityProxy(t, wire.TokenOverTLSOrLoopback)
	ctx := ctxT(t, 60*time.Second)
	alice := userToken(t, "u_alice", "user")
	expired := token(t, tokenSecret, map[string]any{"sub": "u_alice", "role": "user", "iss": "https://auth.test", "aud": "dbalproxy", "exp": time.Now().Add(-time.Hour)})

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		t.Run(mode.String(), func(t *testing.T) {
			api := connectMode(t, p.URL("api"), mode)
			set := func(q pgx.Tx, tok string) error {
				if mode == pgx.QueryExecModeSimpleProtocol {
					_, err := q.Exec(ctx, "SET LOCAL dbal.token = '"+tok+"'")
					return err
				}
				_, err := q.Exec(ctx, "SELECT set_config('dbal.token', $1, true)", tok)
				return err
			}
			// Outside a transaction block: 25P01.
			var err error
			if mode == pgx.QueryExecModeSimpleProtocol {
				_, err = api.Exec(ctx, "SET LOCAL dbal.token = '"+alice+"'")
			} else {
				_, err = api.Exec(ctx, "SELECT set_config('dbal.token', $1, true)", alice)
			}
			wantProxyError(t, err, "25P01")
			if got := strings.Join(userIDs(t, ctx, api), ","); got != allUsers {
				t.Fatalf("after a refused switch outside a transaction the service sees %s", got)
			}
			// An expired token: 28P01, and the transaction is aborted.
			tx, err := api.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			wantProxyError(t, set(tx, expired), "28P01")
			if _, err := tx.Exec(ctx, "SELECT 1"); sqlState(err) != "25P02" {
				t.Fatalf("after a refused token the transaction goes on: %v", err)
			}
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(userIDs(t, ctx, api), ","); got != allUsers {
				t.Fatalf("after a refused token the service sees %s", got)
			}
			// A login not allowed to switch: 42501, nothing changes.
			al := connectMode(t, p.URL("alice"), mode)
			tx, err = al.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			wantDenied(t, set(tx, userToken(t, "u_bob", "admin")))
			_ = tx.Rollback(ctx)
			if got := strings.Join(userIDs(t, ctx, al), ","); got != "u_alice" {
				t.Fatalf("alice after a refused switch sees %s", got)
			}
		})
	}

	api := connectMode(t, p.URL("api"), pgx.QueryExecModeSimpleProtocol)
	for name, q := range map[string]string{
		"session SET":           "SET dbal.token = '" + alice + "'",
		"set_config not local":  "SELECT set_config('dbal.token', '" + alice + "', false)",
		"in a bigger statement": "SELECT id, set_config('dbal.token', '" + alice + "', true) FROM users",
		"with other statements": "SET LOCAL dbal.token = '" + alice + "'; SELECT 1",
		"RESET":                 "RESET dbal.token",
	} {
		t.Run(name, func(t *testing.T) {
			tx, err := api.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_, err = tx.Exec(ctx, q)
			wantProxyError(t, err, "0A000")
			_ = tx.Rollback(ctx)
		})
	}
	// A COMMIT followed by more statements in one string would run them
	// under the end user: refused.
	tx, _ := api.Begin(ctx)
	if _, err := tx.Exec(ctx, "SET LOCAL dbal.token = '"+alice+"'"); err != nil {
		t.Fatal(err)
	}
	_, err := tx.Exec(ctx, "COMMIT; SELECT id FROM users")
	wantProxyError(t, err, "0A000")
	_ = tx.Rollback(ctx)
	if got := strings.Join(userIDs(t, ctx, api), ","); got != allUsers {
		t.Fatalf("the service sees %s", got)
	}
	noTokenIn(t, sink, logs, alice, expired)
}

// nodeIdentityScript is run by TestEndUserSwitchNodePostgres: the
// README's node-postgres pattern, with a named query that node-postgres
// prepares once and reuses inside and outside the end user's transaction.
const nodeIdentityScript = `
const { Client } = require('pg');
(async () => {
  const c = new Client({ connectionString: process.env.DATABASE_URL });
  await c.connect();
  const ids = async () => (await c.query({ name: 'ids', text: 'SELECT id FROM users ORDER BY id' })).rows.map((r) => r.id).join(',');
  const out = { before: await ids() };
  await c.query('BEGIN');
  const set = await c.query("SELECT set_config('dbal.token', $1, true) AS v", [process.env.USER_TOKEN]);
  out.echo = set.rows[0].v === process.env.USER_TOKEN;
  out.inside = await ids();
  await c.query('COMMIT');
  out.after = await ids();
  try {
    await c.query("SELECT set_config('dbal.token', $1, true)", [process.env.USER_TOKEN]);
    out.outside = 'ok';
  } catch (e) {
    out.outside = e.code;
  }
  await c.end();
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
`

// TestEndUserSwitchNodePostgres runs the switch from node-postgres. It is
// skipped when node, npm or the npm registry is not there.
func TestEndUserSwitchNodePostgres(t *testing.T) {
	nodeModules := nodePG(t)
	p, sink, logs := identityProxy(t, wire.TokenOverTLSOrLoopback)
	tok := userToken(t, "u_alice", "user")
	script := filepath.Join(nodeModules, "identity.js")
	if err := os.WriteFile(script, []byte(nodeIdentityScript), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 60*time.Second)
	cmd := exec.CommandContext(ctx, "node", script)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+p.URL("api"), "USER_TOKEN="+tok)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	var got struct {
		Before, Inside, After, Outside string
		Echo                           bool
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &got); err != nil {
		t.Fatalf("node output %q: %v", out, err)
	}
	want := struct {
		Before, Inside, After, Outside string
		Echo                           bool
	}{allUsers, "u_alice", allUsers, "25P01", true}
	if got != want {
		t.Fatalf("node-postgres: got %+v, want %+v", got, want)
	}
	noTokenIn(t, sink, logs, tok)
}
