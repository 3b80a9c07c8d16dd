package rewrite

import (
	"sort"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// CheckViolationMarker starts the text of the error a rewritten statement
// raises when a row it writes fails the table's check. The proxy recognises
// it in the backend's error (SQLSTATE 22P02, from the failing cast that
// carries it) and sends the client 42501 instead. It is followed by
// "<schema>.<table>: ".
const CheckViolationMarker = "dbalproxy: check violation on "

// valuesAlias names the sub-select that an INSERT's rows are checked in.
const valuesAlias = "dbal_v"

// checkColumns returns the sorted column names a compiled predicate reads
// (its column references are single unqualified names).
func checkColumns(expr *pg_query.Node) []string {
	seen := map[string]bool{}
	var visit func(n *pg_query.Node)
	visit = func(n *pg_query.Node) {
		if n == nil {
			return
		}
		if c := n.GetColumnRef(); c != nil {
			if len(c.Fields) == 1 {
				seen[c.Fields[0].GetString_().GetSval()] = true
			}
			return
		}
		for _, k := range exprChildren(n) {
			visit(k)
		}
	}
	visit(expr)
	cols := make([]string, 0, len(seen))
	for c := range seen {
		cols = append(cols, c)
	}
	sort.Strings(cols)
	return cols
}

// checkInstance returns a copy of the check predicate for a row in which the
// columns in subst take the given expressions (the new values of an UPDATE's
// SET list) and every other column is qualified with qual.
func (f *filter) checkInstance(qual string, subst map[string]*pg_query.Node) *pg_query.Node {
	n := proto.Clone(f.expr).(*pg_query.Node)
	var visit func(n *pg_query.Node)
	visit = func(n *pg_query.Node) {
		if n == nil {
			return
		}
		if c := n.GetColumnRef(); c != nil {
			if e, ok := subst[c.Fields[0].GetString_().GetSval()]; ok {
				n.Node = proto.Clone(e).(*pg_query.Node).Node
				return
			}
			c.Fields = append([]*pg_query.Node{pg_query.MakeStrNode(qual)}, c.Fields...)
			return
		}
		for _, k := range exprChildren(n) {
			visit(k)
		}
	}
	visit(n)
	return n
}

// checkCase is
//
//	CASE WHEN <pred> THEN true
//	ELSE ('dbalproxy: check violation on <table>: ' || pg_catalog.random()::text)::pg_catalog.int4 > 0 END
//
// true for a row that satisfies the check, an error (invalid integer, 22P02,
// carrying the marker) for one that does not or for which the check is NULL,
// as PostgreSQL's WITH CHECK treats NULL. random() keeps the failing cast from
// being folded into a plan-time error: it runs only when a row reaches it.
func checkCase(f *filter, pred *pg_query.Node) *pg_query.Node {
	return &pg_query.Node{Node: &pg_query.Node_CaseExpr{CaseExpr: &pg_query.CaseExpr{
		Args:      []*pg_query.Node{pg_query.MakeCaseWhenNode(pred, boolConst(true), -1)},
		Defresult: violation(f.key),
		Location:  -1,
	}}}
}

// violation is the boolean expression that raises the check-violation error
// for table k when it is evaluated.
func violation(k tableKey) *pg_query.Node {
	msg := &pg_query.Node{Node: &pg_query.Node_AExpr{AExpr: &pg_query.A_Expr{
		Kind:     pg_query.A_Expr_Kind_AEXPR_OP,
		Name:     []*pg_query.Node{pg_query.MakeStrNode("||")},
		Lexpr:    pg_query.MakeAConstStrNode(CheckViolationMarker+k.String()+": ", -1),
		Rexpr:    typeCast(funcCall("random"), "text"),
		Location: -1,
	}}}
	return &pg_query.Node{Node: &pg_query.Node_AExpr{AExpr: &pg_query.A_Expr{
		Kind:     pg_query.A_Expr_Kind_AEXPR_OP,
		Name:     []*pg_query.Node{pg_query.MakeStrNode(">")},
		Lexpr:    typeCast(msg, "int4"),
		Rexpr:    pg_query.MakeAConstIntNode(0, -1),
		Location: -1,
	}}}
}

// conflictGuard is the DO UPDATE WHERE clause of an upsert into a filtered
// table: `CASE WHEN <filter> THEN <client's WHERE, or true> ELSE <violation>
// END`. A conflicting row the principal may not see makes the statement fail,
// as row-level security does, instead of being skipped or updated; the
// client's condition is never evaluated on it.
func (w *walker) conflictGuard(f *filter, qual string, client *pg_query.Node) *pg_query.Node {
	w.mutate()
	if client == nil {
		client = boolConst(true)
	}
	return &pg_query.Node{Node: &pg_query.Node_CaseExpr{CaseExpr: &pg_query.CaseExpr{
		Args:      []*pg_query.Node{pg_query.MakeCaseWhenNode(f.instance(qual), client, -1)},
		Defresult: violation(f.key),
		Location:  -1,
	}}}
}

// guardedCheck is the condition that adds a check to a clause whose rows are
// about to be written: `<where> AND CASE WHEN <where> THEN <check> ELSE false
// END`, so the check is evaluated only for rows the statement really writes
// (the first conjunct keeps the client's WHERE usable for index scans), or
// just the check when there is no WHERE.
func guardedCheck(where, check *pg_query.Node) *pg_query.Node {
	if where == nil {
		return check
	}
	again := proto.Clone(where).(*pg_query.Node)
	caseExpr := &pg_query.Node{Node: &pg_query.Node_CaseExpr{CaseExpr: &pg_query.CaseExpr{
		Args:      []*pg_query.Node{pg_query.MakeCaseWhenNode(again, check, -1)},
		Defresult: boolConst(false),
		Location:  -1,
	}}}
	return pg_query.MakeBoolExprNode(pg_query.BoolExprType_AND_EXPR, []*pg_query.Node{where, caseExpr}, -1)
}

func boolConst(b bool) *pg_query.Node {
	return &pg_query.Node{Node: &pg_query.Node_AConst{AConst: &pg_query.A_Const{
		Val: &pg_query.A_Const_Boolval{Boolval: &pg_query.Boolean{Boolval: b}}, Location: -1,
	}}}
}

func funcCall(name string) *pg_query.Node {
	return pg_query.MakeFuncCallNode([]*pg_query.Node{pg_query.MakeStrNode("pg_catalog"), pg_query.MakeStrNode(name)}, nil, -1)
}

func typeCast(arg *pg_query.Node, typ string) *pg_query.Node {
	return &pg_query.Node{Node: &pg_query.Node_TypeCast{TypeCast: &pg_query.TypeCast{
		Arg: arg,
		TypeName: &pg_query.TypeName{
			Names:    []*pg_query.Node{pg_query.MakeStrNode("pg_catalog"), pg_query.MakeStrNode(typ)},
			Typemod:  -1,
			Location: -1,
		},
		Location: -1,
	}}}
}

// columnTyped returns e such that a literal or parameter whose type PostgreSQL
// would take from the target column keeps that type when it is moved out of
// the INSERT or SET it was written in: `COALESCE(e, (NULL::<table>).<col>)`
// (COALESCE of a value and NULL is the value). Other expressions have a type
// of their own and are returned unchanged.
func columnTyped(e *pg_query.Node, rv *pg_query.RangeVar, col string) *pg_query.Node {
	if !contextTyped(e) {
		return e
	}
	names := make([]*pg_query.Node, 0, 3)
	for _, s := range []string{rv.Catalogname, rv.Schemaname, rv.Relname} {
		if s != "" {
			names = append(names, pg_query.MakeStrNode(s))
		}
	}
	null := &pg_query.Node{Node: &pg_query.Node_TypeCast{TypeCast: &pg_query.TypeCast{
		Arg:      &pg_query.Node{Node: &pg_query.Node_AConst{AConst: &pg_query.A_Const{Isnull: true, Location: -1}}},
		TypeName: &pg_query.TypeName{Names: names, Typemod: -1, Location: -1},
		Location: -1,
	}}}
	colOf := &pg_query.Node{Node: &pg_query.Node_AIndirection{AIndirection: &pg_query.A_Indirection{
		Arg:         null,
		Indirection: []*pg_query.Node{pg_query.MakeStrNode(col)},
	}}}
	return &pg_query.Node{Node: &pg_query.Node_CoalesceExpr{CoalesceExpr: &pg_query.CoalesceExpr{
		Args:     []*pg_query.Node{e, colOf},
		Location: -1,
	}}}
}

// contextTyped reports whether e takes its type from where it is assigned:
// a string literal, NULL or a parameter, as written (no cast).
func contextTyped(e *pg_query.Node) bool {
	switch x := e.Node.(type) {
	case *pg_query.Node_ParamRef:
		return true
	case *pg_query.Node_AConst:
		return x.AConst.Isnull || x.AConst.GetSval() != nil
	}
	return false
}

// deterministic reports whether an expression gives the same value every
// time it is evaluated for the same row, as far as its syntax shows: only
// constants, parameters, column references, operators, casts and the
// built-in functions a filter may call, no subqueries. A SET expression for
// a checked column must be, since the check evaluates it a second time.
func deterministic(n *pg_query.Node) bool {
	if n == nil {
		return true
	}
	switch x := n.Node.(type) {
	case *pg_query.Node_ParamRef, *pg_query.Node_AConst, *pg_query.Node_SqlvalueFunction, *pg_query.Node_String_:
		return true
	case *pg_query.Node_ColumnRef:
		for _, f := range x.ColumnRef.Fields {
			if f.GetAStar() != nil {
				return false
			}
		}
		return true
	case *pg_query.Node_AExpr:
		if operatorName(x.AExpr.Name) != nil {
			return false
		}
	case *pg_query.Node_FuncCall:
		if (&binder{}).function(x.FuncCall) != nil {
			return false
		}
	case *pg_query.Node_TypeCast, *pg_query.Node_BoolExpr, *pg_query.Node_NullTest, *pg_query.Node_BooleanTest,
		*pg_query.Node_CoalesceExpr, *pg_query.Node_MinMaxExpr, *pg_query.Node_CaseExpr,
		*pg_query.Node_CaseWhen, *pg_query.Node_AArrayExpr, *pg_query.Node_RowExpr,
		*pg_query.Node_List, *pg_query.Node_AIndirection, *pg_query.Node_AIndices,
		*pg_query.Node_CollateClause:
	default:
		return false
	}
	for _, k := range exprChildren(n) {
		if !deterministic(k) {
			return false
		}
	}
	return true
}

// setSubstitutions maps each checked column an UPDATE (or ON CONFLICT DO
// UPDATE) SET list assigns to its new value, refusing assignments the check
// cannot follow: a multi-column assignment from a sub-select, an assignment
// to a field or element of a checked column, DEFAULT, and expressions that
// might give another value when evaluated again.
func (w *walker) setSubstitutions(f *filter, rv *pg_query.RangeVar, targets []*pg_query.Node) map[string]*pg_query.Node {
	checked := make(map[string]bool, len(f.columns))
	for _, c := range f.columns {
		checked[c] = true
	}
	subst := map[string]*pg_query.Node{}
	for _, t := range targets {
		rt := t.GetResTarget()
		if rt == nil || !checked[rt.Name] {
			continue
		}
		col := rt.Name
		switch {
		case rt.Val.GetMultiAssignRef() != nil:
			w.fail(denied(f.key.String(), "%s: column %s is read by the table's check and may not be set from a multi-column assignment; set it on its own", f.key, col))
		case len(rt.Indirection) > 0:
			w.fail(denied(f.key.String(), "%s: column %s is read by the table's check and may not be set by field or element; set the whole column", f.key, col))
		case rt.Val.GetSetToDefault() != nil:
			w.fail(denied(f.key.String(), "%s: column %s is read by the table's check and may not be set to DEFAULT (the proxy cannot see the default); give its value", f.key, col))
		case !deterministic(rt.Val):
			w.fail(denied(f.key.String(), "%s: column %s is read by the table's check and may only be set to a constant, a parameter or an expression of columns, operators and simple built-in functions (no sub-selects)", f.key, col))
		}
		subst[col] = columnTyped(rt.Val, rv, col)
	}
	return subst
}

// checkUpdate adds the target's check to an UPDATE's WHERE clause (already
// guarded by the filter, if any).
func (w *walker) checkUpdate(f *filter, qual string, rv *pg_query.RangeVar, targets []*pg_query.Node, where **pg_query.Node) {
	if (*where).GetCurrentOfExpr() != nil {
		w.fail(denied(f.key.String(), "WHERE CURRENT OF is not allowed on %s: the table has a check", f.key))
	}
	subst := w.setSubstitutions(f, rv, targets)
	w.mutate()
	*where = guardedCheck(*where, checkCase(f, f.checkInstance(qual, subst)))
}

// checkInsert makes an INSERT's rows pass through the target's check:
//
//	INSERT INTO t (a, b) VALUES (...), (...)
//	=> INSERT INTO t (a, b) SELECT * FROM (VALUES (...), (...)) AS dbal_v(a, b)
//	   WHERE CASE WHEN <check over dbal_v> THEN true ELSE <error> END
//
// (the same for INSERT ... SELECT). The client's column list must name every
// column the check reads: the proxy does not know the columns' defaults.
func (w *walker) checkInsert(f *filter, s *pg_query.InsertStmt) {
	if len(s.Cols) == 0 {
		what := "without a column list"
		if s.SelectStmt == nil {
			what = "with DEFAULT VALUES"
		}
		w.fail(denied(f.key.String(), "INSERT into %s %s is not allowed: the table has a check; list the columns (at least %s)", f.key, what, joinNames(f.columns)))
	}
	cols := make([]string, 0, len(s.Cols))
	listed := make(map[string]bool, len(s.Cols))
	for _, c := range s.Cols {
		rt := c.GetResTarget()
		if rt == nil || len(rt.Indirection) > 0 {
			w.fail(denied(f.key.String(), "INSERT into %s may not assign fields or elements of a column: the table has a check", f.key))
		}
		cols = append(cols, rt.Name)
		listed[rt.Name] = true
	}
	for _, c := range f.columns {
		if !listed[c] {
			w.fail(denied(f.key.String(), "INSERT into %s must give column %s: the table's check reads it and the proxy cannot see its default", f.key, c))
		}
	}
	src := s.SelectStmt.GetSelectStmt()
	if src == nil {
		w.fail(denied(f.key.String(), "INSERT into %s: this form of INSERT cannot be checked", f.key))
	}
	switch {
	case len(src.ValuesLists) > 0:
		for _, row := range src.ValuesLists {
			items := row.GetList().GetItems()
			for i, it := range items {
				if it.GetSetToDefault() != nil {
					w.fail(denied(f.key.String(), "INSERT into %s may not use DEFAULT in VALUES: the table has a check; omit the column instead", f.key))
				}
				if i < len(cols) {
					items[i] = columnTyped(it, s.Relation, cols[i])
				}
			}
		}
	case src.Op == pg_query.SetOperation_SETOP_NONE:
		for i, t := range src.TargetList {
			if rt := t.GetResTarget(); rt != nil && i < len(cols) && rt.Val != nil {
				rt.Val = columnTyped(rt.Val, s.Relation, cols[i])
			}
		}
	}
	w.mutate()
	colNames := make([]*pg_query.Node, len(cols))
	for i, c := range cols {
		colNames[i] = pg_query.MakeStrNode(c)
	}
	// A WITH clause (possibly data-modifying) stays at the top level, where
	// PostgreSQL requires data-modifying CTEs to be; the sub-select still
	// sees it.
	with := src.WithClause
	src.WithClause = nil
	outer := &pg_query.SelectStmt{
		TargetList: []*pg_query.Node{starTarget()},
		FromClause: []*pg_query.Node{{Node: &pg_query.Node_RangeSubselect{RangeSubselect: &pg_query.RangeSubselect{
			Subquery: s.SelectStmt,
			Alias:    &pg_query.Alias{Aliasname: valuesAlias, Colnames: colNames},
		}}}},
		WhereClause: checkCase(f, f.checkInstance(valuesAlias, nil)),
		WithClause:  with,
		LimitOption: pg_query.LimitOption_LIMIT_OPTION_DEFAULT,
		Op:          pg_query.SetOperation_SETOP_NONE,
	}
	s.SelectStmt = &pg_query.Node{Node: &pg_query.Node_SelectStmt{SelectStmt: outer}}
}

// checkMergeAction holds a MERGE action that writes rows to the target's
// check, in the action's condition: UPDATE as an UPDATE, INSERT with the
// new row made of its VALUES (every column the check reads must be listed).
func (w *walker) checkMergeAction(f *filter, qual string, rv *pg_query.RangeVar, mw *pg_query.MergeWhenClause) {
	var subst map[string]*pg_query.Node
	switch mw.CommandType {
	case pg_query.CmdType_CMD_UPDATE:
		subst = w.setSubstitutions(f, rv, mw.TargetList)
	case pg_query.CmdType_CMD_INSERT:
		if len(mw.TargetList) == 0 || len(mw.TargetList) != len(mw.Values) {
			w.fail(denied(f.key.String(), "MERGE ... INSERT into %s must list its columns and give a value for each: the table has a check (at least %s)", f.key, joinNames(f.columns)))
		}
		targets := make([]*pg_query.Node, len(mw.TargetList))
		for i, t := range mw.TargetList {
			rt := t.GetResTarget()
			if rt == nil {
				w.fail(denied(f.key.String(), "MERGE ... INSERT into %s: this column list cannot be checked", f.key))
			}
			targets[i] = pg_query.MakeResTargetNodeWithNameAndVal(rt.Name, mw.Values[i], -1)
			targets[i].GetResTarget().Indirection = rt.Indirection
		}
		subst = w.setSubstitutions(f, rv, targets)
		for _, c := range f.columns {
			if subst[c] == nil {
				w.fail(denied(f.key.String(), "MERGE ... INSERT into %s must give column %s: the table's check reads it and the proxy cannot see its default", f.key, c))
			}
		}
	default:
		return
	}
	w.mutate()
	mw.Condition = guardedCheck(mw.Condition, checkCase(f, f.checkInstance(qual, subst)))
}

func joinNames(names []string) string {
	switch len(names) {
	case 0:
		return "the columns"
	case 1:
		return names[0]
	}
	out := ""
	for i, n := range names {
		switch {
		case i == 0:
		case i == len(names)-1:
			out += " and "
		default:
			out += ", "
		}
		out += n
	}
	return out
}
