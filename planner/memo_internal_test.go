package planner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/catalog"
	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/dbalproxy/dbalproxy/parser"
	"github.com/dbalproxy/dbalproxy/plan"
	"github.com/dbalproxy/dbalproxy/policy"
	"github.com/dbalproxy/dbalproxy/rewrite"
	"github.com/dbalproxy/dbalproxy/testenv"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"
)

// memoCorpus are statements over the demo schema: reads, writes, joins,
// function calls (built-in, the database's own, operators), set_config,
// SET, DDL, utility commands and transaction control.
var memoCorpus = []string{
	"SELECT username, email FROM users WHERE id = 'u_alice'",
	"SELECT * FROM users",
	"SELECT email FROM public.users u WHERE u.username = 'bob'",
	"SELECT slug, title FROM page_views WHERE level >= 2 ORDER BY slug LIMIT 10",
	"SELECT p.slug, u.email, k.name FROM page_views p JOIN users u ON u.id = p.owner_id JOIN packages k ON k.installed_by = u.id WHERE p.level > 1",
	"SELECT w.name, s.code FROM workflows w JOIN lua_scripts s ON s.owner_id = w.owner_id",
	"SELECT count(*) FROM page_views",
	"SELECT lower(email), length(username) FROM users",
	"SELECT now(), current_user, version()",
	"SELECT pg_sleep(0)",
	"SELECT public.bump(1)",
	"SELECT public.secret_count()",
	"SELECT 1 #+# 2",
	"SELECT set_config('search_path', 'public', false)",
	"SELECT set_config(current_user, 'x', true)",
	"SELECT pg_read_file('/etc/passwd')",
	"SELECT pg_advisory_lock(1)",
	"INSERT INTO users (id, username, email, role) VALUES ('u_x', 'x', 'x@example.com', 'user')",
	"INSERT INTO page_views (slug, title) VALUES ('a', 'b') RETURNING id",
	"UPDATE users SET email = 'new@example.com' WHERE id = 'u_alice'",
	"UPDATE users SET role = 'god' WHERE id = 'u_alice'",
	"UPDATE page_views SET level = level + 1 WHERE slug = 'home'",
	"DELETE FROM page_views WHERE id = 3",
	"DELETE FROM users WHERE id = 'u_bob'",
	"WITH v AS (SELECT owner_id FROM page_views) SELECT email FROM users WHERE id IN (SELECT owner_id FROM v)",
	"SELECT * FROM component_hierarchy WHERE page_id = 1",
	"TRUNCATE page_views",
	"CREATE TABLE t (id int)",
	"DROP TABLE packages",
	"ALTER TABLE users ADD COLUMN x int",
	"GRANT SELECT ON users TO PUBLIC",
	"SET search_path = public",
	"SET LOCAL statement_timeout = 5",
	"SET ROLE postgres",
	"RESET ALL",
	"SHOW search_path",
	"BEGIN",
	"COMMIT",
	"COPY users TO STDOUT",
	"COPY users FROM PROGRAM 'id'",
	"SELECT * FROM pg_catalog.pg_class",
	"SELECT * FROM pg_stat_activity",
	"EXPLAIN SELECT * FROM users",
	"VACUUM page_views",
	"LOCK TABLE users",
	"SELECT nextval('page_views_id_seq')",
	"SELECT nextval(current_user)",
	"DISCARD ALL",
	"SELECT 1; SELECT email FROM users",
	"UPDATE users SET email = 'a' WHERE id = 'u_alice'; DELETE FROM page_views",
}

// memoVariants are other spellings of sql: the same facts (other case,
// whitespace, a comment, other constants, an alias) and some other facts
// (a qualified name, another column).
func memoVariants(sql string) []string {
	out := []string{
		sql,
		strings.ToLower(sql),
		strings.ReplaceAll(sql, " ", "  "),
		sql + " -- a comment",
		"/* c */ " + sql,
		strings.ReplaceAll(sql, "'u_alice'", "'u_carol'"),
		strings.ReplaceAll(sql, "1", "7"),
		strings.ReplaceAll(sql, "FROM users", "FROM public.users"),
		strings.ReplaceAll(sql, "FROM users", "FROM users AS uu"),
		strings.ReplaceAll(sql, "SELECT email", "SELECT username"),
	}
	return out
}

// memoSessions are every demo role (and no role, an unknown role, a user
// without its claim), in and out of a transaction, from two clients.
func memoSessions(database string) []*plan.Session {
	backend := map[string]string{"server_version": "15.18", "TimeZone": "UTC"}
	var out []*plan.Session
	for _, p := range []plan.Principal{
		{User: "alice", Role: "user", Claims: map[string]any{"user_id": "u_alice"}},
		{User: "alice2", Role: "user", Claims: map[string]any{"user_id": "u_alice"}},
		{User: "erin", Role: "user", Claims: map[string]any{}},
		{User: "bob", Role: "admin", Claims: map[string]any{"user_id": "u_bob"}},
		{User: "carol", Role: "god", Claims: map[string]any{"user_id": "u_carol"}},
		{User: "dave", Role: "supergod", Claims: map[string]any{"user_id": "u_dave"}},
		{User: "prisma", Role: "migrator"},
		{User: "nobody"},
		{User: "mallory", Role: "root"},
	} {
		for i, inTx := range []bool{false, true} {
			out = append(out, &plan.Session{Principal: p, Database: database, InTransaction: inTx,
				ApplicationName: fmt.Sprint("app", i), ClientAddr: fmt.Sprintf("127.0.0.1:%d", 40000+i), BackendParams: backend})
		}
	}
	return out
}

// countEngine counts the evaluations of a policy engine.
type countEngine struct {
	*policy.Engine
	n atomic.Int64
}

func (c *countEngine) Decide(ctx context.Context, in *decision.Input) (decision.Decision, error) {
	c.n.Add(1)
	return c.Engine.Decide(ctx, in)
}

// Decisions served by the memo are OPA's: every statement of the corpus, in
// every spelling, for every demo role, in and out of a transaction, gets
// the same decisions and the same plan from a planner with the memo as from
// one that asks OPA every time; with the shipped policies (which read
// neither the text nor the client), and with policies that read exactly
// what the memo leaves out of its key for the shipped ones.
func TestPlannerMemoAgreesWithOPA(t *testing.T) {
	c := testenv.Shared(t)
	db := testenv.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	url := c.AppURL(db)
	if err := testenv.LoadDemo(ctx, url); err != nil {
		t.Fatal(err)
	}
	conn, err := pgconn.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	// The database's own functions and an operator: non-built-in candidates.
	_, err = conn.Exec(ctx, `CREATE FUNCTION public.bump(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 + 1';
CREATE FUNCTION public.secret_count() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS 'SELECT count(*) FROM users';
CREATE FUNCTION public.plus3(int, int) RETURNS int LANGUAGE sql AS 'SELECT $1 + $2 + 3';
CREATE OPERATOR #+# (LEFTARG = int, RIGHTARG = int, FUNCTION = public.plus3);`).ReadAll()
	conn.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cat := catalog.NewCache(catalog.CacheConfig{Connector: connectorFn(func(ctx context.Context, _ string) (*pgconn.PgConn, error) {
		return pgconn.Connect(ctx, url)
	})})

	textReader := t.TempDir()
	if err := os.WriteFile(filepath.Join(textReader, "p.rego"), []byte(`package dbal
decision := {"allow": input.session.role != "", "reason": sprintf("%s|%s|%s|%v|%v|%s", [input.statement.text, input.statement.fingerprint, input.session.client_addr, input.transaction.active, input.session.tls, input.session.application_name])}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"../policies", textReader} {
		for _, mode := range []decision.Mode{decision.ModeStrict, decision.ModePermissive} {
			t.Run(filepath.Base(dir)+"/"+string(mode), func(t *testing.T) {
				engine, err := policy.New(policy.Options{Dir: dir, Mode: mode, Logger: zerolog.Nop()})
				if err != nil {
					t.Fatal(err)
				}
				ce := &countEngine{Engine: engine}
				newPlanner := func(memo int) *Planner {
					pl, err := New(Config{Parser: parser.New(parser.Options{}), Policy: ce,
						Rewriter: rewrite.NewRewriter(0), Catalog: cat, MemoSize: memo, Logger: zerolog.Nop()})
					if err != nil {
						t.Fatal(err)
					}
					return pl
				}
				memo, opa := newPlanner(0), newPlanner(-1)
				version := engine.Version()
				texts, evals := 0, int64(0)
				for _, s := range memoSessions(db) {
					for _, base := range memoCorpus {
						for _, sql := range memoVariants(base) {
							n := ce.n.Load()
							got, gotD, _ := memo.planText(ctx, s, sql, "", version)
							evals += ce.n.Load() - n
							texts++
							want, wantD, _ := opa.planText(ctx, s, sql, "", version)
							if !reflect.DeepEqual(gotD, wantD) {
								t.Fatalf("%s %q: decisions with the memo\n%+v\nfrom OPA\n%+v", s.Principal.User, sql, gotD, wantD)
							}
							if !reflect.DeepEqual(got, want) {
								t.Fatalf("%s %q: plan with the memo\n%+v\nfrom OPA\n%+v", s.Principal.User, sql, got, want)
							}
						}
					}
				}
				t.Logf("%d texts, %d evaluations with the memo", texts, evals)
				if filepath.Base(dir) == "policies" && evals*3 > int64(texts) {
					t.Errorf("%d evaluations for %d texts: the memo hardly served", evals, texts)
				}
			})
		}
	}
}

type connectorFn func(ctx context.Context, database string) (*pgconn.PgConn, error)

func (f connectorFn) Connect(ctx context.Context, database string) (*pgconn.PgConn, error) {
	return f(ctx, database)
}

// The memo's key covers every field of the policy input: changing any one
// leaf (found by walking decision.Input, so a field added later is covered)
// changes the key under a policy set that reads the input as a whole; under
// the shipped set only the fields it cannot read leave it unchanged. Map
// order does not matter, nor does a copy.
func TestMemoKeyCoversInput(t *testing.T) {
	in := func() *decision.Input {
		return &decision.Input{
			Session: decision.Session{User: "u", Role: "r", Claims: map[string]any{"a": "x", "n": 1, "f": 1.5, "l": []any{"p", true, nil}, "m": map[string]any{"k": "v"}},
				Database: "d", ApplicationName: "app", ClientAddr: "c", TLS: true},
			Statement: decision.Statement{Command: "SELECT", Class: "read", Flags: []string{"f"}, Configs: []string{"c"}, Fingerprint: "fp", Text: "t",
				Setting:   &decision.Setting{Name: "s", Local: true},
				Tables:    []decision.Table{{Schema: "s", Name: "n", Access: []string{"select"}, Columns: map[string][]string{"select": {"a", "b"}}}},
				Functions: []decision.Function{{Schema: "s", Name: "f", Args: 2, Field: true, Operator: true, Resolved: true, Candidates: []decision.FunctionCandidate{{Schema: "s", Name: "f", Arguments: "int", OID: 7, Builtin: true, Kind: "function", Volatility: "stable", Language: "sql", SecurityDefiner: true, ReturnsSet: true}}}}},
			Transaction: decision.Transaction{Active: true},
			Backend:     decision.Backend{Version: "15", VersionNum: 150000, Settings: map[string]string{"a": "1", "b": "2"}},
		}
	}
	whole := t.TempDir()
	if err := os.WriteFile(filepath.Join(whole, "p.rego"), []byte("package dbal\ndecision := {\"allow\": count(input) > 0}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		dir    string
		masked map[string]bool // leaves whose change leaves the key alone
	}{
		{whole, nil},
		{"../policies", map[string]bool{"Statement.Text": true, "Statement.Fingerprint": true, "Session.User": true, "Session.Database": true,
			"Session.ApplicationName": true, "Session.ClientAddr": true, "Session.TLS": true, "Transaction.Active": true,
			"Backend.Version": true, "Backend.VersionNum": true, "Backend.Settings[a]": true, "Backend.Settings[b]": true}},
	} {
		engine, err := policy.New(policy.Options{Dir: c.dir, Logger: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		pl, err := New(Config{Parser: parser.New(parser.Options{}), Policy: engine})
		if err != nil {
			t.Fatal(err)
		}
		base, _, ok := pl.memoKey(in())
		if !ok {
			t.Fatal("no key")
		}
		if k, _, _ := pl.memoKey(in()); k != base {
			t.Fatal("two equal inputs, two keys")
		}
		var paths []string
		visitLeaves(reflect.ValueOf(in()).Elem(), "", nil, func(path string, _ reflect.Value, _ func(reflect.Value)) { paths = append(paths, path) })
		for _, target := range paths {
			x := in()
			visitLeaves(reflect.ValueOf(x).Elem(), "", nil, func(path string, v reflect.Value, set func(reflect.Value)) {
				if path == target {
					set(changedLeaf(v))
				}
			})
			k, _, ok := pl.memoKey(x)
			if !ok {
				t.Errorf("%s: no key", target)
			}
			if changed := k != base; changed == c.masked[target] {
				t.Errorf("%s: changing %s changes the key: %v", c.dir, target, changed)
			}
		}
		if len(paths) < 40 {
			t.Errorf("%d leaves: %q", len(paths), paths)
		}
	}
}

// visitLeaves calls fn with each leaf of v (a string, number, bool or nil)
// and a function that replaces it.
func visitLeaves(v reflect.Value, path string, set func(reflect.Value), fn func(path string, v reflect.Value, set func(reflect.Value))) {
	if set == nil && v.CanSet() {
		set = v.Set
	}
	switch v.Kind() {
	case reflect.Pointer:
		visitLeaves(v.Elem(), path, nil, fn)
	case reflect.Interface:
		if v.IsNil() {
			fn(path, v, set)
			return
		}
		visitLeaves(v.Elem(), path, set, fn)
	case reflect.Struct:
		for i := range v.NumField() {
			visitLeaves(v.Field(i), strings.TrimPrefix(path+"."+v.Type().Field(i).Name, "."), nil, fn)
		}
	case reflect.Slice:
		for i := range v.Len() {
			visitLeaves(v.Index(i), fmt.Sprintf("%s[%d]", path, i), nil, fn)
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			visitLeaves(v.MapIndex(k), fmt.Sprintf("%s[%v]", path, k), func(nv reflect.Value) { v.SetMapIndex(k, nv) }, fn)
		}
	default:
		fn(path, v, set)
	}
}

// changedLeaf is another value of v's kind (a string for nil).
func changedLeaf(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.String:
		return reflect.ValueOf(v.String() + "x").Convert(v.Type())
	case reflect.Bool:
		return reflect.ValueOf(!v.Bool()).Convert(v.Type())
	case reflect.Int, reflect.Int64:
		return reflect.ValueOf(v.Int() + 1).Convert(v.Type())
	case reflect.Uint32:
		return reflect.ValueOf(v.Uint() + 1).Convert(v.Type())
	case reflect.Float64:
		return reflect.ValueOf(v.Float() + 1)
	case reflect.Interface:
		return reflect.ValueOf("x")
	}
	panic("leaf of kind " + v.Kind().String())
}

// BenchmarkMemoKey measures the memo's key of pgbench's SELECT for a
// session with a backend's usual parameters.
func BenchmarkMemoKey(b *testing.B) {
	engine, err := policy.New(policy.Options{Dir: "../policies", Logger: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	pl, err := New(Config{Parser: parser.New(parser.Options{}), Policy: engine})
	if err != nil {
		b.Fatal(err)
	}
	in := &decision.Input{
		Session: decision.Session{User: "bench", Role: "supergod", Claims: map[string]any{"user_id": "u_bench"}, Database: "bench", ClientAddr: "127.0.0.1:5000"},
		Statement: decision.Statement{Command: "SELECT", Class: "read", Fingerprint: "a0b1c2", Text: "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
			Tables: []decision.Table{{Name: "pgbench_accounts", Access: []string{"select"}, Columns: map[string][]string{"select": {"abalance", "aid"}}}}},
		Backend: decision.Backend{Version: "15.18", VersionNum: 150018, Settings: map[string]string{
			"application_name": "", "client_encoding": "UTF8", "DateStyle": "ISO, MDY", "default_transaction_read_only": "off",
			"in_hot_standby": "off", "integer_datetimes": "on", "IntervalStyle": "postgres", "is_superuser": "off",
			"server_encoding": "UTF8", "server_version": "15.18", "session_authorization": "app",
			"standard_conforming_strings": "on", "TimeZone": "UTC"}},
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := pl.memoKey(in); !ok {
			b.Fatal("no key")
		}
	}
}
