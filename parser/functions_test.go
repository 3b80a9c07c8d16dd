package parser

import (
	"fmt"
	"strings"
	"testing"
)

// fmtAllFuncs renders every Function, field selections and argument counts
// included: "name/args", "field:name/1".
func fmtAllFuncs(fs []Function) string {
	parts := make([]string, 0, len(fs))
	for _, f := range fs {
		n := f.Name
		if f.Schema != "" {
			n = f.Schema + "." + n
		}
		if f.Field {
			n = "field:" + n
		}
		if f.Operator {
			n = "op:" + n
		}
		parts = append(parts, fmt.Sprintf("%s/%d", n, f.Args))
	}
	return strings.Join(parts, ",")
}

// Every spelling of a call reaches the facts as that function, with its
// number of arguments; names spelled as field selections are reported as
// possible one-argument calls (the catalog tells whether they are).
func TestFunctionSpellings(t *testing.T) {
	p := New(Options{})
	cases := []struct{ sql, want string }{
		{"SELECT lower('A'), ts_rewrite('a'::tsquery, 'SELECT 1')", "lower/1,ts_rewrite/2"},
		{"SELECT ('x'::text).ts_stat", "field:ts_stat/1"},
		{"SELECT (pid).pg_terminate_backend FROM pg_stat_activity", "field:pg_terminate_backend/1"},
		{"SELECT pid.pg_terminate_backend FROM pg_stat_activity", "field:pg_terminate_backend/1"},
		{"SELECT u.email FROM users u", "field:email/1"},
		{"SELECT (k).pg_advisory_lock FROM (SELECT 1::bigint AS k) s", "field:pg_advisory_lock/1"},
		{"SELECT ((1, 2)::pair).a.lo_unlink", "field:a/1,field:lo_unlink/1"},
		{"SELECT concat(VARIADIC ARRAY['a'])", "concat/-1"},
		{"SELECT count(*) FROM t", "count/0"},
		{"SELECT pg_catalog.now()", "pg_catalog.now/0"},
		{"SELECT * FROM generate_series(1, 3)", "generate_series/2"},
		{"SELECT f(a => 1, b => 2)", "f/2"},
		{"SELECT 1 + 2, -x, a OPERATOR(myschema.===) b FROM t", "op:+/2,op:-/1,op:myschema.===/2"},
		{"SELECT * FROM t WHERE a LIKE 'x%' AND b BETWEEN 1 AND 2 AND c IS DISTINCT FROM d", "op:<=/2,op:=/2,op:>=/2,op:~~/2"},
		{"SELECT * FROM t WHERE a = ANY (SELECT b FROM u) ORDER BY a USING <<<", "op:<<</2,op:=/2"},
	}
	for _, tc := range cases {
		res, err := p.Parse(tc.sql)
		if err != nil {
			t.Fatalf("%s: %v", tc.sql, err)
		}
		if got := fmtAllFuncs(res.Statements[0].Functions); got != tc.want {
			t.Errorf("%s:\n got  %s\n want %s", tc.sql, got, tc.want)
		}
	}
}

func TestSplitQualifiedName(t *testing.T) {
	cases := []struct {
		in   string
		want string // parts joined by |, or "!" for refused
	}{
		{"seq", "seq"},
		{"Public.Seq", "public|seq"},
		{` public . "My ""Seq" `, `public|My "Seq`},
		{`"a.b"`, "a.b"},
		{"db.s.t", "db|s|t"},
		{"a.b.c.d", "!"},
		{"", "!"},
		{"a..b", "!"},
		{`"open`, "!"},
		{"a b", "!"},
		{`a"b`, "!"},
	}
	for _, tc := range cases {
		parts, ok := splitQualifiedName(tc.in)
		got := strings.Join(parts, "|")
		if !ok {
			got = "!"
		}
		if got != tc.want {
			t.Errorf("splitQualifiedName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
