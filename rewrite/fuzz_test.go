package rewrite

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/dbalproxy/dbalproxy/parser"
)

var fuzzSeeds = []string{
	"SELECT * FROM users",
	"SELECT id, email FROM users WHERE id = $1",
	"SELECT u.email FROM public.users u JOIN page_views p ON p.owner_id = u.id WHERE u.email::int = 1",
	`SELECT "users".id FROM "public"."users", "Users"`,
	"SELECT title FROM page_views WHERE owner_id IN (SELECT id FROM users) AND EXISTS (SELECT 1 FROM USERS)",
	"SELECT (SELECT email FROM users WHERE id = 'u_bob'), x.* FROM page_views p, LATERAL (SELECT * FROM users WHERE id = p.owner_id) x",
	"WITH users AS (SELECT * FROM users) SELECT * FROM users",
	"WITH a AS (SELECT * FROM users), users AS (SELECT 1) SELECT * FROM a, users, public.users",
	"WITH RECURSIVE users(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM users WHERE n < 3) SELECT * FROM users",
	"SELECT id FROM users UNION SELECT id FROM users INTERSECT SELECT owner_id FROM page_views EXCEPT TABLE users",
	"UPDATE users SET email = $1 WHERE id = $2 RETURNING *",
	"UPDATE users u SET email = 'x' FROM users v WHERE v.id = u.id",
	"DELETE FROM users WHERE true RETURNING *",
	"DELETE FROM page_views p USING users u WHERE u.id = p.owner_id",
	"UPDATE page_views SET title = (SELECT email FROM users WHERE id = 'u_bob')",
	"INSERT INTO page_views (slug, title) SELECT username, email FROM users ON CONFLICT DO NOTHING",
	"INSERT INTO users AS u (id) VALUES ('x') ON CONFLICT (id) DO UPDATE SET email = excluded.email WHERE u.role = 'user'",
	"MERGE INTO page_views p USING users u ON p.owner_id = u.id WHEN MATCHED THEN UPDATE SET title = u.email",
	"MERGE INTO users u USING page_views p ON u.id = p.owner_id WHEN MATCHED THEN DELETE",
	"COPY users TO STDOUT",
	"COPY (SELECT * FROM users) TO STDOUT WITH (FORMAT csv)",
	"COPY users (id) FROM STDIN",
	"WITH d AS (DELETE FROM users RETURNING *) INSERT INTO page_views (slug, title) SELECT id, email FROM d",
	"SELECT * FROM users TABLESAMPLE SYSTEM (10), ONLY public.users AS x(a, b)",
	"SELECT public.users.email, users.* FROM public.users FOR UPDATE OF users",
	"EXPLAIN ANALYZE SELECT * FROM users; PREPARE q AS SELECT * FROM users WHERE id = $1",
	"DECLARE c CURSOR FOR SELECT email FROM users",
	"CREATE TABLE t AS SELECT * FROM users",
	"TRUNCATE users",
	"SELECT 1/(CASE WHEN email='bob@example.com' THEN 0 ELSE 1 END) FROM users; SELECT pg_sleep(1)",
	"SELECT j.* FROM users u, jsonb_each(to_jsonb(u)) j, (users x JOIN page_views USING (id)) AS k",
}

// FuzzApply checks, for every statement that parses, that Apply either
// errors or returns SQL that parses again into exactly the rewritten tree
// (unless pg_query cannot deparse the statement itself faithfully either),
// leaves the parse tree alone, and
// that every reference to public.users left in the output is the inside of
// a fence whose WHERE is the filter, or the guarded target of an UPDATE or
// DELETE (or an INSERT target, whose ON CONFLICT DO UPDATE is guarded).
func FuzzApply(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	rules := mustCompile(f, filterOnly)
	f.Fuzz(func(t *testing.T, sql string) {
		res, err := parser.New(parser.Options{}).Parse(sql)
		if err != nil {
			return
		}
		for _, st := range res.Statements {
			before := proto.Clone(st.Tree)
			out, tree, err := apply(st, rules)
			if !proto.Equal(before, st.Tree) {
				t.Fatalf("Apply modified the parse tree of %q", st.Text)
			}
			if err != nil {
				var ce *ColumnError
				var de *DeniedError
				if !errors.As(err, &ce) && !errors.As(err, &de) && !strings.HasPrefix(err.Error(), "rewrite: ") {
					t.Fatalf("Apply(%q): unexpected error %v", st.Text, err)
				}
				continue
			}
			if tree == nil {
				if out != st.Text {
					t.Fatalf("Apply(%q) changed the text to %q but reports no change", st.Text, out)
				}
				continue
			}
			if err := verify(out, tree); err != nil {
				if !roundTrips(st.Tree.Stmt) {
					continue // a pg_query deparser limitation: the statement itself does not round-trip
				}
				t.Fatalf("Apply(%q): %v", st.Text, err)
			}
			tree2, err := pg_query.Parse(out)
			if err != nil {
				t.Fatalf("Apply(%q) = %q, which does not parse: %v", st.Text, out, err)
			}
			o := &oracle{t: t}
			o.walk(tree2.Stmts[0].Stmt, nil)
			if len(o.problems) > 0 {
				t.Fatalf("Apply(%q) = %q:\n%s", st.Text, out, strings.Join(o.problems, "\n"))
			}
		}
	})
}

// oracle checks an output tree independently of the rewriter's walker.
type oracle struct {
	t        *testing.T
	problems []string
	// inlinable counts the enclosing sub-selects in FROM and CTE bodies,
	// where a filtered table must stay fenced.
	inlinable int
}

func isUsers(rv *pg_query.RangeVar) bool {
	return rv != nil && rv.Relname == "users" && (rv.Schemaname == "" || rv.Schemaname == "public")
}

// wantFilter is the filter placed on qual, parsed from text.
func (o *oracle) wantFilter(qual string) string {
	q := `"` + strings.ReplaceAll(qual, `"`, `""`) + `"`
	res, err := pg_query.Parse(filterPrefix + q + ".id = 'u_alice'")
	if err != nil {
		o.t.Fatalf("parse filter on %q: %v", qual, err)
	}
	return exprSQL(o.t, res.Stmts[0].Stmt.GetSelectStmt().WhereClause)
}

func (o *oracle) isFilter(n *pg_query.Node, qual string) bool {
	return n != nil && exprSQL(o.t, n) == o.wantFilter(qual)
}

// isGuard reports whether where is the filter, or filter AND CASE WHEN
// filter THEN ... ELSE false END.
func (o *oracle) isGuard(where *pg_query.Node, qual string) bool {
	if o.isFilter(where, qual) {
		return true
	}
	b := where.GetBoolExpr()
	if b == nil || b.Boolop != pg_query.BoolExprType_AND_EXPR || len(b.Args) < 2 {
		return false
	}
	// filter's conjuncts, simple comparisons copied out of the client's
	// condition, then the CASE.
	if !o.isFilter(withoutPushed(andOf(b.Args[:len(b.Args)-1])), qual) {
		return false
	}
	c := b.Args[len(b.Args)-1].GetCaseExpr()
	if c == nil || c.Arg != nil || len(c.Args) != 1 || !o.isFilter(c.Args[0].GetCaseWhen().GetExpr(), qual) {
		return false
	}
	d := c.Defresult.GetAConst()
	return d != nil && d.GetBoolval() != nil && !d.GetBoolval().Boolval
}

// isConflictGuard reports whether where is `CASE WHEN <filter> THEN ...
// ELSE <violation> END`: a hidden conflicting row raises the violation.
func (o *oracle) isConflictGuard(where *pg_query.Node, qual string) bool {
	c := where.GetCaseExpr()
	if c == nil || c.Arg != nil || len(c.Args) != 1 || !o.isFilter(c.Args[0].GetCaseWhen().GetExpr(), qual) {
		return false
	}
	d := c.Defresult.GetAExpr()
	return d != nil && strings.Contains(d.String(), CheckViolationMarker)
}

// isFence reports whether s is SELECT * FROM public.users WHERE <filter>
// OFFSET 0.
func (o *oracle) isFence(s *pg_query.SelectStmt) bool {
	if len(s.FromClause) != 1 || len(s.TargetList) != 1 || s.LimitCount != nil || s.Op != pg_query.SetOperation_SETOP_NONE {
		return false
	}
	rv := s.FromClause[0].GetRangeVar()
	if rv == nil {
		rv = s.FromClause[0].GetRangeTableSample().GetRelation().GetRangeVar()
	}
	off := s.LimitOffset.GetAConst()
	return isUsers(rv) && rv.Schemaname == "public" && rv.Alias == nil &&
		o.isFilter(withoutPushed(s.WhereClause), "users") && off != nil && off.GetIval() != nil && off.GetIval().Ival == 0
}

// isFlat reports whether s reads users alone, unfenced, with the filter
// and nothing but simple comparisons in its WHERE clause (see unfence).
func (o *oracle) isFlat(s *pg_query.SelectStmt) bool {
	if len(s.FromClause) != 1 || s.Op != pg_query.SetOperation_SETOP_NONE {
		return false
	}
	rv := s.FromClause[0].GetRangeVar()
	return isUsers(rv) && rv.Schemaname == "public" && o.isFilter(withoutPushed(s.WhereClause), relName(rv))
}

// andOf is the AND of args, or the one arg.
func andOf(args []*pg_query.Node) *pg_query.Node {
	if len(args) == 1 {
		return args[0]
	}
	return pg_query.MakeBoolExprNode(pg_query.BoolExprType_AND_EXPR, args, -1)
}

// withoutPushed drops the trailing simple comparisons (column against a
// constant) that the rewrite copies next to a filter.
func withoutPushed(where *pg_query.Node) *pg_query.Node {
	b := where.GetBoolExpr()
	if b == nil || b.Boolop != pg_query.BoolExprType_AND_EXPR {
		return where
	}
	args := b.Args
	for len(args) > 1 && simpleComparison(args[len(args)-1]) != nil {
		args = args[:len(args)-1]
	}
	return andOf(args)
}

func relName(rv *pg_query.RangeVar) string {
	if a := rv.Alias.GetAliasname(); a != "" {
		return a
	}
	return rv.Relname
}

func withOf(m proto.Message) *pg_query.WithClause {
	switch x := m.(type) {
	case *pg_query.SelectStmt:
		return x.WithClause
	case *pg_query.InsertStmt:
		return x.WithClause
	case *pg_query.UpdateStmt:
		return x.WithClause
	case *pg_query.DeleteStmt:
		return x.WithClause
	case *pg_query.MergeStmt:
		return x.WithClause
	}
	return nil
}

// walk visits m with ctes the CTE names visible there.
func (o *oracle) walk(m proto.Message, ctes []string) {
	if n, ok := m.(*pg_query.Node); ok {
		m = unwrap(n)
	}
	if m == nil || !m.ProtoReflect().IsValid() {
		return
	}
	skip := map[string]bool{}
	if wc := withOf(m); wc != nil {
		skip["with_clause"] = true
		var names []string
		for _, c := range wc.Ctes {
			names = append(names, c.GetCommonTableExpr().GetCtename())
		}
		for i, c := range wc.Ctes {
			vis := slices.Clip(ctes)
			if wc.Recursive {
				vis = append(vis, names...)
			} else {
				vis = append(vis, names[:i]...)
			}
			o.inlinable++
			o.walk(c.GetCommonTableExpr().GetCtequery(), vis)
			o.inlinable--
		}
		ctes = append(slices.Clip(ctes), names...)
	}
	switch x := m.(type) {
	case *pg_query.SelectStmt:
		if o.isFence(x) {
			return
		}
		if o.inlinable == 0 && o.isFlat(x) {
			skip["from_clause"] = true
		}
	case *pg_query.RangeSubselect:
		o.inlinable++
		defer func() { o.inlinable-- }()
	case *pg_query.ViewStmt, *pg_query.RuleStmt:
		o.inlinable++
		defer func() { o.inlinable-- }()
	case *pg_query.UpdateStmt:
		skip["relation"] = true
		if isUsers(x.Relation) && !o.isGuard(x.WhereClause, relName(x.Relation)) {
			o.problems = append(o.problems, "UPDATE of users without the guard")
		}
	case *pg_query.DeleteStmt:
		skip["relation"] = true
		if isUsers(x.Relation) && !o.isGuard(x.WhereClause, relName(x.Relation)) {
			o.problems = append(o.problems, "DELETE from users without the guard")
		}
	case *pg_query.InsertStmt:
		skip["relation"] = true
		if oc := x.OnConflictClause; isUsers(x.Relation) && oc != nil && oc.Action == pg_query.OnConflictAction_ONCONFLICT_UPDATE &&
			!o.isConflictGuard(oc.WhereClause, relName(x.Relation)) {
			o.problems = append(o.problems, "ON CONFLICT DO UPDATE of users without the guard")
		}
	case *pg_query.MergeStmt:
		skip["relation"] = true
		if isUsers(x.Relation) {
			qual := relName(x.Relation)
			if !o.isGuard(x.JoinCondition, qual) {
				o.problems = append(o.problems, "MERGE into users without the guard in its join condition")
			}
			for _, n := range x.MergeWhenClauses {
				if mw := n.GetMergeWhenClause(); mw != nil && mw.MatchKind == pg_query.MergeMatchKind_MERGE_WHEN_NOT_MATCHED_BY_SOURCE && !o.isGuard(mw.Condition, qual) {
					o.problems = append(o.problems, "MERGE WHEN NOT MATCHED BY SOURCE on users without the guard")
				}
			}
		}
	case *pg_query.LockingClause:
		return // FOR UPDATE OF names aliases
	case *pg_query.RangeVar:
		if isUsers(x) && !(x.Schemaname == "" && slices.Contains(ctes, x.Relname)) {
			o.problems = append(o.problems, fmt.Sprintf("unfenced reference to %s.%s", x.Schemaname, x.Relname))
		}
		return
	}
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind || fd.IsMap() || skip[string(fd.Name())] {
			return true
		}
		if fd.IsList() {
			for i := 0; i < v.List().Len(); i++ {
				o.walk(v.List().Get(i).Message().Interface(), ctes)
			}
		} else {
			o.walk(v.Message().Interface(), ctes)
		}
		return true
	})
}
