package parser

import (
	"sort"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"

	"github.com/dbalproxy/dbalproxy/pgbool"
	"github.com/dbalproxy/dbalproxy/sqlscope"
)

// accessSet is a bit set of Access kinds; bit order is Table.Access order.
type accessSet uint8

const (
	accDelete accessSet = 1 << iota
	accInsert
	accSelect
	accTruncate
	accUpdate
)

// accessKinds maps bit index to Access, in sorted order.
var accessKinds = [...]Access{AccessDelete, AccessInsert, AccessSelect, AccessTruncate, AccessUpdate}

func (s accessSet) list() []Access {
	out := make([]Access, 0, 2)
	for i, a := range accessKinds {
		if s&(1<<i) != 0 {
			out = append(out, a)
		}
	}
	return out
}

// tableKey identifies a relation as written.
type tableKey struct{ schema, name string }

// tableAcc accumulates what one statement does to one relation.
type tableAcc struct {
	key    tableKey
	access accessSet
	star   accessSet
	cols   [len(accessKinds)]map[string]struct{}
}

func (t *tableAcc) addColumn(kind accessSet, col string) {
	for i := range accessKinds {
		if kind&(1<<i) != 0 {
			if t.cols[i] == nil {
				t.cols[i] = make(map[string]struct{}, 4)
			}
			t.cols[i][col] = struct{}{}
		}
	}
}

// rel is one entry of a query level's range table; its Info is the table
// it refers to, nil for sub-selects, functions, CTE references and EXCLUDED.
type rel = sqlscope.Rel[*tableAcc]

// scope is one query level (see package sqlscope).
type scope = sqlscope.Scope[*tableAcc]

// walker collects the facts of one statement in a single recursive walk over
// the parse tree. Most node kinds are walked generically (every message field,
// through protoreflect); only the nodes that open a scope, name a relation or
// a column, call a function or carry a flag have a case of their own.
type walker struct {
	sc       *scope
	tables   map[tableKey]*tableAcc
	funcs    map[Function]struct{}
	flags    map[string]struct{}
	maxParam int
	writes   bool // some relation got a write access kind
	configs  map[string]struct{}
	// inLocking is set while the FROM clause of a SELECT ... FOR UPDATE/SHARE
	// is walked: its tables are locked, which PostgreSQL allows only with
	// UPDATE rights, so they get the update access kind.
	inLocking bool
}

func newWalker() *walker {
	return &walker{
		sc:     &scope{},
		tables: make(map[tableKey]*tableAcc, 4),
		funcs:  make(map[Function]struct{}),
		flags:  make(map[string]struct{}),
	}
}

// unwrap returns the message inside a pg_query.Node, or nil.
func unwrap(n *pg_query.Node) proto.Message { return sqlscope.Unwrap(n) }

func (w *walker) flag(f string) { w.flags[f] = struct{}{} }

// push opens a new query level below the current one and returns a func that
// closes it.
func (w *walker) push() func() {
	saved := w.sc
	w.sc = saved.Child()
	return func() { w.sc = saved }
}

// visitAll visits each node of a list.
func (w *walker) visitAll(ns []*pg_query.Node) {
	for _, n := range ns {
		w.visit(n)
	}
}

// visit is the recursive walk.
func (w *walker) visit(m proto.Message) {
	if m == nil || !m.ProtoReflect().IsValid() {
		return
	}
	switch n := m.(type) {
	case *pg_query.Node:
		w.visit(unwrap(n))
	case *pg_query.String, *pg_query.Integer, *pg_query.Float, *pg_query.Boolean,
		*pg_query.BitString, *pg_query.A_Const, *pg_query.TypeName, *pg_query.Alias,
		*pg_query.RoleSpec:
		// leaves
	case *pg_query.SelectStmt:
		w.selectStmt(n)
	case *pg_query.InsertStmt:
		w.insertStmt(n)
	case *pg_query.UpdateStmt:
		w.updateStmt(n)
	case *pg_query.DeleteStmt:
		w.deleteStmt(n)
	case *pg_query.MergeStmt:
		w.mergeStmt(n)
	case *pg_query.CopyStmt:
		w.copyStmt(n)
	case *pg_query.TruncateStmt:
		for _, r := range n.Relations {
			if rv := r.GetRangeVar(); rv != nil {
				w.table(rv, accTruncate)
			}
		}
	case *pg_query.RangeVar:
		// A relation named outside a FROM clause: DDL, LOCK, GRANT, INTO.
		w.table(n, 0)
	case *pg_query.DropStmt:
		for _, o := range n.Objects {
			w.namedRelation(n.RemoveType, o)
		}
	case *pg_query.CommentStmt:
		w.namedRelation(n.Objtype, n.Object)
	case *pg_query.SecLabelStmt:
		w.namedRelation(n.Objtype, n.Object)
	case *pg_query.ExplainStmt:
		if explainAnalyze(n) {
			w.flag(FlagExplainAnalyze)
		}
		w.visit(n.Query)
	case *pg_query.ColumnRef:
		w.columnRef(n)
	case *pg_query.FuncCall:
		args := len(n.Args)
		if n.FuncVariadic {
			args = -1
		}
		w.funcCall(n.Funcname, args)
		w.setConfig(n)
		w.sequenceCall(n)
		w.children(n)
	case *pg_query.A_Expr:
		w.operator(n)
		w.children(n)
	case *pg_query.SubLink:
		// x op ANY (SELECT ...)
		w.operatorName(n.OperName, 2)
		w.children(n)
	case *pg_query.SortBy:
		// ORDER BY x USING op
		w.operatorName(n.UseOp, 2)
		w.children(n)
	case *pg_query.A_Indirection:
		// (x).name is also the call name(x).
		for _, ind := range n.Indirection {
			if s := ind.GetString_(); s != nil {
				w.funcs[Function{Name: s.Sval, Args: 1, Field: true}] = struct{}{}
			}
		}
		w.children(n)
	case *pg_query.ParamRef:
		w.flag(FlagHasParams)
		if int(n.Number) > w.maxParam {
			w.maxParam = int(n.Number)
		}
	case *pg_query.MultiAssignRef:
		// UPDATE SET (a, b) = (SELECT ...): the source repeats on every column.
		if n.Colno <= 1 {
			w.visit(n.Source)
		}
	case *pg_query.LockingClause:
		// Only reached outside a SELECT (never in practice): the locked names
		// are aliases, not relations.
	default:
		w.children(m)
	}
}

// children visits every message-typed field of m.
func (w *walker) children(m proto.Message) { sqlscope.Children(m, w.visit) }

// table records a relation with the given access kinds.
func (w *walker) table(rv *pg_query.RangeVar, kinds accessSet) *tableAcc {
	return w.tableByName(rv.Schemaname, rv.Relname, kinds)
}

func (w *walker) tableByName(schema, name string, kinds accessSet) *tableAcc {
	k := tableKey{schema, name}
	t := w.tables[k]
	if t == nil {
		t = &tableAcc{key: k}
		w.tables[k] = t
	}
	t.access |= kinds
	if kinds&^accSelect != 0 {
		w.writes = true
	}
	return t
}

// namedRelation records the relation named by a DROP, COMMENT or SECURITY
// LABEL object of the
// given type (a list of name strings); for objects that live on a table
// (triggers, rules, policies, columns, constraints) the table is recorded.
func (w *walker) namedRelation(typ pg_query.ObjectType, obj *pg_query.Node) {
	names := stringList(obj.GetList().GetItems())
	switch typ {
	case pg_query.ObjectType_OBJECT_TABLE, pg_query.ObjectType_OBJECT_VIEW,
		pg_query.ObjectType_OBJECT_MATVIEW, pg_query.ObjectType_OBJECT_INDEX,
		pg_query.ObjectType_OBJECT_SEQUENCE, pg_query.ObjectType_OBJECT_FOREIGN_TABLE:
	case pg_query.ObjectType_OBJECT_TRIGGER, pg_query.ObjectType_OBJECT_RULE,
		pg_query.ObjectType_OBJECT_POLICY, pg_query.ObjectType_OBJECT_COLUMN,
		pg_query.ObjectType_OBJECT_TABCONSTRAINT:
		if len(names) > 0 {
			names = names[:len(names)-1]
		}
	default:
		w.visit(obj)
		return
	}
	switch len(names) {
	case 0:
	case 1:
		w.tableByName("", names[0], 0)
	default:
		w.tableByName(names[len(names)-2], names[len(names)-1], 0)
	}
}

// stringList returns the String values of ns (nil if any is not a String).
func stringList(ns []*pg_query.Node) []string { return sqlscope.Strings(ns) }

// funcCall records a called function by its (possibly qualified) name and
// its number of arguments (-1: unknown).
func (w *walker) funcCall(name []*pg_query.Node, args int) {
	names := stringList(name)
	switch len(names) {
	case 0:
	case 1:
		w.funcs[Function{Name: names[0], Args: args}] = struct{}{}
	default:
		w.funcs[Function{Schema: names[len(names)-2], Name: names[len(names)-1], Args: args}] = struct{}{}
	}
}

// operator records the operators an expression applies: its own, or, for
// BETWEEN, the >= and <= it stands for.
func (w *walker) operator(e *pg_query.A_Expr) {
	args := 2
	if e.Lexpr == nil {
		args = 1
	}
	switch e.Kind {
	case pg_query.A_Expr_Kind_AEXPR_BETWEEN, pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN,
		pg_query.A_Expr_Kind_AEXPR_BETWEEN_SYM, pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM:
		w.funcs[Function{Name: ">=", Args: 2, Operator: true}] = struct{}{}
		w.funcs[Function{Name: "<=", Args: 2, Operator: true}] = struct{}{}
	default:
		w.operatorName(e.Name, args)
	}
}

// operatorName records an operator by its (possibly qualified) name,
// OPERATOR(schema.op).
func (w *walker) operatorName(name []*pg_query.Node, args int) {
	names := stringList(name)
	switch len(names) {
	case 0:
	case 1:
		w.funcs[Function{Name: names[0], Args: args, Operator: true}] = struct{}{}
	default:
		w.funcs[Function{Schema: names[len(names)-2], Name: names[len(names)-1], Args: args, Operator: true}] = struct{}{}
	}
}

// sequenceAccess is the access each sequence function makes to the
// sequence it names: nextval and setval change it, currval reads it.
var sequenceAccess = map[string]accessSet{"nextval": accUpdate, "setval": accUpdate, "currval": accSelect}

// sequenceCall records the sequence a nextval, setval or currval call names
// as a relation with that access, so that policies decide it like a table:
// a role may advance or reset only the sequences it is allowed to write. A
// sequence named by anything but a constant is flagged
// FlagDynamicRelation: which one it is is known only when it runs.
func (w *walker) sequenceCall(fc *pg_query.FuncCall) {
	names := stringList(fc.Funcname)
	if len(names) == 0 || len(names) > 2 || (len(names) == 2 && names[0] != "pg_catalog") {
		return
	}
	kind, ok := sequenceAccess[names[len(names)-1]]
	if !ok || len(fc.Args) == 0 {
		return
	}
	arg := fc.Args[0]
	if tc := arg.GetTypeCast(); tc != nil {
		arg = tc.Arg
	}
	c := arg.GetAConst()
	if c == nil || c.GetSval() == nil {
		w.flag(FlagDynamicRelation)
		return
	}
	parts, ok := splitQualifiedName(c.GetSval().Sval)
	switch {
	case !ok:
		w.flag(FlagDynamicRelation)
	case len(parts) == 1:
		w.tableByName("", parts[0], kind)
	default:
		w.tableByName(parts[len(parts)-2], parts[len(parts)-1], kind)
	}
}

// splitQualifiedName splits a relation name given as text ('seq',
// 'public.seq', '"My Seq"'), as PostgreSQL's regclass input does: unquoted
// parts are lower-cased (ASCII), quoted ones kept with "" as a quote. It
// returns false for anything else (empty parts, more than three parts,
// unbalanced quotes).
func splitQualifiedName(s string) ([]string, bool) {
	var parts []string
	s = strings.TrimSpace(s)
	for {
		var part string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			i := 1
			for {
				j := strings.IndexByte(s[i:], '"')
				if j < 0 {
					return nil, false
				}
				b.WriteString(s[i : i+j])
				i += j + 1
				if i < len(s) && s[i] == '"' {
					b.WriteByte('"')
					i++
					continue
				}
				break
			}
			part, s = b.String(), s[i:]
		} else {
			j := strings.IndexByte(s, '.')
			if j < 0 {
				j = len(s)
			}
			part, s = strings.TrimSpace(s[:j]), s[j:]
			if strings.ContainsAny(part, "\" \t\n\r") {
				return nil, false
			}
			part = asciiLower(part)
		}
		if part == "" {
			return nil, false
		}
		parts = append(parts, part)
		s = strings.TrimSpace(s)
		if s == "" {
			break
		}
		if s[0] != '.' {
			return nil, false
		}
		s = strings.TrimSpace(s[1:])
	}
	if len(parts) > 3 {
		return nil, false
	}
	return parts, true
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// setConfig records the setting a set_config call changes: its first
// argument lower-cased when that is a string constant (possibly cast), else
// ConfigUnknown.
func (w *walker) setConfig(fc *pg_query.FuncCall) {
	names := stringList(fc.Funcname)
	if len(names) == 0 || names[len(names)-1] != "set_config" {
		return
	}
	if w.configs == nil {
		w.configs = map[string]struct{}{}
	}
	name := ConfigUnknown
	if len(fc.Args) > 0 {
		arg := fc.Args[0]
		if tc := arg.GetTypeCast(); tc != nil {
			arg = tc.Arg
		}
		if c := arg.GetAConst(); c != nil && c.GetSval() != nil {
			name = strings.ToLower(c.GetSval().Sval)
		}
	}
	w.configs[name] = struct{}{}
}

// with registers the CTEs of a WITH clause in the current scope and walks
// their queries (see sqlscope.Scope.With).
func (w *walker) with(wc *pg_query.WithClause) {
	w.sc.With(wc, func(cte *pg_query.CommonTableExpr) {
		switch cte.Ctequery.GetNode().(type) {
		case *pg_query.Node_InsertStmt, *pg_query.Node_UpdateStmt,
			*pg_query.Node_DeleteStmt, *pg_query.Node_MergeStmt:
			w.flag(FlagDataModifyingCTE)
		}
		w.visit(cte.Ctequery)
	})
}

// fromItem walks one FROM (or USING) item and adds what it defines to the
// current scope's range table.
func (w *walker) fromItem(n *pg_query.Node) {
	switch x := unwrap(n).(type) {
	case *pg_query.RangeVar:
		w.fromRangeVar(x, accSelect, false)
	case *pg_query.JoinExpr:
		w.fromItem(x.Larg)
		w.fromItem(x.Rarg)
		if using := stringList(x.UsingClause); len(using) > 0 {
			w.usingColumns(x.Larg, using)
			w.usingColumns(x.Rarg, using)
			w.sc.AddUsing(using)
		}
		w.visit(x.Quals)
	case *pg_query.RangeSubselect:
		w.lateral(x.Lateral, func() { w.visit(x.Subquery) })
		w.sc.Rels = append(w.sc.Rels, rel{Name: x.Alias.GetAliasname(), Aliased: true})
	case *pg_query.RangeFunction:
		// A function in FROM sees the earlier FROM items with or without
		// LATERAL (PostgreSQL: there LATERAL is a noise word).
		w.visitAll(x.Functions)
		w.sc.Rels = append(w.sc.Rels, rel{Name: sqlscope.FunctionName(x), Aliased: true})
	case *pg_query.RangeTableSample:
		w.fromItem(x.Relation)
		w.visitAll(x.Args)
		w.visit(x.Repeatable)
	case *pg_query.RangeTableFunc:
		w.visit(x)
		w.sc.Rels = append(w.sc.Rels, rel{Name: x.Alias.GetAliasname(), Aliased: true})
	case *pg_query.JsonTable:
		w.visit(x)
		w.sc.Rels = append(w.sc.Rels, rel{Name: x.Alias.GetAliasname(), Aliased: true})
	default:
		w.visit(n)
	}
}

// fromRangeVar adds a relation of a FROM list, or the target of a DML
// statement, to the scope: a CTE reference when an unqualified FROM name
// matches a CTE in scope (a DML target is always a real relation), else a
// table with the given access kinds.
func (w *walker) fromRangeVar(rv *pg_query.RangeVar, kinds accessSet, target bool) *tableAcc {
	r := sqlscope.RelOf[*tableAcc](rv)
	if !target && w.sc.IsCTERef(rv) {
		w.sc.Rels = append(w.sc.Rels, r)
		return nil
	}
	if w.inLocking && kinds&accSelect != 0 {
		kinds |= accUpdate
	}
	r.Info = w.table(rv, kinds)
	w.sc.Rels = append(w.sc.Rels, r)
	return r.Info
}

// lateral runs f with the current scope's range table visible (LATERAL) or
// hidden (an ordinary subquery in FROM sees only outer query levels and the
// CTEs of its own level).
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

// usingColumns attributes JOIN ... USING columns to a side that is a plain
// table.
func (w *walker) usingColumns(side *pg_query.Node, cols []string) {
	rv := side.GetRangeVar()
	if rv == nil {
		return
	}
	name := rv.Relname
	if a := rv.Alias.GetAliasname(); a != "" {
		name = a
	}
	for i := len(w.sc.Rels) - 1; i >= 0; i-- {
		if r := w.sc.Rels[i]; r.Name == name {
			if r.Info != nil {
				for _, c := range cols {
					r.Info.addColumn(accSelect, c)
				}
			}
			return
		}
	}
}

// selectStmt walks a SELECT (or VALUES, or set operation) as a new query level.
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
		w.visitAll(s.SortClause)
		w.visit(s.LimitOffset)
		w.visit(s.LimitCount)
		w.locking(s.LockingClause)
		w.visit(s.IntoClause)
		return
	}
	w.visitAll(s.ValuesLists)
	// FOR UPDATE/SHARE without OF locks every table of the FROM clause,
	// also inside its sub-selects; with OF only the named ones.
	lockAll, lockNames := lockTargets(s.LockingClause)
	saved := w.inLocking
	w.inLocking = saved || lockAll
	for _, f := range s.FromClause {
		w.fromItem(f)
	}
	w.inLocking = saved
	w.lockNamed(lockNames)
	w.visitAll(s.TargetList)
	w.visit(s.WhereClause)
	// GROUP BY prefers an input column to a select-list name of the same
	// name (PostgreSQL's findTargetlistEntrySQL92): without the tables'
	// columns the name counts as a column.
	w.visitAll(s.GroupClause)
	w.visit(s.HavingClause)
	w.visitAll(s.WindowClause)
	// ORDER BY and DISTINCT ON prefer the select-list name.
	w.sc.SetOutputs(s.TargetList)
	w.sc.UseOutputs = true
	w.visitAll(s.SortClause)
	w.visitAll(s.DistinctClause)
	w.sc.UseOutputs = false
	w.visit(s.LimitOffset)
	w.visit(s.LimitCount)
	w.locking(s.LockingClause)
	w.visit(s.IntoClause)
}

// lockTargets reads locking clauses: whether one locks every table of
// the FROM clause, and the relation names the others name (OF ...).
func lockTargets(lcs []*pg_query.Node) (all bool, names []string) {
	for _, n := range lcs {
		lc := n.GetLockingClause()
		if lc == nil {
			continue
		}
		if len(lc.LockedRels) == 0 {
			all = true
		}
		for _, r := range lc.LockedRels {
			names = append(names, r.GetRangeVar().GetRelname())
		}
	}
	return all, names
}

// lockNamed gives the relations of this query level named by FOR UPDATE OF
// the update access kind. A name that is no table of this level (a
// sub-select, a CTE, a view's alias) locks tables the walk cannot point
// at, so then every table of the statement gets it.
func (w *walker) lockNamed(names []string) {
	for _, name := range names {
		found := false
		for i := range w.sc.Rels {
			r := &w.sc.Rels[i]
			if r.Name != name {
				continue
			}
			found = true
			if r.Info == nil {
				found = false
				break
			}
			r.Info.access |= accUpdate
			w.writes = true
		}
		if !found {
			for _, t := range w.tables {
				t.access |= accUpdate
			}
			w.writes = true
			return
		}
	}
}

func (w *walker) locking(lcs []*pg_query.Node) {
	if len(lcs) > 0 {
		w.flag(FlagSelectForUpdate)
	}
}

// targetColumns records the column names of SET / INSERT target lists with the
// given access kind and walks their value expressions and subscripts.
func (w *walker) targetColumns(t *tableAcc, kind accessSet, targets []*pg_query.Node) {
	for _, n := range targets {
		rt := n.GetResTarget()
		if rt == nil {
			w.visit(n)
			continue
		}
		if t != nil && rt.Name != "" {
			t.addColumn(kind, rt.Name)
		}
		w.visitAll(rt.Indirection)
		w.visit(rt.Val)
	}
}

func (w *walker) insertStmt(s *pg_query.InsertStmt) {
	defer w.push()()
	w.with(s.WithClause)
	// The source query does not see the target: walk it before adding it.
	w.visit(s.SelectStmt)
	if s.Relation == nil {
		return
	}
	t := w.fromRangeVar(s.Relation, accInsert, true)
	if t != nil && len(s.Cols) == 0 {
		t.star |= accInsert
	}
	w.targetColumns(t, accInsert, s.Cols)
	if oc := s.OnConflictClause; oc != nil {
		if oc.Action == pg_query.OnConflictAction_ONCONFLICT_UPDATE && t != nil {
			t.access |= accUpdate
		}
		n := len(w.sc.Rels)
		w.sc.Rels = append(w.sc.Rels, rel{Name: "excluded", Aliased: true, QualifiedOnly: true})
		w.visit(oc.Infer)
		w.targetColumns(t, accUpdate, oc.TargetList)
		w.visit(oc.WhereClause)
		w.sc.Rels = w.sc.Rels[:n]
	}
	w.visitAll(s.ReturningList)
}

func (w *walker) updateStmt(s *pg_query.UpdateStmt) {
	defer w.push()()
	w.with(s.WithClause)
	if s.Relation == nil {
		return
	}
	t := w.fromRangeVar(s.Relation, accUpdate, true)
	for _, f := range s.FromClause {
		w.fromItem(f)
	}
	w.targetColumns(t, accUpdate, s.TargetList)
	w.visit(s.WhereClause)
	w.visitAll(s.ReturningList)
}

func (w *walker) deleteStmt(s *pg_query.DeleteStmt) {
	defer w.push()()
	w.with(s.WithClause)
	if s.Relation == nil {
		return
	}
	w.fromRangeVar(s.Relation, accDelete, true)
	for _, f := range s.UsingClause {
		w.fromItem(f)
	}
	w.visit(s.WhereClause)
	w.visitAll(s.ReturningList)
}

func (w *walker) mergeStmt(s *pg_query.MergeStmt) {
	defer w.push()()
	w.with(s.WithClause)
	if s.Relation == nil {
		return
	}
	t := w.fromRangeVar(s.Relation, 0, true)
	w.fromItem(s.SourceRelation)
	w.visit(s.JoinCondition)
	for _, n := range s.MergeWhenClauses {
		mw := n.GetMergeWhenClause()
		if mw == nil {
			continue
		}
		w.visit(mw.Condition)
		var kind accessSet
		switch mw.CommandType {
		case pg_query.CmdType_CMD_INSERT:
			kind = accInsert
			if t != nil && len(mw.TargetList) == 0 {
				t.star |= accInsert
			}
		case pg_query.CmdType_CMD_UPDATE:
			kind = accUpdate
		case pg_query.CmdType_CMD_DELETE:
			kind = accDelete
		}
		if t != nil && kind != 0 {
			w.tableByName(t.key.schema, t.key.name, kind)
		}
		w.targetColumns(t, kind, mw.TargetList)
		w.visitAll(mw.Values)
	}
	w.visitAll(s.ReturningList)
}

func (w *walker) copyStmt(s *pg_query.CopyStmt) {
	switch {
	case s.IsProgram:
		w.flag(FlagCopyProgram)
	case s.Filename != "":
		w.flag(FlagCopyFile)
	case s.IsFrom:
		w.flag(FlagCopyFromStdin)
	default:
		w.flag(FlagCopyToStdout)
	}
	w.visit(s.Query)
	w.visitAll(s.Options)
	if s.Relation == nil {
		return
	}
	kind := accSelect
	if s.IsFrom {
		kind = accInsert
	}
	t := w.table(s.Relation, kind)
	cols := stringList(s.Attlist)
	if len(cols) == 0 {
		t.star |= kind
	}
	for _, c := range cols {
		t.addColumn(kind, c)
	}
	if s.WhereClause != nil {
		// COPY FROM ... WHERE filters the incoming rows, not the table.
		defer w.push()()
		w.sc.Rels = append(w.sc.Rels, rel{Name: s.Relation.Relname})
		w.visit(s.WhereClause)
	}
}

// columnRef resolves a column reference to a table of the scope chain.
func (w *walker) columnRef(c *pg_query.ColumnRef) {
	names, star := sqlscope.ColumnRefNames(c)
	switch {
	case star && len(names) == 0:
		w.starAll()
	case len(names) == 1 && !star:
		w.unqualified(names[0])
	case star:
		if r, _ := w.sc.Qualified(names, true); r != nil && r.Info != nil {
			r.Info.star |= accSelect
		}
	default:
		// x.name may also be the call name(x) (see Function.Field).
		for _, n := range names[1:] {
			w.funcs[Function{Name: n, Args: 1, Field: true}] = struct{}{}
		}
		r, take := w.sc.Qualified(names, false)
		switch {
		case r == nil:
			// Not a relation: a field of a composite column, (a).b.
			w.unqualified(names[0])
		case r.Info != nil:
			r.Info.addColumn(accSelect, names[take])
		}
	}
}

// starAll handles an unqualified *: every relation of the nearest query level
// that has a range table.
func (w *walker) starAll() {
	if lvl := w.sc.Nearest(); lvl != nil {
		for _, r := range lvl.Rels {
			if r.Info != nil && !r.QualifiedOnly {
				r.Info.star |= accSelect
			}
		}
	}
}

// unqualified resolves a bare name: a select-list alias (ORDER BY), a
// whole-row reference to a relation of that name, or a column of the only
// relation of the nearest query level with a range table.
func (w *walker) unqualified(name string) {
	if w.sc.IsOutput(name) {
		return
	}
	s := w.sc.Nearest()
	if s == nil || s.Using[name] {
		return
	}
	var only *rel
	n, tables := 0, 0
	for i := range s.Rels {
		r := &s.Rels[i]
		if r.Name == name && !r.QualifiedOnly {
			if r.Info != nil {
				r.Info.star |= accSelect // whole-row reference
			}
			return
		}
		if !r.QualifiedOnly {
			only = r
			n++
			if r.Info != nil {
				tables++
			}
		}
	}
	switch {
	case n == 1 && only.Info != nil:
		only.Info.addColumn(accSelect, name)
	case n > 1 && tables > 0:
		w.flag(FlagAmbiguousColumn)
	}
}

// explainAnalyze reports whether EXPLAIN's options include ANALYZE (on).
func explainAnalyze(e *pg_query.ExplainStmt) bool {
	on := false
	for _, o := range e.Options {
		d := o.GetDefElem()
		if d == nil || d.Defname != "analyze" {
			continue
		}
		on = defElemBool(d)
	}
	return on
}

// defElemBool interprets an option's argument as PostgreSQL's defGetBoolean
// does (no argument means true); anything it would reject counts as true.
func defElemBool(d *pg_query.DefElem) bool {
	v, ok := pgbool.Option(d)
	return v || !ok
}

// result turns the collected facts into sorted, non-nil slices.
func (w *walker) result(st *Statement) {
	for c := range w.configs {
		st.ConfigNames = append(st.ConfigNames, c)
	}
	sort.Strings(st.ConfigNames)
	st.Tables = make([]Table, 0, len(w.tables))
	for _, t := range w.tables {
		access := t.access
		// A statement that reads columns of a table it writes (WHERE,
		// SET expressions, RETURNING) also selects from it, as
		// PostgreSQL's privilege checks and RLS see it.
		if t.star&accSelect != 0 || len(t.cols[2]) > 0 {
			access |= accSelect
		}
		tb := Table{
			Schema:  t.key.schema,
			Name:    t.key.name,
			Access:  access.list(),
			Star:    t.star.list(),
			Columns: make(map[Access][]string),
		}
		for i, cols := range t.cols {
			if len(cols) == 0 {
				continue
			}
			list := make([]string, 0, len(cols))
			for c := range cols {
				list = append(list, c)
			}
			sort.Strings(list)
			tb.Columns[accessKinds[i]] = list
		}
		st.Tables = append(st.Tables, tb)
	}
	sort.Slice(st.Tables, func(i, j int) bool {
		a, b := st.Tables[i], st.Tables[j]
		if a.Schema != b.Schema {
			return a.Schema < b.Schema
		}
		return a.Name < b.Name
	})
	st.Functions = make([]Function, 0, len(w.funcs))
	for f := range w.funcs {
		st.Functions = append(st.Functions, f)
	}
	sort.Slice(st.Functions, func(i, j int) bool {
		a, b := st.Functions[i], st.Functions[j]
		if a.Schema != b.Schema {
			return a.Schema < b.Schema
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		if a.Field != b.Field {
			return !a.Field
		}
		if a.Operator != b.Operator {
			return !a.Operator
		}
		return a.Args < b.Args
	})
	st.Flags = make([]string, 0, len(w.flags))
	for f := range w.flags {
		st.Flags = append(st.Flags, f)
	}
	sort.Strings(st.Flags)
	st.ParamCount = w.maxParam
}
