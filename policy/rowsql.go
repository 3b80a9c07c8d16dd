package policy

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// exprKind is the kind of a rowExpr node.
type exprKind int

const (
	exprTrue     exprKind = iota
	exprFalse             // no row
	exprAnd               // kids
	exprOr                // kids
	exprNot               // kids[0]
	exprCmp               // column op value
	exprColCmp            // column op other
	exprIn                // column IN (values), or IS NULL when nullIn
	exprIsNull            // column IS NULL
	exprNotNull           // column IS NOT NULL
	exprStarts            // starts_with(column, value)
	exprEnds              // right(column, length) = value
	exprContains          // strpos(column, value) > 0
)

// rowExpr is a row condition over one table's columns: the residual of a
// partially evaluated row rule, in a form that renders to SQL with every
// value an argument. It is immutable once built.
type rowExpr struct {
	kind   exprKind
	op     string // exprCmp, exprColCmp: = <> < <= > >=
	column string
	other  string // exprColCmp
	value  any    // string, bool, int64, float64
	values []any  // exprIn
	nullIn bool   // exprIn: NULL is one of the values
	kids   []*rowExpr
}

var (
	rowTrue  = &rowExpr{kind: exprTrue}
	rowFalse = &rowExpr{kind: exprFalse}
)

// cmpOps maps OPA's comparison built-ins to SQL operators.
var cmpOps = map[string]string{
	"eq": "=", "equal": "=", "neq": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">=",
}

// mirroredOps is the operator that holds with the operands swapped.
var mirroredOps = map[string]string{"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}

// errFragment explains what a row rule may do with input.row.
const errFragment = "row rules may only compare input.row.<column> with ==, !=, <, <=, >, >= (to a value or another column), and use it with in, startswith, endswith and contains"

// translate turns the result of partially evaluating a row rule into a
// rowExpr. The bodies are alternatives (OR), their expressions conjuncts
// (AND); no body is "no row", an empty body "every row". Anything outside the
// fragment is an error: the statement is then denied, never run unfiltered.
// Errors name operators and columns, never values.
func translate(pq *rego.PartialQueries, t *rowTable) (*rowExpr, error) {
	if len(pq.Support) > 0 {
		return nil, errors.New("it could not be inlined into one condition (row rules and the rules they use may not have defaults, else branches or functions with several definitions that depend on the row)")
	}
	var alts []*rowExpr
	for _, body := range pq.Queries {
		if len(body) == 0 {
			return rowTrue, nil
		}
		var conj []*rowExpr
		for _, e := range body {
			x, err := translateExpr(e, t)
			if err != nil {
				return nil, err
			}
			conj = append(conj, x)
		}
		alts = append(alts, andOf(conj))
	}
	return orOf(alts), nil
}

func andOf(xs []*rowExpr) *rowExpr { return junction(exprAnd, rowTrue, rowFalse, xs) }

func orOf(xs []*rowExpr) *rowExpr { return junction(exprOr, rowFalse, rowTrue, xs) }

// junction is the AND or OR (kind) of xs, simplified: unit terms (true for
// AND, false for OR) drop out, an absorbing term (the other one) is the
// result, and one term left stands alone.
func junction(kind exprKind, unit, absorbing *rowExpr, xs []*rowExpr) *rowExpr {
	var kids []*rowExpr
	for _, x := range xs {
		switch x.kind {
		case absorbing.kind:
			return absorbing
		case unit.kind:
			continue
		}
		kids = append(kids, x)
	}
	switch len(kids) {
	case 0:
		return unit
	case 1:
		return kids[0]
	}
	return &rowExpr{kind: kind, kids: kids}
}

func translateExpr(e *ast.Expr, t *rowTable) (*rowExpr, error) {
	switch {
	case len(e.With) > 0:
		return nil, errors.New("`with` is not allowed in row rules")
	case e.IsEvery():
		return nil, errors.New("`every` over row values cannot be turned into SQL")
	case !e.IsCall():
		return nil, errors.New("a bare reference to a row value cannot be turned into SQL (compare it: input.row.<column> == true)")
	}
	name := e.Operator().String()
	ops := e.Operands()
	if len(ops) != 2 {
		return nil, fmt.Errorf("%s cannot be applied to row values: %s", builtinLabel(name), errFragment)
	}
	var x *rowExpr
	var err error
	switch name {
	case "eq", "equal", "neq", "lt", "lte", "gt", "gte":
		x, err = translateCmp(cmpOps[name], ops[0], ops[1], t)
	case "internal.member_2":
		x, err = translateIn(ops[0], ops[1], t)
	case "startswith", "endswith", "contains":
		x, err = translateString(name, ops[0], ops[1], t)
	default:
		return nil, fmt.Errorf("%s cannot be applied to row values: %s", builtinLabel(name), errFragment)
	}
	if err != nil {
		return nil, err
	}
	if e.Negated {
		switch x.kind {
		case exprTrue:
			return rowFalse, nil
		case exprFalse:
			return rowTrue, nil
		}
		x = &rowExpr{kind: exprNot, kids: []*rowExpr{x}}
	}
	return x, nil
}

func builtinLabel(name string) string {
	if name == "internal.member_2" {
		return "in"
	}
	return name + "()"
}

// column returns the column an operand names, or ok false if it is not a
// reference to the row. A reference to the row that is not a declared
// input.row.<column> is an error.
func column(t *ast.Term, tab *rowTable) (string, bool, error) {
	ref, isRef := t.Value.(ast.Ref)
	if !isRef || !ref.HasPrefix(inputRowUnknown[0].Value.(ast.Ref)) {
		return "", false, nil
	}
	if len(ref) != 3 {
		return "", false, errors.New("row rules compare whole columns (input.row.<column>), not parts of them")
	}
	s, ok := ref[2].Value.(ast.String)
	if !ok {
		return "", false, errors.New("input.row.<column> needs a constant column name")
	}
	if !tab.columns[string(s)] {
		return "", false, fmt.Errorf("input.row.%s is not a column declared in row_columns[%q]", string(s), tab.name)
	}
	return string(s), true, nil
}

func translateCmp(op string, l, r *ast.Term, t *rowTable) (*rowExpr, error) {
	lc, lok, err := column(l, t)
	if err != nil {
		return nil, err
	}
	rc, rok, err := column(r, t)
	if err != nil {
		return nil, err
	}
	switch {
	case lok && rok:
		return &rowExpr{kind: exprColCmp, op: op, column: lc, other: rc}, nil
	case !lok && !rok:
		return nil, fmt.Errorf("a comparison (%s) of values computed from the row cannot be turned into SQL: %s", op, errFragment)
	case rok:
		lc, r, op = rc, l, mirroredOps[op]
	}
	if _, null := r.Value.(ast.Null); null {
		switch op {
		case "=":
			return &rowExpr{kind: exprIsNull, column: lc}, nil
		case "<>":
			return &rowExpr{kind: exprNotNull, column: lc}, nil
		}
		return nil, fmt.Errorf("input.row.%s %s null cannot be turned into SQL (compare with null only using == or !=)", lc, op)
	}
	v, err := scalar(r, "input.row."+lc)
	if err != nil {
		return nil, err
	}
	return &rowExpr{kind: exprCmp, op: op, column: lc, value: v}, nil
}

func translateIn(x, coll *ast.Term, t *rowTable) (*rowExpr, error) {
	c, ok, err := column(x, t)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errors.New("`in` over a collection taken from the row cannot be turned into SQL: the left side must be input.row.<column>")
	}
	var elems []*ast.Term
	switch v := coll.Value.(type) {
	case ast.Set:
		elems = v.Slice()
	case *ast.Array:
		for i := range v.Len() {
			elems = append(elems, v.Elem(i))
		}
	default:
		return nil, fmt.Errorf("input.row.%s in ...: the collection must be a known set or array", c)
	}
	out := &rowExpr{kind: exprIn, column: c}
	for _, e := range elems {
		if _, null := e.Value.(ast.Null); null {
			out.nullIn = true
			continue
		}
		v, err := scalar(e, "input.row."+c+" in ...")
		if err != nil {
			return nil, err
		}
		out.values = append(out.values, v)
	}
	if len(out.values) == 0 && !out.nullIn {
		return rowFalse, nil
	}
	return out, nil
}

func translateString(name string, x, s *ast.Term, t *rowTable) (*rowExpr, error) {
	c, ok, err := column(x, t)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%s(): its first argument must be input.row.<column>", name)
	}
	if _, ok := s.Value.(ast.String); !ok {
		return nil, fmt.Errorf("%s(input.row.%s, ...): the second argument must be a known string", name, c)
	}
	v, err := scalar(s, name+"(input.row."+c+", ...)")
	if err != nil {
		return nil, err
	}
	kind := map[string]exprKind{"startswith": exprStarts, "endswith": exprEnds, "contains": exprContains}[name]
	return &rowExpr{kind: kind, column: c, value: v}, nil
}

// scalar converts a known value to an argument: string, bool, int64, or a
// float64 that is exactly the number written (a value that would change on
// the way to SQL is an error, never rounded).
func scalar(t *ast.Term, where string) (any, error) {
	switch v := t.Value.(type) {
	case ast.String:
		if !utf8.ValidString(string(v)) || strings.IndexByte(string(v), 0) >= 0 {
			return nil, fmt.Errorf("%s: a string that is not valid UTF-8 or holds a NUL byte", where)
		}
		return string(v), nil
	case ast.Boolean:
		return bool(v), nil
	case ast.Number:
		if i, ok := v.Int64(); ok {
			return i, nil
		}
		exact, ok := new(big.Rat).SetString(string(v))
		f, fok := v.Float64()
		if !ok || !fok {
			return nil, fmt.Errorf("%s: a number out of range", where)
		}
		shortest, _ := new(big.Rat).SetString(strconv.FormatFloat(f, 'g', -1, 64))
		if shortest == nil || shortest.Cmp(exact) != 0 {
			return nil, fmt.Errorf("%s: a number that cannot be passed exactly", where)
		}
		return f, nil
	case ast.Var:
		return nil, fmt.Errorf("%s: compared with a value computed from the row; %s", where, errFragment)
	case ast.Ref, ast.Call:
		return nil, fmt.Errorf("%s: compared with something that is not a known value; %s", where, errFragment)
	}
	return nil, fmt.Errorf("%s: compared with a %s; only strings, numbers, booleans and null can be passed to SQL", where, ast.ValueName(t.Value))
}

// sqlWriter renders rowExprs with $n placeholders numbered from base+1.
type sqlWriter struct {
	b    strings.Builder
	base int
	args []any
}

func (w *sqlWriter) arg(v any) {
	w.args = append(w.args, v)
	w.b.WriteByte('$')
	w.b.WriteString(strconv.Itoa(w.base + len(w.args)))
}

func (w *sqlWriter) ident(s string) {
	w.b.WriteByte('"')
	w.b.WriteString(strings.ReplaceAll(s, `"`, `""`))
	w.b.WriteByte('"')
}

// precedence of a node as rendered: OR 1, AND 2, everything else 3.
func (x *rowExpr) prec() int {
	switch {
	case x.kind == exprOr, x.kind == exprIn && x.nullIn && len(x.values) > 0:
		return 1
	case x.kind == exprAnd:
		return 2
	}
	return 3
}

func (w *sqlWriter) expr(x *rowExpr, parent int) {
	if x.prec() < parent {
		w.b.WriteByte('(')
		defer w.b.WriteByte(')')
	}
	switch x.kind {
	case exprTrue:
		w.b.WriteString("true")
	case exprFalse:
		w.b.WriteString("false")
	case exprAnd, exprOr:
		sep := " AND "
		if x.kind == exprOr {
			sep = " OR "
		}
		for i, k := range x.kids {
			if i > 0 {
				w.b.WriteString(sep)
			}
			w.expr(k, x.prec()+1)
		}
	case exprNot:
		w.b.WriteString("NOT (")
		w.expr(x.kids[0], 0)
		w.b.WriteByte(')')
	case exprCmp:
		w.ident(x.column)
		w.b.WriteString(" " + x.op + " ")
		w.arg(x.value)
	case exprColCmp:
		w.ident(x.column)
		w.b.WriteString(" " + x.op + " ")
		w.ident(x.other)
	case exprIn:
		if len(x.values) > 0 {
			w.ident(x.column)
			w.b.WriteString(" IN (")
			for i, v := range x.values {
				if i > 0 {
					w.b.WriteString(", ")
				}
				w.arg(v)
			}
			w.b.WriteByte(')')
		}
		if x.nullIn {
			if len(x.values) > 0 {
				w.b.WriteString(" OR ")
			}
			w.ident(x.column)
			w.b.WriteString(" IS NULL")
		}
	case exprIsNull:
		w.ident(x.column)
		w.b.WriteString(" IS NULL")
	case exprNotNull:
		w.ident(x.column)
		w.b.WriteString(" IS NOT NULL")
	case exprStarts:
		w.b.WriteString("starts_with(")
		w.ident(x.column)
		w.b.WriteString(", ")
		w.arg(x.value)
		w.b.WriteByte(')')
	case exprEnds:
		w.b.WriteString("right(")
		w.ident(x.column)
		w.b.WriteString(", ")
		w.arg(int64(utf8.RuneCountInString(x.value.(string))))
		w.b.WriteString(") = ")
		w.arg(x.value)
	case exprContains:
		w.b.WriteString("strpos(")
		w.ident(x.column)
		w.b.WriteString(", ")
		w.arg(x.value)
		w.b.WriteString(") > 0")
	}
}

// render is x as SQL with its arguments, placeholders from $(base+1).
func render(x *rowExpr, base int) (string, []any) {
	w := sqlWriter{base: base}
	w.expr(x, 0)
	return w.b.String(), w.args
}

// renderKey identifies a condition.
func renderKey(x *rowExpr) string {
	sql, args := render(x, 0)
	return fmt.Sprintf("%s\x00%#v", sql, args)
}

// conjunction ANDs conditions, dropping repeated conjuncts (a user's select
// and update rules are often the same, or one extends the other).
func conjunction(xs []*rowExpr) *rowExpr {
	seen := map[string]bool{}
	var kids []*rowExpr
	var flat []*rowExpr
	for _, x := range xs {
		if x.kind == exprAnd {
			flat = append(flat, x.kids...)
		} else {
			flat = append(flat, x)
		}
	}
	for _, x := range flat {
		if x.kind == exprFalse {
			return rowFalse
		}
		if x.kind == exprTrue {
			continue
		}
		k := renderKey(x)
		if !seen[k] {
			seen[k] = true
			kids = append(kids, x)
		}
	}
	return andOf(kids)
}

// mergeFilter ANDs a condition from Rego row rules into the SQL-form filter
// the decision carries for the same table, if any. The SQL form must be one
// expression whose $n are its own arguments (checked here, as rewrite would):
// otherwise parentheses around it could change what it means, or a $n could
// point at a Rego argument.
func mergeFilter(sqlForm decision.Filter, x *rowExpr) (decision.Filter, error) {
	if x.kind == exprFalse {
		return decision.Filter{SQL: "false"}, nil
	}
	if x.kind == exprTrue {
		return sqlForm, nil
	}
	if err := checkSQLForm(sqlForm); err != nil {
		return decision.Filter{}, err
	}
	sql, args := render(x, len(sqlForm.Args))
	return decision.Filter{
		SQL:  "(" + sqlForm.SQL + "\n) AND (" + sql + ")",
		Args: append(append([]any(nil), sqlForm.Args...), args...),
	}, nil
}

// sqlTemplate is "SELECT 1 WHERE true" without its WHERE clause.
var sqlTemplate = sync.OnceValue(func() *pg_query.SelectStmt {
	res, err := pg_query.Parse("SELECT 1 WHERE true")
	if err != nil {
		panic(err)
	}
	s := res.Stmts[0].Stmt.GetSelectStmt()
	s.WhereClause = nil
	return s
})

func checkSQLForm(f decision.Filter) error {
	res, err := pg_query.Parse("SELECT 1 WHERE " + f.SQL)
	if err != nil || len(res.Stmts) != 1 || res.Stmts[0].Stmt.GetSelectStmt() == nil {
		return errors.New("its SQL-form filter is not one SQL expression")
	}
	s := res.Stmts[0].Stmt.GetSelectStmt()
	where := s.WhereClause
	s.WhereClause = nil
	if where == nil || !proto.Equal(s, sqlTemplate()) {
		return errors.New("its SQL-form filter is not one SQL expression")
	}
	toks, err := pg_query.Scan(f.SQL)
	if err != nil {
		return errors.New("its SQL-form filter is not one SQL expression")
	}
	for _, tok := range toks.Tokens {
		if tok.Token != pg_query.Token_PARAM {
			continue
		}
		n, err := strconv.Atoi(strings.TrimPrefix(f.SQL[tok.Start:tok.End], "$"))
		if err != nil || n < 1 || n > len(f.Args) {
			return fmt.Errorf("its SQL-form filter uses %s but has %d arguments", f.SQL[tok.Start:tok.End], len(f.Args))
		}
	}
	return nil
}

// tableAccess is what a statement does to one table with row rules.
type tableAccess struct {
	t     *rowTable
	kinds map[string]bool
}

// apply adds the conditions of the row rules of the statement's tables to
// d (allowed). A non-empty deny means the statement must be denied with that
// reason; err, if set, is for the log.
func (rs *rowRuleSet) apply(ctx context.Context, in *decision.Input, session ast.Value, d *decision.Decision) (deny string, err error) {
	var touched map[string]*tableAccess
	for i := range in.Statement.Tables {
		st := &in.Statement.Tables[i]
		schema := st.Schema
		if schema == "" {
			schema = "public"
		}
		t := rs.tables[schema+"."+st.Name]
		if t == nil {
			continue
		}
		if touched == nil {
			touched = map[string]*tableAccess{}
		}
		ta := touched[t.name]
		if ta == nil {
			ta = &tableAccess{t: t, kinds: map[string]bool{}}
			touched[t.name] = ta
		}
		for _, k := range st.Access {
			ta.kinds[k] = true
		}
	}
	if touched == nil {
		return "", nil
	}
	names := make([]string, 0, len(touched))
	for n := range touched {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		ta := touched[name]
		var filters, checks []*rowExpr
		for k := range ta.kinds {
			switch k {
			case "select", "update", "delete", "insert", "truncate":
			default:
				return fmt.Sprintf("denied: %s has row rules, and the statement's access %q to it has none", name, k), nil
			}
		}
		for _, want := range []struct{ kind, rule string }{
			{"select", "rows.select"}, {"update", "rows.update"}, {"delete", "rows.delete"},
			{"truncate", "rows.delete"},
		} {
			if !ta.kinds[want.kind] {
				continue
			}
			c, err := rs.cond(ctx, ta.t.rules[want.rule], session)
			if c.deny != "" {
				return c.deny, err
			}
			if want.kind == "truncate" {
				if c.expr.kind != exprTrue {
					return fmt.Sprintf("denied: TRUNCATE removes every row of %s, and its row rule %s does not allow this session to delete every row", name, ta.t.rules[want.rule].label), nil
				}
				continue
			}
			filters = append(filters, c.expr)
		}
		for _, want := range []struct{ kind, rule string }{{"insert", "new_rows.insert"}, {"update", "new_rows.update"}} {
			if !ta.kinds[want.kind] {
				continue
			}
			c, err := rs.cond(ctx, ta.t.rules[want.rule], session)
			if c.deny != "" {
				return c.deny, err
			}
			checks = append(checks, c.expr)
		}
		if d.Filters, err = addCondition(d.Filters, name, filters); err != nil {
			return fmt.Sprintf("denied: the row filter for %s cannot be combined: %v", name, err), err
		}
		if d.Checks, err = addCondition(d.Checks, name, checks); err != nil {
			return fmt.Sprintf("denied: the row check for %s cannot be combined: %v", name, err), err
		}
	}
	return "", nil
}

// addCondition ANDs xs into m[name] (allocating m when needed). A
// condition that allows every row adds nothing.
func addCondition(m map[string]decision.Filter, name string, xs []*rowExpr) (map[string]decision.Filter, error) {
	if len(xs) == 0 {
		return m, nil
	}
	x := conjunction(xs)
	if x.kind == exprTrue {
		return m, nil
	}
	var f decision.Filter
	if prev, had := m[name]; had {
		var err error
		if f, err = mergeFilter(prev, x); err != nil {
			return m, err
		}
	} else {
		f.SQL, f.Args = render(x, 0)
	}
	if m == nil {
		m = map[string]decision.Filter{}
	}
	m[name] = f
	return m, nil
}

// cond is rule's condition for session, from the cache or computed.
func (rs *rowRuleSet) cond(ctx context.Context, r *rowRule, session ast.Value) (*rowCond, error) {
	if !r.defined {
		return &rowCond{expr: rowFalse}, nil
	}
	key := r.cacheKey(session)
	if c, ok := rs.cache.Get(key); ok {
		return c, nil
	}
	input := ast.NewObject(ast.Item(kSession, ast.NewTerm(session)))
	pq, err := r.query.Partial(ctx, rego.EvalParsedInput(input), rego.EvalParsedUnknowns(inputRowUnknown), rego.EvalRuleIndexing(false))
	if err != nil {
		c := &rowCond{deny: "denied: the row rule " + r.label + " failed while deciding", err: fmt.Errorf("%s: %w", r.label, err)}
		if ctx.Err() == nil {
			rs.cache.Add(key, c)
		}
		return c, c.err
	}
	x, err := translate(pq, rs.tables[r.table])
	var c *rowCond
	switch {
	case err != nil:
		c = &rowCond{deny: "denied: the row rule " + r.label + " cannot be turned into SQL: " + err.Error(), err: fmt.Errorf("%s: %w", r.label, err)}
	case x.kind == exprFalse:
		c = &rowCond{expr: x}
		if p := missingPath(session, r.session); p != "" {
			c = &rowCond{deny: fmt.Sprintf("denied: the row rule %s needs input.session.%s, which this session does not have", r.label, p)}
		}
	default:
		c = &rowCond{expr: x}
	}
	rs.cache.Add(key, c)
	return c, c.err
}

// cacheKey is the rule and the values of the session paths it reads.
func (r *rowRule) cacheKey(session ast.Value) string {
	var b strings.Builder
	b.WriteString(r.label)
	for _, p := range r.session {
		b.WriteByte(0)
		if v := lookup(session, p); v != nil {
			b.WriteString(v.String())
		} else {
			b.WriteByte(1)
		}
	}
	return b.String()
}

// lookup follows path through objects; nil when a step is missing.
func lookup(v ast.Value, path []string) ast.Value {
	for _, k := range path {
		obj, ok := v.(ast.Object)
		if !ok {
			return nil
		}
		t := obj.Get(ast.InternedTerm(k))
		if t == nil {
			return nil
		}
		v = t.Value
	}
	return v
}

// missingPath names the first of paths the session lacks, or "".
func missingPath(session ast.Value, paths [][]string) string {
	for _, p := range paths {
		if lookup(session, p) == nil {
			return strings.Join(p, ".")
		}
	}
	return ""
}
