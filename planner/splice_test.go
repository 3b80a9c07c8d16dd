package planner

import (
	"context"
	"testing"

	"github.com/dbalproxy/dbalproxy/catalog"
	"github.com/dbalproxy/dbalproxy/parser"
	"github.com/dbalproxy/dbalproxy/plan"
	"github.com/dbalproxy/dbalproxy/policy"
	"github.com/dbalproxy/dbalproxy/rewrite"
	pg_query "github.com/pganalyze/pg_query_go/v6"
	"github.com/rs/zerolog"
)

// testCatalog knows the two functions the planner's unit tests call, as
// PostgreSQL's catalog has them.
var testCatalog = catalog.Static{S: catalog.NewSnapshot(
	catalog.Function{OID: 2803, Schema: "pg_catalog", Name: "count", Kind: "aggregate", Volatility: "immutable", Language: "internal"},
	catalog.Function{OID: 1317, Schema: "pg_catalog", Name: "length", MinArgs: 1, MaxArgs: 1, Kind: "function", Volatility: "immutable", Language: "internal", Arguments: "text"},
)}

// A text planned from its shape by splicing its constants into the shape's
// rewrite is the text's own rewrite: for pairs of texts that differ only in
// constants, the second one's plan (spliced) deparses like a rewrite of it
// computed afresh.
func TestSpliceEqualsRewrite(t *testing.T) {
	engine, err := policy.New(policy.Options{Dir: "../policies", Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	newPlanner := func() *Planner {
		pl, err := New(Config{Parser: parser.New(parser.Options{}), Policy: engine,
			Rewriter: rewrite.NewRewriter(0), Logger: zerolog.Nop(), Catalog: testCatalog})
		if err != nil {
			t.Fatal(err)
		}
		return pl
	}
	alice := func() *plan.Session {
		return &plan.Session{Principal: plan.Principal{User: "alice", Role: "user", Claims: map[string]any{"user_id": "u_alice"}}}
	}
	ctx := context.Background()
	pairs := [][2]string{
		{"SELECT email FROM users WHERE id = 'u_bob'", "SELECT email FROM users WHERE id = 'u_carol'"},
		{"SELECT email FROM users WHERE id = 'a' AND username <> 'b' LIMIT 5", "SELECT email FROM users WHERE id = E'x\\ny' AND username <> 'it''s' LIMIT 50"},
		{"SELECT email FROM users u WHERE u.id IN ('a', 'b')", "SELECT email FROM users u WHERE u.id IN ('c', 'd')"},
		{"SELECT count(*) - 1 FROM users WHERE length(email) > 3", "SELECT count(*) - -1 FROM users WHERE length(email) > -7"},
		{"SELECT 1.5, true, NULL FROM users /* c */ WHERE id = 'a' -- x", "SELECT 2.25e3, false, NULL FROM users /* c */ WHERE id = 'b' -- x"},
		{"SELECT p.slug, u.email FROM page_views p JOIN users u ON u.id = p.owner_id WHERE p.level >= 1", "SELECT p.slug, u.email FROM page_views p JOIN users u ON u.id = p.owner_id WHERE p.level >= 2"},
		{"SELECT (SELECT email FROM users WHERE id = 'a'), 'x'::text", "SELECT (SELECT email FROM users WHERE id = 'b'), 'y'::text"},
		{"SELECT email FROM users WHERE created_at > '2020-01-01'::timestamptz", "SELECT email FROM users WHERE created_at > '2021-06-01 12:00'::timestamptz"},
		{"SELECT email FROM users WHERE created_at > DATE '2020-01-01'", "SELECT email FROM users WHERE created_at > DATE '2021-01-01'"},
		{"SELECT id FROM users WHERE id = 'a' UNION SELECT id FROM users WHERE id = 'b'", "SELECT id FROM users WHERE id = 'c' UNION SELECT id FROM users WHERE id = 'd'"},
		{"SELECT email FROM users WHERE id = 'a' AND 1 = 1", "SELECT email FROM users WHERE id = 'z' AND 2 = 3"},
		{"SELECT B'101', X'1F', 0x1F FROM users", "SELECT B'111', X'2F', 0x2F FROM users"},
	}
	deparse := func(sql string) string {
		tree, err := pg_query.Parse(sql)
		if err != nil {
			t.Fatalf("%q does not parse: %v", sql, err)
		}
		out, err := pg_query.Deparse(tree)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	spliced := 0
	for _, pair := range pairs {
		pl := newPlanner()
		first, err := pl.Decide(ctx, alice(), pair[0])
		if err != nil || first.Deny != nil {
			t.Fatalf("%q: %+v %v", pair[0], first, err)
		}
		skey, ok := pl.shapeKey(planKey{principal: alice().PrincipalKey(), version: engine.Version(), sql: pair[1]})
		if !ok {
			t.Fatalf("%q has no shape", pair[1])
		}
		sh, _ := pl.shapes.Get(skey)
		if sh == nil {
			t.Fatalf("%q: no shape after %q", pair[1], pair[0])
		}
		if sh.splice != nil {
			spliced++
		}
		got, err := pl.Decide(ctx, alice(), pair[1])
		if err != nil || got.Deny != nil {
			t.Fatalf("%q: %+v %v", pair[1], got, err)
		}
		want, err := newPlanner().Decide(ctx, alice(), pair[1])
		if err != nil {
			t.Fatal(err)
		}
		if deparse(got.SQL) != deparse(want.SQL) {
			t.Errorf("%q:\n spliced %s\n rewrite %s", pair[1], got.SQL, want.SQL)
		}
	}
	if spliced < len(pairs)-3 {
		t.Errorf("only %d of %d shapes are spliced", spliced, len(pairs))
	}
	t.Logf("%d of %d shapes spliced", spliced, len(pairs))
}

// FuzzSplice: for any two texts of one shape, splicing gives the second
// text's own rewrite, or declines.
func FuzzSplice(f *testing.F) {
	f.Add("SELECT email FROM users WHERE id = 'a' AND level > 1", "x", int64(-5))
	f.Add("SELECT * FROM users u WHERE u.id IN ('a', 'b') LIMIT 3", "it''s", int64(7))
	engine, err := policy.New(policy.Options{Dir: "../policies", Logger: zerolog.Nop()})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sql, s string, n int64) {
		pl, err := New(Config{Parser: parser.New(parser.Options{}), Policy: engine,
			Rewriter: rewrite.NewRewriter(0), Logger: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		info := &plan.Session{Principal: plan.Principal{User: "alice", Role: "user", Claims: map[string]any{"user_id": "u_alice"}}}
		ctx := context.Background()
		if _, err := pl.Decide(ctx, info, sql); err != nil {
			return
		}
		// Another text of the same shape: every string constant replaced
		// by s, every integer by n.
		tokens, ok := scanTokens(sql)
		if !ok {
			return
		}
		var b []byte
		last := 0
		for _, tk := range tokens {
			switch tk.Token {
			case pg_query.Token_SCONST:
				b = append(append(b, sql[last:tk.Start]...), "'"+s+"'"...)
				last = int(tk.End)
			case pg_query.Token_ICONST:
				b = append(append(b, sql[last:tk.Start]...), []byte(itoa(n))...)
				last = int(tk.End)
			}
		}
		other := string(append(b, sql[last:]...))
		got, err := pl.Decide(ctx, info, other)
		if err != nil {
			return
		}
		want, _, _ := pl.planText(ctx, info, other, "", engine.Version())
		if (got.Deny == nil) != (want.Deny == nil) {
			t.Fatalf("%q after %q: denied %v, afresh %v", other, sql, got.Deny, want.Deny)
		}
		if got.Deny != nil {
			return
		}
		g, err1 := pg_query.Parse(got.SQL)
		w, err2 := pg_query.Parse(want.SQL)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("%q: spliced %q (%v), afresh %q (%v)", other, got.SQL, err1, want.SQL, err2)
		}
		if err1 != nil {
			return
		}
		gd, _ := pg_query.Deparse(g)
		wd, _ := pg_query.Deparse(w)
		if gd != wd {
			t.Fatalf("%q after %q:\n spliced %s\n afresh  %s", other, sql, got.SQL, want.SQL)
		}
	})
}

func itoa(n int64) string {
	if n < 0 {
		return "-" + itoa(-n)
	}
	const digits = "0123456789"
	if n < 10 {
		return digits[n : n+1]
	}
	return itoa(n/10) + digits[n%10:n%10+1]
}
