package pgbool

import (
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in        string
		value, ok bool
	}{
		{"t", true, true}, {"TR", true, true}, {"tru", true, true}, {"true", true, true},
		{"y", true, true}, {"ye", true, true}, {"YES", true, true}, {"on", true, true}, {"1", true, true},
		{"f", false, true}, {"fal", false, true}, {"false", false, true}, {"n", false, true}, {"no", false, true},
		{"of", false, true}, {"off", false, true}, {"0", false, true},
		{"", false, false}, {"o", false, false}, {"trueish", false, false}, {"onn", false, false},
		{"offf", false, false}, {"01", false, false}, {"10", false, false}, {" on", false, false}, {"2", false, false},
	} {
		v, ok := Parse(c.in)
		if v != c.value || ok != c.ok {
			t.Errorf("Parse(%q) = %v, %v; want %v, %v", c.in, v, ok, c.value, c.ok)
		}
	}
	if !IsTrue(" Yes\n") || IsTrue("off") || IsTrue("maybe") {
		t.Error("IsTrue")
	}
}

func TestOption(t *testing.T) {
	for sql, want := range map[string][2]bool{
		"EXPLAIN (ANALYZE) SELECT 1":       {true, true},
		"EXPLAIN (ANALYZE 1) SELECT 1":     {true, true},
		"EXPLAIN (ANALYZE 0) SELECT 1":     {false, true},
		"EXPLAIN (ANALYZE 2) SELECT 1":     {false, false},
		"EXPLAIN (ANALYZE true) SELECT 1":  {true, true},
		"EXPLAIN (ANALYZE off) SELECT 1":   {false, true},
		"EXPLAIN (ANALYZE 'ON') SELECT 1":  {true, true},
		"EXPLAIN (ANALYZE no) SELECT 1":    {false, false},
		"EXPLAIN (ANALYZE f) SELECT 1":     {false, false},
		"EXPLAIN (ANALYZE 1.0) SELECT 1":   {false, false},
		"EXPLAIN (ANALYZE false) SELECT 1": {false, true},
	} {
		tree, err := pg_query.Parse(sql)
		if err != nil {
			t.Fatal(err)
		}
		d := tree.Stmts[0].Stmt.GetExplainStmt().Options[0].GetDefElem()
		v, ok := Option(d)
		if [2]bool{v, ok} != want {
			t.Errorf("%s: Option = %v, %v; want %v", sql, v, ok, want)
		}
	}
}
