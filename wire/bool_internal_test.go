package wire

import (
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// TestBooleanArguments checks that a set_config's is_local argument is read
// as PostgreSQL reads a boolean ('tru', 'ye' and ' true ' are true; 'o' is
// no boolean), both where the end-user token switch and where transaction
// pooling ask whether the change is local.
func TestBooleanArguments(t *testing.T) {
	for arg, local := range map[string]bool{
		"true": true, "'t'": true, "'tru'": true, "'ye'": true, "' true '": true, "'on'": true, "'1'": true,
		"false": false, "'of'": false, "'o'": false, "'nope'": false, "'2'": false,
	} {
		tree, err := pg_query.Parse("SELECT set_config('dbal.token', 'x', " + arg + ")")
		if err != nil {
			t.Fatal(err)
		}
		stmt := tree.Stmts[0].Stmt
		fc := stmt.GetSelectStmt().TargetList[0].GetResTarget().GetVal().GetFuncCall()
		if got := isTrue(uncast(fc.Args[2])); got != local {
			t.Errorf("isTrue(%s) = %v, want %v", arg, got, local)
		}
		if got := setConfigIsLocal(stmt); got != local {
			t.Errorf("setConfigIsLocal(%s) = %v, want %v", arg, got, local)
		}
	}
}
