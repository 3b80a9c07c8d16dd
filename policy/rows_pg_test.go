package policy_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/dbalproxy/dbalproxy/parser"
	"github.com/dbalproxy/dbalproxy/policy"
	"github.com/dbalproxy/dbalproxy/rewrite"
	"github.com/dbalproxy/dbalproxy/testenv"
	"github.com/jackc/pgx/v5"
	"github.com/open-policy-agent/opa/v1/rego"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunMain(m)) }

// pgRows are the rows of public.t for TestRowRulesAgreeWithPostgreSQL, with
// NULLs, LIKE wildcards, case and quotes where a careless translation
// would go wrong.
const pgRows = `
CREATE TABLE t (id int PRIMARY KEY, a text, b text, n int, owner text, "Mixed ""Case""" int);
INSERT INTO t VALUES
 (1, 'x',    'x',    1,    'u_alice',        1),
 (2, 'y',    'mid',  3,    'u_bob',          2),
 (3, 'p%_q', 'amix', 4,    'u_alice',        NULL),
 (4, 'pa_q', 'é!',   5,    NULL,             1),
 (5, NULL,   NULL,   NULL, NULL,             NULL),
 (6, 'zzé!', 'x',    2,    'U_ALICE',        3),
 (7, 'x',    NULL,   0,    'u_alice''; --',  1),
 (8, 'é!',   'é!',   -1,   '',               0);
`

// TestRowRulesAgreeWithPostgreSQL: for each row rule, the rows PostgreSQL
// returns through the rewritten statement are the rows the Rego rule allows
// when evaluated on each row itself (opa test's view). Where a column the
// rule reads is NULL, SQL may only be stricter than Rego, never looser.
func TestRowRulesAgreeWithPostgreSQL(t *testing.T) {
	c := testenv.Shared(t)
	db := testenv.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.AppURL(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, pgRows); err != nil {
		t.Fatal(err)
	}
	rowsByID := map[int]map[string]any{}
	res, err := conn.Query(ctx, `SELECT id, a, b, n, owner, "Mixed ""Case""" FROM t`)
	if err != nil {
		t.Fatal(err)
	}
	for res.Next() {
		var id int
		var a, b, owner *string
		var n, mixed *int32
		if err := res.Scan(&id, &a, &b, &n, &owner, &mixed); err != nil {
			t.Fatal(err)
		}
		row := map[string]any{"id": id, "a": deref(a), "b": deref(b), "n": derefInt(n), "owner": deref(owner), `Mixed "Case"`: derefInt(mixed)}
		rowsByID[id] = row
	}
	if err := res.Err(); err != nil || len(rowsByID) != 8 {
		t.Fatalf("%d rows, %v", len(rowsByID), err)
	}

	p := parser.New(parser.Options{})
	parsed, err := p.Parse("SELECT id FROM t")
	if err != nil {
		t.Fatal(err)
	}
	rw := rewrite.NewRewriter(0)
	session := map[string]any{"role": "r", "claims": map[string]any{"user_id": "u_alice"}}
	for _, tc := range []struct{ name, rules string }{
		{"owner is the claim", `rows["public.t"].select if input.row.owner == input.session.claims.user_id`},
		{"range", `rows["public.t"].select if { input.row.n > 0; input.row.n <= 4 }`},
		{"in", `rows["public.t"].select if input.row.a in {"x", "y", "é!"}`},
		{"in with null", `rows["public.t"].select if input.row.a in ["x", null]`},
		{"null tests", `rows["public.t"].select if { input.row.a != null; input.row.b == null }`},
		{"not equal", `rows["public.t"].select if input.row.a != "x"`},
		{"not", `rows["public.t"].select if not input.row.owner == input.session.claims.user_id`},
		{"startswith wildcards", `rows["public.t"].select if startswith(input.row.a, "p%_")`},
		{"endswith multibyte", `rows["public.t"].select if endswith(input.row.a, "é!")`},
		{"contains", `rows["public.t"].select if contains(input.row.b, "mi")`},
		{"two columns", `rows["public.t"].select if input.row.a == input.row.b`},
		{"quoted column", `rows["public.t"].select if input.row["Mixed \"Case\""] >= 1`},
		{"alternatives", "rows[\"public.t\"].select if { input.row.n < 2; input.row.b == \"x\" }\nrows[\"public.t\"].select if input.row.owner == \"u_bob\""},
		{"empty string", `rows["public.t"].select if input.row.owner == ""`},
		{"no row", `rows["public.t"].select if input.session.role == "other"`},
		{"every row", `rows["public.t"].select if input.session.role == "r"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			module := "package dbal\ndecision := {\"allow\": true}\nrow_columns[\"public.t\"] := {\"a\", \"b\", \"n\", \"owner\", \"Mixed \\\"Case\\\"\"}\n" + tc.rules + "\n"
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte(module), 0o644); err != nil {
				t.Fatal(err)
			}
			e, err := policy.New(policy.Options{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			st := parsed.Statements[0]
			in := &decision.Input{
				Session:   decision.Session{Role: "r", Claims: map[string]any{"user_id": "u_alice"}},
				Statement: decision.Statement{Command: st.Command, Class: "read", Tables: []decision.Table{{Name: "t", Access: []string{"select"}}}},
			}
			d, err := e.Decide(ctx, in)
			if err != nil || !d.Allow {
				t.Fatalf("Decide: %+v, %v", d, err)
			}
			sql, _, err := rw.Rewrite(st, &d, nil)
			if err != nil {
				t.Fatalf("rewrite refused %#v: %v", d.Filters, err)
			}
			got, err := ids(ctx, conn, sql)
			if err != nil {
				t.Fatalf("%s: %v", sql, err)
			}

			pq, err := rego.New(rego.Query(`data.dbal.rows["public.t"].select`), rego.Module("p.rego", module)).PrepareForEval(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var want, withNull []int
			for id, row := range rowsByID {
				rs, err := pq.Eval(ctx, rego.EvalInput(map[string]any{"session": session, "row": row}))
				if err != nil {
					t.Fatal(err)
				}
				if len(rs) == 1 && rs[0].Expressions[0].Value == true {
					if slices.Contains(mapValues(row), nil) {
						withNull = append(withNull, id)
					} else {
						want = append(want, id)
					}
				}
			}
			for _, id := range got {
				if !slices.Contains(want, id) && !slices.Contains(withNull, id) {
					t.Errorf("SQL returned row %d, which the Rego rule does not allow (%s)", id, sql)
				}
			}
			for _, id := range want {
				if !slices.Contains(got, id) {
					t.Errorf("SQL did not return row %d, which the Rego rule allows (%s)", id, sql)
				}
			}
			t.Logf("%s -> %v", d.Filters["public.t"].SQL, got)
		})
	}
}

func ids(ctx context.Context, conn *pgx.Conn, sql string) ([]int, error) {
	rows, err := conn.Query(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int])
}

func deref(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

func derefInt(n *int32) any {
	if n == nil {
		return nil
	}
	return int(*n)
}

func mapValues(m map[string]any) []any {
	out := make([]any, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestShippedRowColumnsExist: the columns the shipped row rules declare
// exist in the demo schema (a missing one would fail every filtered
// statement at the backend).
func TestShippedRowColumnsExist(t *testing.T) {
	c := testenv.Shared(t)
	db := testenv.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := testenv.LoadDemo(ctx, c.AppURL(db)); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, c.AppURL(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	e, err := policy.New(policy.Options{Dir: "../policies"})
	if err != nil {
		t.Fatal(err)
	}
	tables := e.RowColumns()
	if len(tables) == 0 {
		t.Fatal("the shipped set declares no row columns")
	}
	for table, cols := range tables {
		schema, name, _ := strings.Cut(table, ".")
		rows, err := conn.Query(ctx, "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2", schema, name)
		if err != nil {
			t.Fatal(err)
		}
		have, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		for _, col := range cols {
			if !slices.Contains(have, col) {
				t.Errorf("row_columns[%q] declares %q; the table has %v", table, col, have)
			}
		}
	}
}
