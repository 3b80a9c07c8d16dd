package wire_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/audit"
	"github.com/dbalproxy/dbalproxy/catalog"
	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestFunctionCalls checks that only functions known to be safe run for
// the lower roles: functions that run SQL given as text (ts_rewrite with a
// query, ts_stat, query_to_xml), the functions behind the denied views of
// other sessions' statements, large objects, sequences of tables the role
// may not write, calls spelled as field selections, and functions created
// in the database are all denied with 42501 and audited as denials that
// name the function; ordinary functions keep working.
func TestFunctionCalls(t *testing.T) {
	sink := &auditSink{}
	p := startProxy(t, withPolicy(t, policyEngine(t, "", decision.ModeStrict), sink))
	p.loadDemo(t)
	ctx := ctxT(t, 120*time.Second)
	// A function of the application's own, created by its owner: the proxy
	// cannot see that it reads every row of users.
	for _, ddl := range []string{
		`CREATE FUNCTION all_emails() RETURNS SETOF text LANGUAGE sql AS 'SELECT email FROM users'`,
		`CREATE FUNCTION emails_of(u users) RETURNS text LANGUAGE sql AS 'SELECT string_agg(email, '','') FROM users'`,
	} {
		if err := testenvExec(ctx, p.DirectDB, ddl); err != nil {
			t.Fatal(err)
		}
	}

	denied := []struct {
		logins []string
		sql    string
		fn     string // in the reason
	}{
		// 1. SQL run from text.
		{[]string{"alice", "bob", "carol"}, "SELECT ts_rewrite('x'::tsquery, 'SELECT to_tsquery(''x''), to_tsquery(email) FROM users')", "ts_rewrite"},
		{[]string{"alice", "bob", "carol"}, "SELECT * FROM ts_stat('SELECT to_tsvector(email) FROM users')", "ts_stat"},
		{[]string{"alice", "bob"}, "SELECT query_to_xml('SELECT * FROM users', true, false, '')", "query_to_xml"},
		{[]string{"alice"}, "SELECT table_to_xml('users', true, false, '')", "table_to_xml"},
		{[]string{"alice", "bob"}, "SELECT pg_catalog.cursor_to_xml('c', 10, true, false, '')", "cursor_to_xml"},
		// 2. Calls spelled as field selections.
		{[]string{"alice", "bob", "carol"}, "SELECT ('SELECT to_tsvector(email) FROM users'::text).ts_stat", "ts_stat"},
		{[]string{"alice", "bob"}, "SELECT (pg_backend_pid()).pg_terminate_backend", "pg_terminate_backend"},
		{[]string{"alice", "bob"}, "SELECT s.pg_cancel_backend FROM (SELECT pg_backend_pid()) s(pid)", "pg_cancel_backend"},
		{[]string{"alice"}, "SELECT (42::bigint).pg_advisory_lock", "pg_advisory_lock"},
		// 3. Other sessions' statements, behind the denied views.
		{[]string{"alice", "bob", "carol"}, "SELECT pid, query FROM pg_stat_get_activity(NULL)", "pg_stat_get_activity"},
		{[]string{"alice", "bob"}, "SELECT pg_stat_get_backend_activity(s) FROM pg_stat_get_backend_idset() s", "pg_stat_get_backend"},
		{[]string{"alice", "bob", "carol"}, "SELECT * FROM pg_prepared_statement()", "pg_prepared_statement"},
		{[]string{"alice"}, "SELECT * FROM pg_cursor()", "pg_cursor"},
		// 6. Objects beside the tables.
		{[]string{"alice", "bob"}, "SELECT nextval('page_views_id_seq')", "page_views_id_seq"},
		{[]string{"alice", "bob", "carol"}, "SELECT setval('public.page_views_id_seq', 1)", "page_views_id_seq"},
		{[]string{"alice"}, "SELECT nextval(relname::regclass) FROM pg_class WHERE relkind = 'S'", "nextval"},
		{[]string{"alice", "bob", "carol"}, "SELECT lo_from_bytea(0, 'x')", "lo_from_bytea"},
		{[]string{"alice", "bob"}, "SELECT lo_creat(-1)", "lo_creat"},
		{[]string{"alice", "bob"}, "SELECT * FROM page_views FOR UPDATE", "page_views"},
		{[]string{"alice"}, "SELECT slug FROM page_views FOR SHARE", "page_views"},
		{[]string{"bob"}, "SELECT * FROM packages FOR KEY SHARE", "packages"},
		// Functions of the database's own, and unknown ones.
		{[]string{"alice", "bob", "carol"}, "SELECT * FROM all_emails()", "all_emails"},
		{[]string{"alice", "bob"}, "SELECT u.emails_of FROM users u", "emails_of"},
		{[]string{"alice"}, "SELECT (u).emails_of FROM users u", "emails_of"},
		{[]string{"alice"}, "SELECT no_such_function(1)", "no_such_function"},
		// set_config of what SET may not change.
		{[]string{"alice", "bob"}, "SELECT set_config('role', 'postgres', false)", "role"},
		{[]string{"alice"}, "SELECT set_config(name, 'x', false) FROM pg_settings LIMIT 1", "set_config"},
	}
	conns := map[string]*pgx.Conn{}
	for _, login := range []string{"alice", "bob", "carol", "dave"} {
		c, err := pgx.Connect(ctx, p.URL(login))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		conns[login] = c
	}
	for _, tc := range denied {
		for _, login := range tc.logins {
			conn := conns[login]
			for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
				rows, err := conn.Query(ctx, tc.sql, mode)
				if err == nil {
					for rows.Next() {
					}
					err = rows.Err()
					rows.Close()
				}
				if code := sqlState(err); code != "42501" {
					t.Errorf("%s as %s (%v): got %v, want 42501", tc.sql, login, mode, err)
					continue
				}
				if !strings.Contains(err.Error(), tc.fn) {
					t.Errorf("%s as %s: the error does not name %s: %v", tc.sql, login, tc.fn, err)
				}
			}
		}
	}
	// Every denial is audited as one, with the function named.
	recs := sink.Records()
	for _, tc := range denied[:4] {
		found := false
		for _, r := range recs {
			if r.Decision == audit.DecisionDeny && strings.Contains(r.Reason, tc.fn) && !strings.Contains(r.Reason, "touches no table") {
				found = slices.ContainsFunc(r.Functions, func(f string) bool { return strings.Contains(f, tc.fn) })
				if found {
					break
				}
			}
		}
		if !found {
			t.Errorf("no deny record naming %s among the functions of %q", tc.fn, tc.sql)
		}
	}

	// What the lower roles do every day keeps working.
	alice := conns["alice"]
	var n int
	var s string
	if err := alice.QueryRow(ctx, `SELECT count(*) OVER (), lower(u.email) || to_char(now(), 'YYYY') || length(username)::text
		FROM users u WHERE coalesce(u.email, '') <> '' AND date_trunc('day', now()) IS NOT NULL`).Scan(&n, &s); err != nil {
		t.Fatal(err)
	}
	if n != 1 || !strings.HasPrefix(s, "alice@") {
		t.Fatalf("alice's own row through functions: %d, %q", n, s)
	}
	if err := alice.QueryRow(ctx, "SELECT ts_rewrite('a & b'::tsquery, 'a'::tsquery, 'c'::tsquery)::text").Scan(&s); err != nil || !strings.Contains(s, "'c'") {
		t.Fatalf("the immutable ts_rewrite: %q, %v", s, err)
	}
	if err := alice.QueryRow(ctx, "SELECT format('%s-%s', current_user, current_database())").Scan(&s); err != nil {
		t.Fatal(err)
	}
	if err := alice.QueryRow(ctx, "SELECT count(*) FROM generate_series(1, 3) g").Scan(&n); err != nil || n != 3 {
		t.Fatalf("generate_series: %d, %v", n, err)
	}
	// supergod may call anything, its own functions included.
	if err := conns["dave"].QueryRow(ctx, "SELECT count(*) FROM all_emails()").Scan(&n); err != nil || n < 2 {
		t.Fatalf("supergod calling all_emails: %d, %v", n, err)
	}
}

// TestFunctionCreatedLater checks that a function created after the
// proxy read the catalog is looked up again (and denied until a policy
// names it), and that a policy can allow a deployment's own function by
// name.
func TestFunctionCreatedLater(t *testing.T) {
	dir := shippedPoliciesWith(t, `"user": {"public.my_count"},`)
	p := startProxy(t, withPolicy(t, policyEngine(t, dir, decision.ModeStrict), nil))
	p.loadDemo(t)
	ctx := ctxT(t, 60*time.Second)
	alice, err := pgx.Connect(ctx, p.URL("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close(ctx)
	// The catalog is read now, before the functions exist.
	var s string
	if err := alice.QueryRow(ctx, "SELECT lower('X')").Scan(&s); err != nil {
		t.Fatal(err)
	}
	for _, ddl := range []string{
		"CREATE FUNCTION my_count() RETURNS bigint LANGUAGE sql STABLE AS 'SELECT count(*) FROM page_views'",
		"CREATE FUNCTION my_secret() RETURNS bigint LANGUAGE sql IMMUTABLE AS 'SELECT 42'",
	} {
		if err := testenvExec(ctx, p.DirectDB, ddl); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1100 * time.Millisecond) // the catalog is read again at most once a second
	var n int64
	if err := alice.QueryRow(ctx, "SELECT my_count()").Scan(&n); err != nil || n == 0 {
		t.Fatalf("my_count, allowed by the policy: %d, %v", n, err)
	}
	_, err = alice.Exec(ctx, "SELECT my_secret()")
	if sqlState(err) != "42501" || !strings.Contains(err.Error(), "public.my_secret()") {
		t.Fatalf("my_secret, created in the database and not named by the policy: %v", err)
	}
}

// TestOperators checks that an operator a database defines runs past no
// policy: it is decided as the function behind it. Built-in operators are
// not listed for the policy (catalog.Snapshot.ResolveOperator), which holds
// only if every function behind one is allowed to every role: checked here
// against the server's own catalog.
func TestOperators(t *testing.T) {
	engine := policyEngine(t, "", decision.ModeStrict)
	p := startProxy(t, withPolicy(t, engine, nil))
	p.loadDemo(t)
	ctx := ctxT(t, 60*time.Second)
	if err := testenvExec(ctx, p.DirectDB, `CREATE FUNCTION leak_eq(a text, b text) RETURNS bool LANGUAGE sql AS 'SELECT a = b';
		CREATE OPERATOR === (LEFTARG = text, RIGHTARG = text, FUNCTION = leak_eq)`); err != nil {
		t.Fatal(err)
	}
	alice, err := pgx.Connect(ctx, p.URL("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close(ctx)
	for _, sql := range []string{
		"SELECT id FROM users WHERE email === 'x'",
		"SELECT 'a' OPERATOR(public.===) 'b'",
		"SELECT id FROM users ORDER BY email USING ===",
	} {
		_, err := alice.Exec(ctx, sql)
		if sqlState(err) != "42501" || !strings.Contains(err.Error(), "leak_eq") {
			t.Errorf("%s: %v, want 42501 naming leak_eq", sql, err)
		}
	}
	var n int
	if err := alice.QueryRow(ctx, "SELECT count(*) FROM users WHERE email LIKE '%@%' AND id || '' = id AND now() > '2000-01-01'::date").Scan(&n); err != nil || n != 1 {
		t.Fatalf("built-in operators: %d, %v", n, err)
	}

	cat := catalog.NewCache(catalog.CacheConfig{Connector: connectorFunc(func(ctx context.Context, _ string) (*pgconn.PgConn, error) {
		return pgconn.Connect(ctx, p.DirectDB)
	})})
	snap, err := cat.Snapshot(ctx, p.DB)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range snap.BuiltinOperatorFunctions() {
		in := decision.Input{
			Session: decision.Session{User: "alice", Role: "user", Claims: map[string]any{"user_id": "u_alice"}},
			Statement: decision.Statement{Command: "SELECT", Class: "read", Functions: []decision.Function{{
				Name: f.Name, Args: 2, Resolved: true, Candidates: []decision.FunctionCandidate{{
					Schema: f.Schema, Name: f.Name, Arguments: f.Arguments, OID: f.OID, Builtin: true,
					Kind: f.Kind, Volatility: f.Volatility, Language: f.Language,
				}},
			}}},
		}
		d, err := engine.Decide(ctx, &in)
		if err != nil || !d.Allow {
			t.Errorf("built-in operator function %s(%s), %s: not allowed to role user (%v): %s", f.Name, f.Arguments, f.Volatility, err, d.Reason)
		}
	}
}

// shippedPoliciesWith is a copy of the shipped policies whose
// function_permissions (matrix.rego) also have the given entries, e.g.
// `"user": {"public.app_set"},`.
func shippedPoliciesWith(t testing.TB, permissions string) string {
	t.Helper()
	dir := t.TempDir()
	ents, err := os.ReadDir("../policies")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".rego") || strings.HasSuffix(e.Name(), "_test.rego") {
			continue
		}
		b, err := os.ReadFile(filepath.Join("../policies", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "matrix.rego" {
			const at = "function_permissions := {"
			if !strings.Contains(string(b), at) {
				t.Fatal("matrix.rego has no function_permissions")
			}
			b = []byte(strings.Replace(string(b), at, at+"\n\t"+permissions, 1))
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
