package rewrite

import (
	"fmt"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"

	"github.com/dbalproxy/dbalproxy/sqlscope"
)

// rel is one entry of a query level's range table: a name a column reference
// can be qualified with (see package sqlscope).
type rel = sqlscope.Rel[relInfo]

// scope is one query level.
type scope = sqlscope.Scope[relInfo]

// relInfo is what the rewriter keeps about a range-table entry.
type relInfo struct {
	// rules are the column rules of the tables whose columns this name
	// exposes: one for a table, several for a join alias, none for a
	// subquery, function or CTE reference.
	rules []*columnRule
	// fenced is set for a filtered table replaced by a fenced sub-select:
	// column references qualified with its schema lose the schema, and a
	// whole-row reference is cast back to the table's row type.
	fenced bool
	key    tableKey // the fenced table
	// fence is the fence's SELECT, into which simple comparisons of the
	// query level's WHERE clause are copied (see pushDown).
	fence *pg_query.SelectStmt
	// filter is the fenced table's filter (see unfence).
	filter *filter
	// table is set for a reference to a table (fenced or not, also a DML
	// target), which has system columns; joined for one inside a JOIN,
	// whose names an unqualified column does not reach directly (only
	// through the join, which has no system columns).
	table, joined bool
	// renamed is set when the alias has a column list (users AS u(a, b)):
	// the client's names are not the table's.
	renamed bool
	// use records what the statement reads of a fenced table: see
	// finishLevel. For a join alias, inner are the uses of the fenced
	// tables inside the join, which its * and whole row expand too.
	use   *fenceUse
	inner []*fenceUse
}

// fenceUse is what a statement reads of one fenced table besides its
// ordinary columns.
type fenceUse struct {
	// sys are the system columns referenced (ctid, xmin, ...), which the
	// fence's SELECT * does not carry and must select by name.
	sys map[string]bool
	// star is set when *, t.*, a whole-row reference or NATURAL JOIN
	// expands the fence's columns, which must then be the table's.
	star bool
}

// systemColumns are PostgreSQL's system columns: every table has them, no
// sub-select does.
var systemColumns = []string{"tableoid", "ctid", "xmin", "cmin", "xmax", "cmax"}

func isSystemColumn(name string) bool {
	for _, c := range systemColumns {
		if c == name {
			return true
		}
	}
	return false
}

// walker rewrites (when mutable) and checks one statement in a single walk
// over its parse tree, tracking query levels as PostgreSQL resolves names.
// Most nodes are walked generically; those that open a query level, name a
// relation or a column have a case of their own.
type walker struct {
	c       *Compiled
	tables  Tables // the catalog's relations; nil: none
	sc      *scope
	mutable bool // the tree is our own copy
	changed bool
	// aborted is set once the walk fails: levels are left without being
	// finished.
	aborted bool
	// inlinable counts the enclosing query levels whose conditions the
	// planner may push into the level being walked (a sub-select in FROM,
	// a CTE body), and is 1 for statements whose queries are kept for
	// later (CREATE VIEW, CREATE RULE): unfence only works where it is 0.
	inlinable int
}

// abort carries an error out of the recursive walk.
type abort struct{ err error }

func (w *walker) run(root *pg_query.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			a, ok := r.(abort)
			if !ok {
				panic(r)
			}
			err = a.err
		}
	}()
	w.sc = &scope{}
	switch unwrap(root).(type) {
	case *pg_query.SelectStmt, *pg_query.InsertStmt, *pg_query.UpdateStmt, *pg_query.DeleteStmt, *pg_query.MergeStmt,
		*pg_query.ExplainStmt, *pg_query.CopyStmt, *pg_query.DeclareCursorStmt, *pg_query.PrepareStmt, *pg_query.CreateTableAsStmt:
	default:
		w.inlinable = 1
	}
	w.node(root)
	return nil
}

func (w *walker) fail(err error) {
	w.aborted = true
	panic(abort{err})
}

// mutate is called before every change to the tree.
func (w *walker) mutate() {
	if !w.mutable {
		w.fail(errNeedClone)
	}
	w.changed = true
}

// push opens a query level; the function it returns finishes the level
// (see finishLevel) and closes it.
func (w *walker) push() func() {
	saved := w.sc
	w.sc = saved.Child()
	return func() {
		if !w.aborted {
			w.finishLevel()
		}
		w.sc = saved
	}
}

// finishLevel completes the fences of the closing level once every
// reference to them, from this level and the levels inside it, has been
// seen. A fence is `SELECT * FROM table ...`, which has the table's columns
// but not its system columns; those the statement references (u.ctid,
// xmin) are added to its select list under their own names, as row-level
// security leaves them readable. A fence whose columns are also expanded
// (*, u.*, a whole-row reference, NATURAL JOIN) cannot have more columns
// than the table without changing the row the client gets, so such a
// statement is refused.
func (w *walker) finishLevel() {
	for i := range w.sc.Rels {
		r := &w.sc.Rels[i]
		if r.Info.fence == nil || r.Info.use == nil || len(r.Info.use.sys) == 0 {
			continue // not fenced (any more: see unfence), or nothing to add
		}
		var cols []string
		for _, c := range systemColumns {
			if r.Info.use.sys[c] {
				cols = append(cols, c)
			}
		}
		if r.Info.use.star {
			w.fail(denied(r.Info.key.String(), "system column %s of %s cannot be read in a statement that also reads every column of %q (*, %s.*, a whole-row reference or NATURAL JOIN) while a row filter applies: list the columns you need", cols[0], r.Info.key, r.Name, r.Name))
		}
		w.mutate()
		for _, c := range cols {
			r.Info.fence.TargetList = append(r.Info.fence.TargetList,
				pg_query.MakeResTargetNodeWithVal(pg_query.MakeColumnRefNode([]*pg_query.Node{pg_query.MakeStrNode(c)}, -1), -1))
		}
	}
}

// useSystem records a reference to system column name of r.
func (r *relInfo) useSystem(name string) {
	if r.use == nil {
		return
	}
	if r.use.sys == nil {
		r.use.sys = make(map[string]bool)
	}
	r.use.sys[name] = true
}

// useStar records that every column of r is read.
func (r *relInfo) useStar() {
	if r.use != nil {
		r.use.star = true
	}
	for _, u := range r.inner {
		u.star = true
	}
}

// uses returns the fence uses of rels: their own and, for join aliases,
// those inside.
func uses(rels []rel) []*fenceUse {
	var out []*fenceUse
	for _, r := range rels {
		if r.Info.use != nil {
			out = append(out, r.Info.use)
		}
		out = append(out, r.Info.inner...)
	}
	return out
}

// unwrap returns the message inside a Node, or nil.
func unwrap(n *pg_query.Node) proto.Message { return sqlscope.Unwrap(n) }

func (w *walker) nodes(ns []*pg_query.Node) {
	for _, n := range ns {
		w.node(n)
	}
}

// node walks one node.
func (w *walker) node(n *pg_query.Node) {
	if n == nil {
		return
	}
	switch x := n.Node.(type) {
	case nil:
	case *pg_query.Node_String_, *pg_query.Node_Integer, *pg_query.Node_Float,
		*pg_query.Node_Boolean, *pg_query.Node_BitString, *pg_query.Node_AConst,
		*pg_query.Node_TypeName, *pg_query.Node_Alias,
		*pg_query.Node_RoleSpec, *pg_query.Node_AStar, *pg_query.Node_SqlvalueFunction:
		// leaves
	case *pg_query.Node_ParamRef:
		if x.ParamRef.Number < 1 && w.mutable {
			// PostgreSQL rejects it anyway, and Deparse would print "?".
			w.fail(fmt.Errorf("rewrite: there is no parameter $%d", x.ParamRef.Number))
		}
	case *pg_query.Node_LockingClause:
		// FOR UPDATE OF names aliases of its level, not tables.
	case *pg_query.Node_SelectStmt:
		w.selectStmt(x.SelectStmt)
	case *pg_query.Node_InsertStmt:
		w.insertStmt(x.InsertStmt)
	case *pg_query.Node_UpdateStmt:
		w.updateStmt(x.UpdateStmt)
	case *pg_query.Node_DeleteStmt:
		w.deleteStmt(x.DeleteStmt)
	case *pg_query.Node_MergeStmt:
		w.mergeStmt(x.MergeStmt)
	case *pg_query.Node_CopyStmt:
		w.copyStmt(x.CopyStmt)
	case *pg_query.Node_RangeVar:
		w.namedRelation(x.RangeVar)
	case *pg_query.Node_DropStmt:
		w.dropStmt(x.DropStmt)
	case *pg_query.Node_ColumnRef:
		w.columnRef(x.ColumnRef)
		if k, ok := w.wholeRow(x.ColumnRef); ok {
			w.mutate()
			n.Node = wholeRowOf(x.ColumnRef, k).Node
		}
	case *pg_query.Node_AExpr:
		w.node(x.AExpr.Lexpr)
		w.node(x.AExpr.Rexpr)
	case *pg_query.Node_BoolExpr:
		w.nodes(x.BoolExpr.Args)
	case *pg_query.Node_ResTarget:
		// A select-list or RETURNING item.
		rt := x.ResTarget
		w.nodes(rt.Indirection)
		name := outputName(rt.Val)
		w.node(rt.Val)
		if rt.Name == "" && name != "" && outputName(rt.Val) != name {
			// A whole-row reference became an expression PostgreSQL
			// would name "case": keep the name it had.
			rt.Name = name
		}
	case *pg_query.Node_TypeCast:
		w.node(x.TypeCast.Arg)
	case *pg_query.Node_SubLink:
		w.node(x.SubLink.Testexpr)
		w.node(x.SubLink.Subselect)
	case *pg_query.Node_List:
		w.nodes(x.List.Items)
	case *pg_query.Node_SortBy:
		w.node(x.SortBy.Node)
	case *pg_query.Node_NullTest:
		w.node(x.NullTest.Arg)
	default:
		w.children(unwrap(n))
	}
}

// msg walks a message that is not a Node (a field of a specific type).
func (w *walker) msg(m proto.Message) {
	switch x := m.(type) {
	case nil:
	case *pg_query.Node:
		w.node(x)
	case *pg_query.RangeVar:
		w.namedRelation(x)
	case *pg_query.SelectStmt:
		w.selectStmt(x)
	case *pg_query.InsertStmt:
		w.insertStmt(x)
	case *pg_query.UpdateStmt:
		w.updateStmt(x)
	case *pg_query.DeleteStmt:
		w.deleteStmt(x)
	case *pg_query.MergeStmt:
		w.mergeStmt(x)
	case *pg_query.CopyStmt:
		w.copyStmt(x)
	case *pg_query.TypeName, *pg_query.Alias, *pg_query.RoleSpec:
	default:
		w.children(m)
	}
}

// children walks every message-typed field of m.
func (w *walker) children(m proto.Message) { sqlscope.Children(m, w.msg) }

// keyOf is the table a RangeVar names (unqualified: public).
func keyOf(rv *pg_query.RangeVar) tableKey {
	k := tableKey{rv.Schemaname, rv.Relname}
	if k.schema == "" {
		k.schema = "public"
	}
	return k
}

// namedRelation is a relation named outside FROM, USING and DML targets:
// TRUNCATE, LOCK, DDL, VACUUM, GRANT, SELECT INTO's new table. None of these
// can be limited to the rows a filter allows.
func (w *walker) namedRelation(rv *pg_query.RangeVar) {
	k := keyOf(rv)
	if w.c.filters[k] != nil {
		w.fail(denied(k.String(), "this statement may not name %s: the table has a row filter, and the statement cannot be limited to the rows it allows", k))
	}
}

// dropStmt refuses DROP TABLE (VIEW, ...) of a filtered table, whose names
// are lists rather than RangeVars.
func (w *walker) dropStmt(d *pg_query.DropStmt) {
	switch d.RemoveType {
	case pg_query.ObjectType_OBJECT_TABLE, pg_query.ObjectType_OBJECT_VIEW, pg_query.ObjectType_OBJECT_MATVIEW,
		pg_query.ObjectType_OBJECT_FOREIGN_TABLE:
	default:
		return
	}
	for _, o := range d.Objects {
		items := o.GetList().GetItems()
		if len(items) == 0 {
			continue
		}
		rv := &pg_query.RangeVar{Relname: items[len(items)-1].GetString_().GetSval()}
		if len(items) >= 2 {
			rv.Schemaname = items[len(items)-2].GetString_().GetSval()
		}
		w.namedRelation(rv)
	}
}

// with registers a WITH clause's CTE names in the current level and walks
// their queries (see sqlscope.Scope.With).
func (w *walker) with(wc *pg_query.WithClause) {
	w.sc.With(wc, func(cte *pg_query.CommonTableExpr) {
		w.inlinable++ // a CTE referenced once is inlined
		w.node(cte.Ctequery)
		w.inlinable--
	})
}

// lateral runs f with the current level's range table visible (LATERAL)
// or hidden (a plain sub-select in FROM sees outer levels and the CTEs of
// its own level only).
func (w *walker) lateral(isLateral bool, f func()) {
	if isLateral {
		f()
		return
	}
	saved := w.sc
	w.sc = saved.Sibling()
	f()
	w.sc = saved
}

// fromItem walks one FROM, USING or MERGE source item, replaces a filtered
// table by its fence, and adds what the item defines to the current level.
func (w *walker) fromItem(n *pg_query.Node) {
	if n == nil {
		return
	}
	switch x := n.Node.(type) {
	case *pg_query.Node_RangeVar:
		w.fromRangeVar(n, x.RangeVar, nil)
	case *pg_query.Node_RangeTableSample:
		ts := x.RangeTableSample
		w.nodes(ts.Args)
		w.node(ts.Repeatable)
		if rv := ts.Relation.GetRangeVar(); rv != nil {
			w.fromRangeVar(n, rv, ts)
		} else {
			w.fromItem(ts.Relation)
		}
	case *pg_query.Node_JoinExpr:
		j := x.JoinExpr
		start := len(w.sc.Rels)
		w.fromItem(j.Larg)
		w.fromItem(j.Rarg)
		inside := w.sc.Rels[start:]
		if j.IsNatural {
			// NATURAL compares every column the two sides share.
			for _, u := range uses(inside) {
				u.star = true
			}
			for _, r := range inside {
				for _, cr := range r.Info.rules {
					if len(cr.readList) > 0 {
						w.fail(&ColumnError{Table: cr.table, Column: cr.readList[0], Implicit: true})
					}
				}
			}
		}
		for _, u := range j.UsingClause {
			col := u.GetString_().GetSval()
			for _, r := range inside {
				for _, cr := range r.Info.rules {
					if cr.read[col] {
						w.fail(&ColumnError{Table: cr.table, Column: col})
					}
				}
			}
		}
		var rules []*columnRule
		for _, r := range inside {
			rules = append(rules, r.Info.rules...)
		}
		inner := uses(inside)
		w.node(j.Quals)
		// Past its ON clause, a join's members are reached by unqualified
		// names only through the join.
		for i := range inside {
			inside[i].Info.joined = true
		}
		if a := j.JoinUsingAlias; a != nil && a.Aliasname != "" {
			w.sc.Rels = append(w.sc.Rels, rel{Name: a.Aliasname, Aliased: true, Info: relInfo{rules: rules, inner: inner}})
		}
		if a := j.Alias; a != nil && a.Aliasname != "" {
			w.sc.Rels = append(w.sc.Rels, rel{Name: a.Aliasname, Aliased: true, Info: relInfo{rules: rules, inner: inner}})
		}
	case *pg_query.Node_RangeSubselect:
		rs := x.RangeSubselect
		w.inlinable++ // the planner pulls it up, or pushes conditions into it
		w.lateral(rs.Lateral, func() { w.node(rs.Subquery) })
		w.inlinable--
		w.sc.Rels = append(w.sc.Rels, rel{Name: rs.Alias.GetAliasname(), Aliased: true})
	case *pg_query.Node_RangeFunction:
		// Functions in FROM may refer to earlier FROM items even without
		// LATERAL.
		rf := x.RangeFunction
		w.nodes(rf.Functions)
		w.sc.Rels = append(w.sc.Rels, rel{Name: sqlscope.FunctionName(rf), Aliased: true})
	case *pg_query.Node_RangeTableFunc:
		w.children(x.RangeTableFunc)
		w.sc.Rels = append(w.sc.Rels, rel{Name: x.RangeTableFunc.Alias.GetAliasname(), Aliased: true})
	case *pg_query.Node_JsonTable:
		w.children(x.JsonTable)
		w.sc.Rels = append(w.sc.Rels, rel{Name: x.JsonTable.Alias.GetAliasname(), Aliased: true})
	default:
		w.node(n)
	}
}

// fromRangeVar adds a relation of a FROM list: a CTE reference when an
// unqualified name matches a CTE in scope, else a table, which is replaced by
// its fence (n's content changes) when it has a filter. sample is the
// TABLESAMPLE clause around rv, if any; it moves into the fence.
func (w *walker) fromRangeVar(n *pg_query.Node, rv *pg_query.RangeVar, sample *pg_query.RangeTableSample) {
	r := sqlscope.RelOf[relInfo](rv)
	if w.sc.IsCTERef(rv) {
		w.sc.Rels = append(w.sc.Rels, r)
		return
	}
	k := keyOf(rv)
	r.Info.table = true
	r.Info.renamed = len(rv.Alias.GetColnames()) > 0
	if cr := w.c.columns[k]; cr != nil {
		r.Info.rules = []*columnRule{cr}
	}
	if f := w.c.filters[k]; f != nil {
		w.mutate()
		alias := rv.Alias
		if alias == nil || alias.Aliasname == "" {
			alias = &pg_query.Alias{Aliasname: rv.Relname}
		}
		var from *pg_query.Node
		inner := fenceRangeVar(f, rv)
		if sample != nil {
			from = &pg_query.Node{Node: &pg_query.Node_RangeTableSample{RangeTableSample: &pg_query.RangeTableSample{
				Relation: inner, Method: sample.Method, Args: sample.Args, Repeatable: sample.Repeatable, Location: -1,
			}}}
		} else {
			from = inner
		}
		sub := fenceSelect(f, from)
		n.Node = &pg_query.Node_RangeSubselect{RangeSubselect: &pg_query.RangeSubselect{
			Subquery: sub,
			Alias:    alias,
		}}
		r.Info.fenced, r.Info.key, r.Info.fence, r.Info.filter, r.Info.use = true, k, sub.GetSelectStmt(), f, &fenceUse{}
	}
	w.sc.Rels = append(w.sc.Rels, r)
}

// fenceRangeVar is the table reference inside a fence: schema-qualified,
// without alias, keeping ONLY and the catalog.
func fenceRangeVar(f *filter, rv *pg_query.RangeVar) *pg_query.Node {
	return &pg_query.Node{Node: &pg_query.Node_RangeVar{RangeVar: &pg_query.RangeVar{
		Catalogname:    rv.Catalogname,
		Schemaname:     f.key.schema,
		Relname:        f.key.name,
		Inh:            rv.Inh,
		Relpersistence: rv.Relpersistence,
		Location:       -1,
	}}}
}

// fenceSelect is `SELECT * FROM <from> WHERE <filter> OFFSET 0`. OFFSET 0
// keeps the planner from pulling the sub-select up or pushing the outer
// query's conditions into it.
func fenceSelect(f *filter, from *pg_query.Node) *pg_query.Node {
	return &pg_query.Node{Node: &pg_query.Node_SelectStmt{SelectStmt: &pg_query.SelectStmt{
		TargetList:  []*pg_query.Node{starTarget()},
		FromClause:  []*pg_query.Node{from},
		WhereClause: f.instance(f.key.name),
		LimitOffset: pg_query.MakeAConstIntNode(0, -1),
		LimitOption: pg_query.LimitOption_LIMIT_OPTION_COUNT,
		Op:          pg_query.SetOperation_SETOP_NONE,
	}}}
}

func starTarget() *pg_query.Node {
	return pg_query.MakeResTargetNodeWithVal(pg_query.MakeColumnRefNode([]*pg_query.Node{pg_query.MakeAStarNode()}, -1), -1)
}

// guard is the WHERE clause of an UPDATE or DELETE of a filtered target
// (and of ON CONFLICT DO UPDATE): `(<filter>) AND CASE WHEN (<filter>) THEN
// (<client>) ELSE false END`, so the client's condition is never evaluated
// on a hidden row; just the filter when the client has none.
func (w *walker) guard(f *filter, qual string, client *pg_query.Node) *pg_query.Node {
	w.mutate()
	if client == nil {
		return f.instance(qual)
	}
	// Simple comparisons of the target's columns with constants also stand
	// outside the CASE, where the planner can use them for an index scan.
	args := conjuncts(f.instance(qual))
	single := len(w.sc.Rels) == 1
	for _, c := range conjuncts(client) {
		if col := simpleComparison(c); col != nil && ownColumn(col, qual, single) {
			args = append(args, proto.Clone(c).(*pg_query.Node))
		}
	}
	caseExpr := &pg_query.Node{Node: &pg_query.Node_CaseExpr{CaseExpr: &pg_query.CaseExpr{
		Args:      []*pg_query.Node{pg_query.MakeCaseWhenNode(f.instance(qual), client, -1)},
		Defresult: &pg_query.Node{Node: &pg_query.Node_AConst{AConst: &pg_query.A_Const{Val: &pg_query.A_Const_Boolval{Boolval: &pg_query.Boolean{}}, Location: -1}}},
		Location:  -1,
	}}}
	return pg_query.MakeBoolExprNode(pg_query.BoolExprType_AND_EXPR, append(args, caseExpr), -1)
}

// pushDown copies the simple comparisons of a query level's WHERE clause
// (a column of a fenced table against a constant or parameter, e.g.
// pgbench's aid = $1) into that table's fence, where the planner can use
// them for an index scan: the fence keeps every other client condition out,
// as a security_barrier view does, but lets these in, as PostgreSQL lets
// leakproof conditions through a barrier. Such a comparison reveals nothing
// when it is evaluated on a hidden row (it raises no error that shows the
// row's value and calls no function of the client's), and the WHERE clause
// still holds the original, so the result is the same.
func (w *walker) pushDown(where *pg_query.Node) {
	if where == nil {
		return
	}
	single := len(w.sc.Rels) == 1
	for i := range w.sc.Rels {
		r := &w.sc.Rels[i]
		if r.Info.fence == nil || r.Info.renamed {
			// With a column list (users AS u(a, id)) the client's names
			// are not the table's: u.id is its second column.
			continue
		}
		for _, c := range conjuncts(where) {
			col := simpleComparison(c)
			if col == nil || !ownColumn(col, r.Name, single) {
				continue
			}
			cp := proto.Clone(c).(*pg_query.Node)
			requalify(cp, r.Info.key.name)
			// One flat AND, as PostgreSQL's parser would build it.
			if b := r.Info.fence.WhereClause.GetBoolExpr(); b != nil && b.Boolop == pg_query.BoolExprType_AND_EXPR {
				b.Args = append(b.Args, cp)
			} else {
				r.Info.fence.WhereClause = pg_query.MakeBoolExprNode(pg_query.BoolExprType_AND_EXPR, []*pg_query.Node{r.Info.fence.WhereClause, cp}, -1)
			}
		}
	}
}

// unfence puts a filtered table back in place of its fence when the fence
// keeps nothing out: the query level reads that one table and its WHERE
// clause is only simple comparisons of the table's columns (all of them
// copied into the fence by pushDown). `SELECT a FROM t WHERE id = 1` then
// becomes `SELECT a FROM s.t t WHERE <filter> AND id = 1` rather than a
// sub-select with OFFSET 0, which the server plans in about a third more
// time. Every condition of the client's may be evaluated on a hidden row
// either way (inside the fence, beside the filter), so nothing is revealed
// that the fence would have kept; the select list, GROUP BY, HAVING,
// windows, ORDER BY and LIMIT only ever see rows that passed the WHERE
// clause. Only where no outer level's conditions can reach this one: a
// sub-select in FROM or a CTE body is pulled up into the query around it,
// whose conditions could then run beside the filter, so there the fence
// stays.
func (w *walker) unfence(s *pg_query.SelectStmt) {
	if w.inlinable > 0 || len(s.FromClause) != 1 || len(w.sc.Rels) != 1 {
		return
	}
	r := &w.sc.Rels[0]
	rs := s.FromClause[0].GetRangeSubselect()
	if r.Info.fence == nil || r.Info.filter == nil || rs == nil || rs.Subquery.GetSelectStmt() != r.Info.fence ||
		len(r.Info.fence.FromClause) != 1 || r.Info.fence.FromClause[0].GetRangeVar() == nil {
		return // not fenced here, or fenced with its TABLESAMPLE
	}
	if r.Info.renamed {
		return // u(a, b) renames the columns the filter and the client's conditions name
	}
	client := conjuncts(s.WhereClause)
	for _, c := range client {
		if col := simpleComparison(c); col == nil || !ownColumn(col, r.Name, true) {
			return
		}
	}
	rv := r.Info.fence.FromClause[0].GetRangeVar()
	rv.Alias = rs.Alias
	s.FromClause[0] = r.Info.fence.FromClause[0]
	filter := r.Info.filter.instance(r.Name)
	if len(client) == 0 {
		s.WhereClause = filter
	} else {
		s.WhereClause = pg_query.MakeBoolExprNode(pg_query.BoolExprType_AND_EXPR, append(conjuncts(filter), client...), -1)
	}
	r.Info.fence = nil
}

// conjuncts returns the top-level AND terms of e.
func conjuncts(e *pg_query.Node) []*pg_query.Node {
	if b := e.GetBoolExpr(); b != nil && b.Boolop == pg_query.BoolExprType_AND_EXPR {
		var out []*pg_query.Node
		for _, a := range b.Args {
			out = append(out, conjuncts(a)...)
		}
		return out
	}
	if e == nil {
		return nil
	}
	return []*pg_query.Node{e}
}

// simpleOperators are the comparisons simpleComparison accepts: strict
// (NULL in, NULL out) and, for built-in types, leakproof.
var simpleOperators = map[string]bool{"=": true, "<>": true, "<": true, "<=": true, ">": true, ">=": true}

// simpleComparison returns the column of `column op constant` (either way
// round, op one of simpleOperators unqualified, the constant a literal or a
// parameter, possibly cast), or `column IN (constants)`; nil for anything
// else.
func simpleComparison(e *pg_query.Node) *pg_query.ColumnRef {
	a := e.GetAExpr()
	if a == nil || len(a.Name) != 1 {
		return nil
	}
	op := a.Name[0].GetString_().GetSval()
	switch a.Kind {
	case pg_query.A_Expr_Kind_AEXPR_OP:
		if !simpleOperators[op] {
			return nil
		}
		if c := a.Lexpr.GetColumnRef(); c != nil && constantish(a.Rexpr) {
			return c
		}
		if c := a.Rexpr.GetColumnRef(); c != nil && constantish(a.Lexpr) {
			return c
		}
	case pg_query.A_Expr_Kind_AEXPR_IN:
		c := a.Lexpr.GetColumnRef()
		items := a.Rexpr.GetList().GetItems()
		if c == nil || op != "=" || len(items) == 0 {
			return nil
		}
		for _, it := range items {
			if !constantish(it) {
				return nil
			}
		}
		return c
	}
	return nil
}

// constantish reports whether e is a literal or a parameter, possibly cast
// to a type without modifiers.
func constantish(e *pg_query.Node) bool {
	if tc := e.GetTypeCast(); tc != nil {
		if tc.TypeName == nil || len(tc.TypeName.Typmods) > 0 || len(tc.TypeName.ArrayBounds) > 0 {
			return false
		}
		e = tc.Arg
	}
	if c := e.GetAConst(); c != nil {
		return !c.Isnull
	}
	return e.GetParamRef() != nil
}

// ownColumn reports whether c names a column of the relation known as qual
// at this level: qualified with it, or unqualified when it is the level's
// only relation.
func ownColumn(c *pg_query.ColumnRef, qual string, single bool) bool {
	for _, f := range c.Fields {
		if f.GetString_() == nil {
			return false
		}
	}
	switch len(c.Fields) {
	case 1:
		return single
	case 2:
		return c.Fields[0].GetString_().GetSval() == qual
	}
	return false
}

// requalify makes a qualified column reference of a simple comparison name
// the table inside its fence. An unqualified one stays so: inside the fence
// it resolves as it did outside (the table's column, else the same outer
// query's).
func requalify(e *pg_query.Node, table string) {
	a := e.GetAExpr()
	for _, side := range []*pg_query.Node{a.Lexpr, a.Rexpr} {
		if c := side.GetColumnRef(); c != nil && len(c.Fields) > 1 {
			c.Fields = []*pg_query.Node{pg_query.MakeStrNode(table), c.Fields[len(c.Fields)-1]}
		}
	}
}

// selectStmt walks a SELECT, VALUES or set operation as a new query level.
func (w *walker) selectStmt(s *pg_query.SelectStmt) {
	if s == nil {
		return
	}
	defer w.push()()
	w.with(s.WithClause)
	if sqlscope.IsSetOperation(s) {
		w.selectStmt(s.Larg)
		w.selectStmt(s.Rarg)
		w.sc.Opaque = true
		w.nodes(s.SortClause)
		w.node(s.LimitOffset)
		w.node(s.LimitCount)
		if s.IntoClause != nil {
			w.children(s.IntoClause)
		}
		return
	}
	w.nodes(s.ValuesLists)
	for _, f := range s.FromClause {
		w.fromItem(f)
	}
	w.nodes(s.TargetList)
	w.node(s.WhereClause)
	w.pushDown(s.WhereClause)
	w.unfence(s)
	// GROUP BY prefers input columns to output names: no outputs here.
	w.nodes(s.GroupClause)
	w.node(s.HavingClause)
	w.nodes(s.WindowClause)
	w.sc.SetOutputs(s.TargetList)
	w.sc.UseOutputs = true
	w.nodes(s.SortClause)
	w.nodes(s.DistinctClause)
	w.sc.UseOutputs = false
	w.node(s.LimitOffset)
	w.node(s.LimitCount)
	if s.IntoClause != nil {
		w.children(s.IntoClause)
	}
}

// targetRel is the rel of a DML target, with its filter if any.
func (w *walker) targetRel(rv *pg_query.RangeVar) (rel, *filter) {
	k := keyOf(rv)
	r := sqlscope.RelOf[relInfo](rv)
	r.Info.table = true
	if cr := w.c.columns[k]; cr != nil {
		r.Info.rules = []*columnRule{cr}
	}
	return r, w.c.filters[k]
}

// setTargets walks the value side of SET lists and INSERT column lists
// (the column names are writes, checked from the parser's facts).
func (w *walker) setTargets(targets []*pg_query.Node) {
	for _, t := range targets {
		rt := t.GetResTarget()
		if rt == nil {
			w.node(t)
			continue
		}
		w.nodes(rt.Indirection)
		w.node(rt.Val)
	}
}

func (w *walker) insertStmt(s *pg_query.InsertStmt) {
	defer w.push()()
	w.with(s.WithClause)
	var chk *filter
	width := -1 // columns the source gives, for a checked INSERT without a column list
	if s.Relation != nil {
		chk = w.c.checks[keyOf(s.Relation)]
		if chk != nil && len(s.Cols) == 0 {
			// Before the walk, which may replace a table of the source by
			// a filtered sub-select.
			width = w.sourceWidth(s.SelectStmt.GetSelectStmt(), s.WithClause)
		}
	}
	// The source does not see the target.
	w.node(s.SelectStmt)
	if s.Relation == nil {
		return
	}
	r, f := w.targetRel(s.Relation)
	w.sc.Rels = append(w.sc.Rels, r)
	w.setTargets(s.Cols)
	if oc := s.OnConflictClause; oc != nil {
		n := len(w.sc.Rels)
		w.sc.Rels = append(w.sc.Rels, rel{Name: "excluded", Aliased: true, QualifiedOnly: true})
		if inf := oc.Infer; inf != nil {
			for _, e := range inf.IndexElems {
				ie := e.GetIndexElem()
				if ie == nil {
					w.node(e)
					continue
				}
				if ie.Name != "" {
					for _, cr := range r.Info.rules {
						if cr.read[ie.Name] {
							w.fail(&ColumnError{Table: cr.table, Column: ie.Name})
						}
					}
				}
				w.node(ie.Expr)
			}
			w.node(inf.WhereClause)
		}
		w.setTargets(oc.TargetList)
		w.node(oc.WhereClause)
		if f != nil && oc.Action == pg_query.OnConflictAction_ONCONFLICT_UPDATE {
			// The existing row must be visible to be updated; a hidden one
			// is an error, as with row-level security.
			oc.WhereClause = w.conflictGuard(f, r.Name, oc.WhereClause)
		}
		if chk != nil && oc.Action == pg_query.OnConflictAction_ONCONFLICT_UPDATE {
			// The row as DO UPDATE leaves it must pass the check.
			subst := w.setSubstitutions(chk, s.Relation, oc.TargetList)
			w.mutate()
			oc.WhereClause = guardedCheck(oc.WhereClause, checkCase(chk, chk.checkInstance(r.Name, subst)))
		}
		w.sc.Rels = w.sc.Rels[:n]
	}
	w.nodes(s.ReturningList)
	if chk != nil {
		w.checkInsert(chk, s, width)
	}
}

func (w *walker) updateStmt(s *pg_query.UpdateStmt) {
	defer w.push()()
	w.with(s.WithClause)
	if s.Relation == nil {
		return
	}
	r, f := w.targetRel(s.Relation)
	w.sc.Rels = append(w.sc.Rels, r)
	for _, item := range s.FromClause {
		w.fromItem(item)
	}
	w.setTargets(s.TargetList)
	w.node(s.WhereClause)
	w.nodes(s.ReturningList)
	if f != nil {
		w.guardTarget(f, r.Name, &s.WhereClause)
	}
	if chk := w.c.checks[keyOf(s.Relation)]; chk != nil {
		w.checkUpdate(chk, r.Name, s.Relation, s.TargetList, &s.WhereClause)
	}
}

func (w *walker) deleteStmt(s *pg_query.DeleteStmt) {
	defer w.push()()
	w.with(s.WithClause)
	if s.Relation == nil {
		return
	}
	r, f := w.targetRel(s.Relation)
	w.sc.Rels = append(w.sc.Rels, r)
	for _, item := range s.UsingClause {
		w.fromItem(item)
	}
	w.node(s.WhereClause)
	w.nodes(s.ReturningList)
	if f != nil {
		w.guardTarget(f, r.Name, &s.WhereClause)
	}
}

// guardTarget replaces the WHERE clause of an UPDATE or DELETE of a filtered
// table by its guard.
func (w *walker) guardTarget(f *filter, qual string, where **pg_query.Node) {
	if (*where).GetCurrentOfExpr() != nil {
		w.fail(denied(f.key.String(), "WHERE CURRENT OF is not allowed on %s: the table has a row filter", f.key))
	}
	*where = w.guard(f, qual, *where)
}

func (w *walker) mergeStmt(s *pg_query.MergeStmt) {
	defer w.push()()
	w.with(s.WithClause)
	if s.Relation == nil {
		return
	}
	r, f := w.targetRel(s.Relation)
	chk := w.c.checks[keyOf(s.Relation)]
	w.sc.Rels = append(w.sc.Rels, r)
	w.fromItem(s.SourceRelation)
	w.node(s.JoinCondition)
	for _, n := range s.MergeWhenClauses {
		mw := n.GetMergeWhenClause()
		if mw == nil {
			w.node(n)
			continue
		}
		w.node(mw.Condition)
		w.setTargets(mw.TargetList)
		w.nodes(mw.Values)
	}
	w.nodes(s.ReturningList)
	if f != nil {
		// Only visible target rows match; a hidden one is "not matched by
		// target" (an INSERT of its key then fails on the key, as under
		// row-level security) and never "not matched by source".
		s.JoinCondition = w.guard(f, r.Name, s.JoinCondition)
		for _, n := range s.MergeWhenClauses {
			if mw := n.GetMergeWhenClause(); mw != nil && mw.MatchKind == pg_query.MergeMatchKind_MERGE_WHEN_NOT_MATCHED_BY_SOURCE {
				mw.Condition = w.guard(f, r.Name, mw.Condition)
			}
		}
	}
	if chk != nil {
		for _, n := range s.MergeWhenClauses {
			if mw := n.GetMergeWhenClause(); mw != nil {
				w.checkMergeAction(chk, r.Name, s.Relation, mw)
			}
		}
	}
}

func (w *walker) copyStmt(s *pg_query.CopyStmt) {
	w.node(s.Query)
	if s.Relation == nil {
		return
	}
	k := keyOf(s.Relation)
	var cols []string
	for _, a := range s.Attlist {
		cols = append(cols, a.GetString_().GetSval())
	}
	if cr := w.c.columns[k]; cr != nil && !s.IsFrom {
		if len(cols) == 0 && len(cr.readList) > 0 {
			w.fail(&ColumnError{Table: cr.table, Column: cr.readList[0], Implicit: true})
		}
		for _, c := range cols {
			if cr.read[c] {
				w.fail(&ColumnError{Table: cr.table, Column: c})
			}
		}
	}
	if s.WhereClause != nil {
		// COPY FROM ... WHERE tests the incoming rows, not the table's.
		restore := w.push()
		w.sc.Rels = append(w.sc.Rels, rel{Name: s.Relation.Relname})
		w.node(s.WhereClause)
		restore()
	}
	if chk := w.c.checks[k]; chk != nil && s.IsFrom {
		w.fail(denied(k.String(), "COPY ... FROM into %s is not allowed: the table has a check, which COPY cannot be held to (use INSERT)", k))
	}
	f := w.c.filters[k]
	if f == nil {
		return
	}
	if s.IsFrom {
		w.fail(denied(k.String(), "COPY ... FROM into %s is not allowed: the table has a row filter", k))
	}
	w.mutate()
	targets := []*pg_query.Node{starTarget()}
	if len(cols) > 0 {
		targets = targets[:0]
		for _, c := range cols {
			targets = append(targets, pg_query.MakeResTargetNodeWithVal(pg_query.MakeColumnRefNode([]*pg_query.Node{pg_query.MakeStrNode(c)}, -1), -1))
		}
	}
	fence := &pg_query.Node{Node: &pg_query.Node_RangeSubselect{RangeSubselect: &pg_query.RangeSubselect{
		Subquery: fenceSelect(f, fenceRangeVar(f, s.Relation)),
		Alias:    &pg_query.Alias{Aliasname: s.Relation.Relname},
	}}}
	s.Query = &pg_query.Node{Node: &pg_query.Node_SelectStmt{SelectStmt: &pg_query.SelectStmt{
		TargetList:  targets,
		FromClause:  []*pg_query.Node{fence},
		LimitOption: pg_query.LimitOption_LIMIT_OPTION_DEFAULT,
		Op:          pg_query.SetOperation_SETOP_NONE,
	}}}
	s.Relation = nil
	s.Attlist = nil
}

// wholeRowOf is the fenced table's row for the whole-row reference c to
// its fence: `CASE WHEN c IS DISTINCT FROM NULL THEN c::schema.table END`.
// The fence's whole row is an anonymous record; the client asked for the
// table's row type. A plain cast would not do: PostgreSQL turns a cast of a
// record to a table's type into ROW(c.col1, c.col2, ...), which is a row
// of NULLs, not NULL, when an outer join null-extends the fence, where the
// table's own whole row is NULL.
func wholeRowOf(c *pg_query.ColumnRef, k tableKey) *pg_query.Node {
	ref := func() *pg_query.Node {
		return &pg_query.Node{Node: &pg_query.Node_ColumnRef{ColumnRef: proto.Clone(c).(*pg_query.ColumnRef)}}
	}
	notNull := &pg_query.Node{Node: &pg_query.Node_AExpr{AExpr: &pg_query.A_Expr{
		Kind:     pg_query.A_Expr_Kind_AEXPR_DISTINCT,
		Name:     []*pg_query.Node{pg_query.MakeStrNode("=")},
		Lexpr:    ref(),
		Rexpr:    &pg_query.Node{Node: &pg_query.Node_AConst{AConst: &pg_query.A_Const{Isnull: true, Location: -1}}},
		Location: -1,
	}}}
	cast := &pg_query.Node{Node: &pg_query.Node_TypeCast{TypeCast: &pg_query.TypeCast{
		Arg: ref(),
		TypeName: &pg_query.TypeName{
			Names:   []*pg_query.Node{pg_query.MakeStrNode(k.schema), pg_query.MakeStrNode(k.name)},
			Typemod: -1, Location: -1,
		},
		Location: -1,
	}}}
	return &pg_query.Node{Node: &pg_query.Node_CaseExpr{CaseExpr: &pg_query.CaseExpr{
		Args:     []*pg_query.Node{pg_query.MakeCaseWhenNode(notNull, cast, -1)},
		Location: -1,
	}}}
}

// outputName is the name PostgreSQL gives a select-list item without AS
// when it is a column reference, possibly cast (its last name), else "".
func outputName(e *pg_query.Node) string {
	for e.GetTypeCast() != nil {
		e = e.GetTypeCast().Arg
	}
	if c := e.GetColumnRef(); c != nil && len(c.Fields) > 0 {
		return c.Fields[len(c.Fields)-1].GetString_().GetSval()
	}
	return ""
}

// wholeRow reports whether c is a whole-row reference (a bare name) to a
// fenced table, and which: the nearest relation of that name, as
// PostgreSQL resolves it when no column has the name. It records that the
// relation's columns are all read (see finishLevel).
func (w *walker) wholeRow(c *pg_query.ColumnRef) (tableKey, bool) {
	if len(c.Fields) != 1 || !w.mutable {
		return tableKey{}, false
	}
	name := c.Fields[0].GetString_().GetSval()
	if name == "" {
		return tableKey{}, false
	}
	if r := w.sc.WholeRow(name); r != nil {
		r.Info.useStar()
		return r.Info.key, r.Info.fenced
	}
	return tableKey{}, false
}

// columnRef checks a column reference against the column rules and, for a
// reference qualified with the schema of a fenced table, drops the schema
// (the fence's alias is a plain name).
func (w *walker) columnRef(c *pg_query.ColumnRef) {
	names, star := sqlscope.ColumnRefNames(c)
	switch {
	case star && len(names) == 0:
		w.starAll()
	case len(names) == 1 && !star:
		w.unqualified(names[0])
	case star:
		if r, take := w.sc.Qualified(names, true); r != nil {
			checkStar(r)
			r.Info.useStar()
			w.dropSchema(c, r, take)
		}
	default:
		r, take := w.sc.Qualified(names, false)
		if r == nil {
			// Not a relation: a field of a composite column, (a).b.
			w.unqualified(names[0])
			return
		}
		if take == len(names)-1 && isSystemColumn(names[take]) {
			r.Info.useSystem(names[take])
		}
		for _, cr := range r.Info.rules {
			if cr.read[names[take]] {
				w.fail(&ColumnError{Table: cr.table, Column: names[take]})
			}
		}
		w.dropSchema(c, r, take)
	}
}

// dropSchema turns schema.table.col (or catalog.schema.table.col) into
// table.col when table is fenced.
func (w *walker) dropSchema(c *pg_query.ColumnRef, r *rel, qualifierLen int) {
	if r.Info.fenced && qualifierLen > 1 {
		w.mutate()
		c.Fields = c.Fields[qualifierLen-1:]
	}
}

func checkStar(r *rel) {
	for _, cr := range r.Info.rules {
		if len(cr.readList) > 0 {
			panic(abort{&ColumnError{Table: cr.table, Column: cr.readList[0], Implicit: true}})
		}
	}
}

// starAll handles an unqualified *: every relation of the nearest level that
// has any.
func (w *walker) starAll() {
	s := w.sc.Nearest()
	if s == nil {
		return
	}
	for i := range s.Rels {
		if !s.Rels[i].QualifiedOnly {
			checkStar(&s.Rels[i])
			s.Rels[i].Info.useStar()
		}
	}
}

// unqualified checks a bare name. Without the other tables' columns it
// cannot know which relation owns it, so it is refused if any relation in
// reach is a protected table with that column forbidden, or is named so
// (a whole-row reference) and forbids any column.
func (w *walker) unqualified(name string) {
	if w.sc.IsOutput(name) {
		return
	}
	if isSystemColumn(name) {
		w.unqualifiedSystem(name)
	}
	first := true
	for s := range w.sc.Reach {
		candidates := 0
		for i := range s.Rels {
			if !s.Rels[i].QualifiedOnly {
				candidates++
			}
		}
		for i := range s.Rels {
			r := &s.Rels[i]
			if r.QualifiedOnly {
				continue
			}
			for _, cr := range r.Info.rules {
				if r.Name == name && len(cr.readList) > 0 {
					w.fail(&ColumnError{Table: cr.table, Column: cr.readList[0], Implicit: true})
				}
				if cr.read[name] {
					w.fail(&ColumnError{Table: cr.table, Column: name, Ambiguous: !first || candidates > 1})
				}
			}
		}
		first = false
	}
}

// unqualifiedSystem records a bare system column name for the table it
// names: the one table reference of the nearest level that has table
// references visible to bare names (several: PostgreSQL finds the name
// ambiguous).
func (w *walker) unqualifiedSystem(name string) {
	for s := range w.sc.Reach {
		var found *rel
		n := 0
		for i := range s.Rels {
			if r := &s.Rels[i]; r.Info.table && !r.Info.joined && !r.QualifiedOnly {
				found = r
				n++
			}
		}
		if n == 1 {
			found.Info.useSystem(name)
		}
		if n > 0 {
			return
		}
	}
}
