package rewrite

import (
	"errors"
	"sort"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"

	"github.com/dbalproxy/dbalproxy/catalog"
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
// (the same for INSERT ... SELECT). The check must see every column it
// reads. Without a column list the catalog's columns are listed, as many as
// the source gives (width, -1 when that is not known: a `*` over anything
// but one table). A column the check reads that the list leaves out takes
// its default from the catalog, evaluated once per row:
//
//	INSERT INTO t (a, b, c) SELECT * FROM
//	  (SELECT dbal_s.*, <default of c> FROM (<source>) AS dbal_s) AS dbal_v(a, b, c)
//	WHERE ...
//
// (PostgreSQL does not flatten a sub-select whose output calls a volatile
// function, so a nextval default runs once a row, as it would). Without a
// catalog, or for a relation it does not know, such an INSERT is denied.
func (w *walker) checkInsert(f *filter, s *pg_query.InsertStmt, width int) {
	var rel *catalog.Relation
	if w.tables != nil {
		rel = w.tables.Relation(f.key.schema, f.key.name)
	}
	src := s.SelectStmt.GetSelectStmt()
	if s.SelectStmt != nil && src == nil {
		w.fail(denied(f.key.String(), "INSERT into %s: this form of INSERT cannot be checked", f.key))
	}
	cols := make([]string, 0, len(s.Cols))
	listed := make(map[string]bool, len(s.Cols))
	implicit := len(s.Cols) == 0
	if implicit {
		what := "without a column list"
		if src == nil {
			what = "with DEFAULT VALUES"
		}
		switch {
		case rel == nil:
			w.fail(denied(f.key.String(), "INSERT into %s %s is not allowed: the table has a check and the proxy does not know its columns; list the columns (at least %s)", f.key, what, joinNames(f.columns)))
		case src != nil && width < 0:
			w.fail(denied(f.key.String(), "INSERT into %s %s is not allowed: the table has a check and the proxy cannot tell which columns the source gives; list the columns (at least %s)", f.key, what, joinNames(f.columns)))
		}
		for i, c := range rel.Columns {
			if src == nil || i >= width {
				break
			}
			cols = append(cols, c.Name)
			listed[c.Name] = true
		}
	}
	for _, c := range s.Cols {
		rt := c.GetResTarget()
		if rt == nil || len(rt.Indirection) > 0 {
			w.fail(denied(f.key.String(), "INSERT into %s may not assign fields or elements of a column: the table has a check", f.key))
		}
		cols = append(cols, rt.Name)
		listed[rt.Name] = true
	}
	var defCols []string
	var defVals []*pg_query.Node
	for _, c := range f.columns {
		if listed[c] {
			continue
		}
		if rel == nil || !rel.Table {
			w.fail(denied(f.key.String(), "INSERT into %s must give column %s: the table's check reads it and the proxy cannot see its default", f.key, c))
		}
		col := rel.Column(c)
		switch {
		case col == nil:
			w.fail(denied(f.key.String(), "INSERT into %s: the table's check reads column %s, which the table does not have", f.key, c))
		case col.Generated || col.IdentityAlways:
			w.fail(denied(f.key.String(), "INSERT into %s: the table's check reads column %s, whose value PostgreSQL generates; the proxy cannot check it", f.key, c))
		}
		v, err := defaultExpr(col.Default)
		if err != nil {
			w.fail(denied(f.key.String(), "INSERT into %s: the default of column %s cannot be read (%v); give the column", f.key, c, err))
		}
		defCols = append(defCols, c)
		defVals = append(defVals, v)
	}
	for _, row := range src.GetValuesLists() {
		for _, it := range row.GetList().GetItems() {
			if it.GetSetToDefault() != nil {
				w.fail(denied(f.key.String(), "INSERT into %s may not use DEFAULT in VALUES: the table has a check; omit the column instead", f.key))
			}
		}
	}
	w.mutate()
	if implicit {
		for _, c := range cols {
			s.Cols = append(s.Cols, &pg_query.Node{Node: &pg_query.Node_ResTarget{ResTarget: &pg_query.ResTarget{Name: c, Location: -1}}})
		}
	}
	if src != nil {
		switch {
		case len(src.ValuesLists) > 0:
			for _, row := range src.ValuesLists {
				items := row.GetList().GetItems()
				for i, it := range items {
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
	}
	// A WITH clause (possibly data-modifying) stays at the top level, where
	// PostgreSQL requires data-modifying CTEs to be; the sub-select still
	// sees it.
	var with *pg_query.WithClause
	if src != nil {
		with = src.WithClause
		src.WithClause = nil
	}
	source := s.SelectStmt
	if len(defCols) > 0 {
		inner := &pg_query.SelectStmt{LimitOption: pg_query.LimitOption_LIMIT_OPTION_DEFAULT, Op: pg_query.SetOperation_SETOP_NONE}
		if source != nil {
			inner.TargetList = append(inner.TargetList, qualifiedStar(defaultsAlias))
			inner.FromClause = []*pg_query.Node{{Node: &pg_query.Node_RangeSubselect{RangeSubselect: &pg_query.RangeSubselect{
				Subquery: source,
				Alias:    &pg_query.Alias{Aliasname: defaultsAlias},
			}}}}
		}
		for i, v := range defVals {
			inner.TargetList = append(inner.TargetList, pg_query.MakeResTargetNodeWithVal(v, -1))
			cols = append(cols, defCols[i])
			s.Cols = append(s.Cols, &pg_query.Node{Node: &pg_query.Node_ResTarget{ResTarget: &pg_query.ResTarget{Name: defCols[i], Location: -1}}})
		}
		source = &pg_query.Node{Node: &pg_query.Node_SelectStmt{SelectStmt: inner}}
	}
	colNames := make([]*pg_query.Node, len(cols))
	for i, c := range cols {
		colNames[i] = pg_query.MakeStrNode(c)
	}
	outer := &pg_query.SelectStmt{
		TargetList: []*pg_query.Node{starTarget()},
		FromClause: []*pg_query.Node{{Node: &pg_query.Node_RangeSubselect{RangeSubselect: &pg_query.RangeSubselect{
			Subquery: source,
			Alias:    &pg_query.Alias{Aliasname: valuesAlias, Colnames: colNames},
		}}}},
		WhereClause: checkCase(f, f.checkInstance(valuesAlias, nil)),
		WithClause:  with,
		LimitOption: pg_query.LimitOption_LIMIT_OPTION_DEFAULT,
		Op:          pg_query.SetOperation_SETOP_NONE,
	}
	s.SelectStmt = &pg_query.Node{Node: &pg_query.Node_SelectStmt{SelectStmt: outer}}
}

// defaultsAlias names the client's source inside the sub-select that adds
// the defaults of the columns a checked INSERT leaves out.
const defaultsAlias = "dbal_s"

// qualifiedStar is the target `alias.*`.
func qualifiedStar(alias string) *pg_query.Node {
	return pg_query.MakeResTargetNodeWithVal(&pg_query.Node{Node: &pg_query.Node_ColumnRef{ColumnRef: &pg_query.ColumnRef{
		Fields:   []*pg_query.Node{pg_query.MakeStrNode(alias), {Node: &pg_query.Node_AStar{AStar: &pg_query.A_Star{}}}},
		Location: -1,
	}}}, -1)
}

// defaultExpr parses a column default as pg_get_expr prints it ("" is
// NULL).
func defaultExpr(text string) (*pg_query.Node, error) {
	if text == "" {
		return &pg_query.Node{Node: &pg_query.Node_AConst{AConst: &pg_query.A_Const{Isnull: true, Location: -1}}}, nil
	}
	res, err := pg_query.Parse("SELECT " + text)
	if err != nil {
		return nil, err
	}
	if len(res.Stmts) != 1 {
		return nil, errors.New("not one expression")
	}
	sel := res.Stmts[0].GetStmt().GetSelectStmt()
	if sel == nil || len(sel.TargetList) != 1 || len(sel.FromClause) != 0 {
		return nil, errors.New("not one expression")
	}
	rt := sel.TargetList[0].GetResTarget()
	if rt == nil || rt.Val == nil {
		return nil, errors.New("not one expression")
	}
	return rt.Val, nil
}

// sourceWidth is the number of columns an INSERT's source gives, or -1
// when the proxy cannot tell: a `*` counts only over a single table of the
// catalog (not a CTE of that name).
func (w *walker) sourceWidth(sel *pg_query.SelectStmt, outer *pg_query.WithClause) int {
	if sel == nil {
		return -1
	}
	if sel.Op != pg_query.SetOperation_SETOP_NONE {
		return w.sourceWidth(sel.Larg, outer)
	}
	if len(sel.ValuesLists) > 0 {
		return len(sel.ValuesLists[0].GetList().GetItems())
	}
	n := 0
	for _, t := range sel.TargetList {
		rt := t.GetResTarget()
		if rt == nil {
			return -1
		}
		cr := rt.Val.GetColumnRef()
		if cr == nil || len(cr.Fields) == 0 || cr.Fields[len(cr.Fields)-1].GetAStar() == nil {
			n++
			continue
		}
		k := w.starWidth(sel, outer, cr.Fields[:len(cr.Fields)-1])
		if k < 0 {
			return -1
		}
		n += k
	}
	return n
}

// starWidth is the number of columns `*` (qual empty) or `qual.*` gives in
// sel, or -1 when sel's FROM is not one table of the catalog.
func (w *walker) starWidth(sel *pg_query.SelectStmt, outer *pg_query.WithClause, qual []*pg_query.Node) int {
	if w.tables == nil || len(sel.FromClause) != 1 {
		return -1
	}
	rv := sel.FromClause[0].GetRangeVar()
	if rv == nil || rv.Catalogname != "" {
		return -1
	}
	if rv.Schemaname == "" {
		for _, wc := range []*pg_query.WithClause{sel.WithClause, outer} {
			for _, cte := range wc.GetCtes() {
				if cte.GetCommonTableExpr().GetCtename() == rv.Relname {
					return -1
				}
			}
		}
		if w.sc.IsCTE(rv.Relname) {
			return -1
		}
	}
	switch len(qual) {
	case 0:
	case 1:
		name := rv.Relname
		if rv.Alias != nil {
			name = rv.Alias.Aliasname
		}
		if qual[0].GetString_().GetSval() != name {
			return -1
		}
	default:
		return -1
	}
	rel := w.tables.Relation(keyOf(rv).schema, keyOf(rv).name)
	if rel == nil {
		return -1
	}
	return len(rel.Columns)
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
