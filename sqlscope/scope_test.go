package sqlscope

import (
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

func TestQualified(t *testing.T) {
	top := &Scope[int]{}
	top.Rels = append(top.Rels, Rel[int]{Name: "users", Schema: "app", Info: 1})
	inner := top.Child()
	inner.Rels = append(inner.Rels,
		Rel[int]{Name: "u", Aliased: true, Info: 2},
		Rel[int]{Name: "orders", Info: 3},
		Rel[int]{Name: "excluded", Aliased: true, QualifiedOnly: true, Info: 4})
	for _, c := range []struct {
		names      []string
		star       bool
		info, take int
	}{
		{[]string{"u", "id"}, false, 2, 1},
		{[]string{"users", "id"}, false, 1, 1},
		{[]string{"app", "users", "id"}, false, 1, 2},
		{[]string{"db", "app", "users", "id"}, false, 1, 3},
		{[]string{"public", "orders", "id"}, false, 3, 2}, // written unqualified: any schema
		{[]string{"other", "users", "id"}, false, 0, 0},
		{[]string{"u", "id", "f"}, false, 2, 1}, // u.id's field f
		{[]string{"orders"}, true, 3, 1},
		{[]string{"app", "users"}, true, 1, 2},
		{[]string{"x", "app", "u"}, true, 0, 0}, // an alias is never schema-qualified
		{[]string{"excluded", "id"}, false, 4, 1},
	} {
		r, take := inner.Qualified(c.names, c.star)
		got := 0
		if r != nil {
			got = r.Info
		}
		if got != c.info || take != c.take {
			t.Errorf("Qualified(%v, %v) = %d, %d; want %d, %d", c.names, c.star, got, take, c.info, c.take)
		}
	}
	if r := inner.WholeRow("excluded"); r != nil {
		t.Error("EXCLUDED is no whole row")
	}
	if r := inner.WholeRow("users"); r == nil || r.Info != 1 {
		t.Error("WholeRow(users)")
	}
	inner.SetOutputs([]*pg_query.Node{pg_query.MakeResTargetNodeWithName("users", -1)})
	inner.UseOutputs = true
	if r := inner.WholeRow("users"); r != nil {
		t.Error("an output name is no whole row")
	}
}

func TestReach(t *testing.T) {
	top := &Scope[int]{Rels: []Rel[int]{{Name: "t"}}}
	empty := top.Child()
	if empty.Nearest() != top {
		t.Error("an empty level reaches out")
	}
	empty.Opaque = true
	if empty.Nearest() != nil {
		t.Error("an opaque empty level stops")
	}
	sib := top.Sibling()
	if sib.Nearest() != nil {
		t.Error("a sibling does not see the level's range table")
	}
}

func TestWith(t *testing.T) {
	for sql, want := range map[string][]bool{
		// Which names the body of each CTE sees: a, b.
		"WITH a AS (SELECT 1), b AS (SELECT 2) SELECT 1":           {false, false, true, false},
		"WITH RECURSIVE a AS (SELECT 1), b AS (SELECT 2) SELECT 1": {true, true, true, true},
	} {
		tree, err := pg_query.Parse(sql)
		if err != nil {
			t.Fatal(err)
		}
		s := &Scope[int]{}
		var got []bool
		s.Child().With(tree.Stmts[0].Stmt.GetSelectStmt().WithClause, func(*pg_query.CommonTableExpr) {})
		inner := s.Child()
		inner.With(tree.Stmts[0].Stmt.GetSelectStmt().WithClause, func(*pg_query.CommonTableExpr) {
			got = append(got, inner.IsCTE("a"), inner.IsCTE("b"))
		})
		if len(got) != len(want) {
			t.Fatalf("%s: %v", sql, got)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s: saw %v, want %v", sql, got, want)
				break
			}
		}
		if s.IsCTE("a") || !inner.IsCTE("b") {
			t.Errorf("%s: CTE names belong to their level", sql)
		}
		if !inner.IsCTERef(&pg_query.RangeVar{Relname: "a"}) || inner.IsCTERef(&pg_query.RangeVar{Schemaname: "public", Relname: "a"}) {
			t.Errorf("%s: IsCTERef", sql)
		}
	}
}
