package sqlscope

import (
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// Walk reaches every node of a tree (here: the function calls nested in a
// CTE, a sub-select, a CASE and a VALUES list) and stops when told to.
func TestWalk(t *testing.T) {
	res, err := pg_query.Parse(`WITH c AS (SELECT f1(x) FROM t)
		SELECT CASE WHEN f2(1) > 0 THEN (SELECT f3()) END, * FROM c, (VALUES (f4(2))) v(a)`)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	all := Walk(res.Stmts[0].Stmt, func(m proto.Message) bool {
		if fc, ok := m.(*pg_query.FuncCall); ok {
			names = append(names, Strings(fc.Funcname)...)
		}
		return true
	})
	if !all || len(names) != 4 {
		t.Fatalf("Walk found %v (to the end: %v), want f1..f4", names, all)
	}
	seen := 0
	all = Walk(res.Stmts[0].Stmt, func(m proto.Message) bool {
		if _, ok := m.(*pg_query.FuncCall); ok {
			seen++
			return false
		}
		return true
	})
	if all || seen != 1 {
		t.Fatalf("Walk went on after fn returned false: %d calls seen, to the end %v", seen, all)
	}
	if !Walk(nil, func(proto.Message) bool { return false }) {
		t.Fatal("Walk(nil) reported a stop")
	}
}
