package rewrite

import (
	"math"
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"

	"github.com/dbalproxy/dbalproxy/decision"
)

// exprSQL deparses an expression node (as the WHERE clause of SELECT 1).
func exprSQL(tb testing.TB, n *pg_query.Node) string {
	tb.Helper()
	tmpl, version := template()
	s := proto.Clone(tmpl).(*pg_query.SelectStmt)
	s.WhereClause = n
	out, err := pg_query.Deparse(&pg_query.ParseResult{Version: version, Stmts: []*pg_query.RawStmt{{Stmt: &pg_query.Node{Node: &pg_query.Node_SelectStmt{SelectStmt: s}}}}})
	if err != nil {
		tb.Fatalf("deparse: %v", err)
	}
	return strings.TrimPrefix(out, filterPrefix)
}

func compileOne(key, sql string, args ...any) (*Compiled, error) {
	return Compile(Rules{Filters: map[string]decision.Filter{key: {SQL: sql, Args: args}}})
}

func TestCompileBindsFilters(t *testing.T) {
	for _, tc := range []struct {
		key, sql string
		args     []any
		want     string // the predicate placed on a table aliased "t"
	}{
		{"public.users", "id = $1", []any{"u_alice"}, "t.id = 'u_alice'"},
		{"users", "users.id = $1", []any{"u_alice"}, "t.id = 'u_alice'"},
		{"public.users", "public.users.id = $1 -- trailing comment", []any{"u_alice"}, "t.id = 'u_alice'"},
		{"app.accounts", "app.accounts.owner = $1 AND NOT deleted", []any{"x"}, "t.owner = 'x' AND NOT t.deleted"},
		{"public.t", "n = $1", []any{int64(42)}, "t.n = 42"},
		{"public.t", "n = $1", []any{-7}, "t.n = -7"},
		{"public.t", "n = $1", []any{int64(1) << 40}, "t.n = 1099511627776"},
		{"public.t", "n = $1", []any{1.5}, "t.n = 1.5"},
		{"public.t", "n = $1", []any{3.0}, "t.n = 3.0"},
		{"public.t", "n = $1", []any{-2.5e-10}, "t.n = -2.5e-10"},
		{"public.t", "b = $1 AND c IS NOT DISTINCT FROM $2", []any{true, nil}, "t.b = true AND t.c IS NOT DISTINCT FROM NULL"},
		{"public.t", "$1 OR owner = $2", []any{false, "o"}, "false OR t.owner = 'o'"},
		{"public.t", "lower(email) = lower($1)", []any{"A"}, "lower(t.email) = lower('A')"},
		{"public.t", "pg_catalog.btrim(name) <> ''", nil, "pg_catalog.btrim(t.name) <> ''"},
		{"public.t", "coalesce(role, 'user') IN ('user', $1)", []any{"admin"}, "COALESCE(t.role, 'user') IN ('user', 'admin')"},
		{"public.t", "level BETWEEN $1 AND $2", []any{int64(1), int64(3)}, "t.level BETWEEN 1 AND 3"},
		{"public.t", "owner = ANY (ARRAY[$1, $2])", []any{"a", "b"}, "t.owner = ANY(ARRAY['a', 'b'])"},
		{"public.t", "CASE WHEN archived THEN false ELSE owner = $1 END", []any{"a"}, "CASE WHEN t.archived THEN false ELSE t.owner = 'a' END"},
		{"public.t", "created_at > now() - interval '1 day'", nil, "t.created_at > (now() - '1 day'::interval)"},
		{"public.t", "(props->>'team') = $1", []any{"red"}, "(t.props ->> 'team') = 'red'"},
		{"public.t", "true", nil, "true"},
	} {
		c, err := compileOne(tc.key, tc.sql, tc.args...)
		if err != nil {
			t.Errorf("Compile(%q, %v): %v", tc.sql, tc.args, err)
			continue
		}
		k, _ := parseKey(tc.key)
		if got := exprSQL(t, c.filters[k].instance("t")); got != tc.want {
			t.Errorf("Compile(%q, %v) placed on t = %s, want %s", tc.sql, tc.args, got, tc.want)
		}
	}
}

// A string argument is a literal whatever it contains: it round-trips
// through deparse and parse unchanged.
func TestCompileStringArgumentsAreLiterals(t *testing.T) {
	for _, s := range []string{
		"u_alice' OR '1'='1",
		`back\slash \' and ''quotes''`,
		"$$dollar$$ $1 ; DROP TABLE users; --",
		"é中文\n\ttabs",
		"",
	} {
		c, err := compileOne("public.users", "id = $1", s)
		if err != nil {
			t.Fatalf("Compile with %q: %v", s, err)
		}
		sql := exprSQL(t, c.filters[tableKey{"public", "users"}].instance("users"))
		res, err := pg_query.Parse(filterPrefix + sql)
		if err != nil {
			t.Fatalf("%q: output %q does not parse: %v", s, sql, err)
		}
		e := res.Stmts[0].Stmt.GetSelectStmt().WhereClause.GetAExpr()
		if got := e.GetRexpr().GetAConst().GetSval().GetSval(); got != s || e.GetRexpr().GetAConst().GetSval() == nil {
			t.Errorf("argument %q came back as %q (%s)", s, got, sql)
		}
	}
}

func TestCompileRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    Rules
		want string
	}{
		{"empty sql", filterRules("  "), "empty sql"},
		{"syntax error", filterRules("id = "), "does not parse"},
		{"missing argument", filterRules("id = $2", "a"), "$2 has no argument (1 given)"},
		{"second statement", filterRules("true; DROP TABLE users"), "not one expression"},
		{"union", filterRules("true UNION SELECT 1"), "adds clauses"},
		{"group by", filterRules("true GROUP BY 1"), "adds clauses"},
		{"order by", filterRules("true ORDER BY 1"), "adds clauses"},
		{"limit", filterRules("true LIMIT 0"), "adds clauses"},
		{"for update", filterRules("true FOR UPDATE"), "adds clauses"},
		{"window", filterRules("true WINDOW w AS ()"), "adds clauses"},
		{"subquery", filterRules("id IN (SELECT id FROM admins)"), "subqueries are not allowed"},
		{"exists", filterRules("EXISTS (SELECT 1)"), "subqueries are not allowed"},
		{"function not allowed", filterRules("pg_sleep(1) IS NULL"), "function pg_sleep is not allowed"},
		{"settings", filterRules("current_setting('x') = id"), "function current_setting is not allowed"},
		{"schema function", filterRules("myschema.lower(id) = 'a'"), "function myschema.lower is not allowed"},
		{"aggregate", filterRules("lower(DISTINCT id) = 'a'"), "aggregates"},
		{"schema operator", filterRules("id OPERATOR(public.=) 'a'"), "schema-qualified operators"},
		{"other table", filterRules("admins.id = $1", "a"), "not a column of public.users"},
		{"star", filterRules("users.* IS NOT NULL"), "* is not allowed"},
		{"array argument", filterRules("id = ANY($1)", []any{"a"}), "is not a string, number, bool or null"},
		{"object argument", filterRules("id = $1", map[string]any{}), "is not a string, number, bool or null"},
		{"nan", filterRules("n = $1", math.NaN()), "not a finite number"},
		{"nul", filterRules("id = $1", "a\x00b"), "NUL"},
		{"bad utf-8", filterRules("id = $1", "a\xffb"), "UTF-8"},
		{"bad key", Rules{Filters: map[string]decision.Filter{".users": {SQL: "true"}}}, "not \"schema.table\""},
		{"dotted key", Rules{Filters: map[string]decision.Filter{"a.b.c": {SQL: "true"}}}, "not \"schema.table\""},
		{"duplicate keys", Rules{Filters: map[string]decision.Filter{"users": {SQL: "true"}, "public.users": {SQL: "false"}}}, "two filters for public.users"},
		{"empty column", Rules{Columns: map[string]decision.ColumnRule{"users": {DenyRead: []string{""}}}}, "empty column name"},
	} {
		_, err := Compile(tc.r)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Compile error %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
}

func filterRules(sql string, args ...any) Rules {
	return Rules{Filters: map[string]decision.Filter{"public.users": {SQL: sql, Args: args}}}
}

func TestCompileEmpty(t *testing.T) {
	for _, r := range []Rules{{}, {Columns: map[string]decision.ColumnRule{"users": {}}}} {
		c := mustCompile(t, r)
		st := stmt(t, "SELECT * FROM users")
		got, changed, err := Apply(st, c)
		if err != nil || changed || got != st.Text {
			t.Errorf("Apply with %+v = %q, %v, %v; want the text unchanged", r, got, changed, err)
		}
	}
	st := stmt(t, "SELECT * FROM users")
	if got, changed, err := Apply(st, nil); err != nil || changed || got != st.Text {
		t.Errorf("Apply with nil rules = %q, %v, %v", got, changed, err)
	}
}
