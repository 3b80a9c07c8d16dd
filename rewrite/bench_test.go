package rewrite

import (
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/dbalproxy/dbalproxy/decision"
)

const pgbenchSelect = "SELECT abalance FROM pgbench_accounts WHERE aid = $1"

var pgbenchRules = Rules{
	Filters: map[string]decision.Filter{"public.pgbench_accounts": {SQL: "bid = $1", Args: []any{int64(1)}}},
	Columns: map[string]decision.ColumnRule{"public.pgbench_accounts": {DenyWrite: []string{"bid"}}},
}

func BenchmarkCompile(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(pgbenchRules); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApply rewrites the pgbench SELECT under a filter (clone, walk,
// deparse).
func BenchmarkApply(b *testing.B) {
	c := mustCompile(b, pgbenchRules)
	st := stmt(b, pgbenchSelect)
	out, changed, err := Apply(st, c)
	if err != nil || !changed {
		b.Fatalf("Apply = %q, %v, %v", out, changed, err)
	}
	b.Logf("%s", out)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Apply(st, c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyUntouched is a statement that names no table of the rules:
// the facts answer without walking the tree.
func BenchmarkApplyUntouched(b *testing.B) {
	c := mustCompile(b, filterOnly)
	st := stmt(b, pgbenchSelect)
	b.ReportAllocs()
	for b.Loop() {
		if _, changed, err := Apply(st, c); err != nil || changed {
			b.Fatal(changed, err)
		}
	}
}

// BenchmarkApplyColumnCheck walks a join that reads allowed columns of a
// table with a read rule, without rewriting it.
func BenchmarkApplyColumnCheck(b *testing.B) {
	c := mustCompile(b, colsOnly)
	st := stmt(b, "SELECT u.id, u.username, p.title FROM users u JOIN page_views p ON p.owner_id = u.id WHERE u.role = $1 ORDER BY p.title LIMIT 10")
	b.ReportAllocs()
	for b.Loop() {
		if _, changed, err := Apply(st, c); err != nil || changed {
			b.Fatal(changed, err)
		}
	}
}

// BenchmarkDeparseBaseline is pg_query.Deparse of the unrewritten pgbench
// SELECT: the floor under BenchmarkApply.
func BenchmarkDeparseBaseline(b *testing.B) {
	st := stmt(b, pgbenchSelect)
	_, version := template()
	pr := &pg_query.ParseResult{Version: version, Stmts: []*pg_query.RawStmt{{Stmt: st.Tree.Stmt}}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := pg_query.Deparse(pr); err != nil {
			b.Fatal(err)
		}
	}
}
