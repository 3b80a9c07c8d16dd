package rewrite

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"

	"github.com/dbalproxy/dbalproxy/decision"
)

// Rules is what a decision asks of one statement, keyed "schema.table".
// Unqualified references in a statement mean schema "public"; a key without
// a schema means "public" as well. Names are compared exactly, as PostgreSQL
// stores them (folded to lower case unless they were quoted).
type Rules struct {
	// Filters are row filters: rows outside the predicate are invisible
	// (like the USING expression of row-level security).
	Filters map[string]decision.Filter
	// Checks are conditions every row an INSERT, UPDATE or ON CONFLICT DO
	// UPDATE writes must satisfy (like the WITH CHECK expression of
	// row-level security); the statement fails with 42501 otherwise. They
	// have the form of filters; their columns are the new row's.
	Checks map[string]decision.Filter
	// Columns are the columns that may not be read or written.
	Columns map[string]decision.ColumnRule
}

// Compiled is a Rules set whose filter predicates were parsed, checked and
// bound once. It is immutable and safe for concurrent use; compute it once
// per principal, table set and policy version and reuse it for every
// statement.
type Compiled struct {
	filters map[tableKey]*filter
	checks  map[tableKey]*filter
	columns map[tableKey]*columnRule
	// hasRead is true when some column rule forbids reads.
	hasRead bool
}

// tableKey identifies a table: schema and name as PostgreSQL stores them.
type tableKey struct{ schema, name string }

func (k tableKey) String() string { return k.schema + "." + k.name }

// filter is one compiled row filter.
type filter struct {
	key tableKey
	// expr is the predicate with its $n replaced by constants and every
	// column reference unqualified (one field); instance qualifies a copy.
	expr *pg_query.Node
	// columns are the columns expr reads, sorted.
	columns []string
}

// columnRule is one table's compiled column rule.
type columnRule struct {
	table               string // "schema.table", for messages
	read, write         map[string]bool
	readList, writeList []string // sorted
}

// Compile parses and checks the filters of r and indexes its column rules.
//
// A filter's SQL is parsed as the WHERE clause of "SELECT 1 WHERE <sql>" and
// must be nothing more than that expression. Its $n become constants built
// from Args (string: a string literal; int, int32, int64, float64: a numeric
// literal; bool: true/false; nil: NULL; anything else is an error). Column
// references are bound to the protected table: an unqualified column, or one
// qualified with the table's own name (or schema and name), becomes a column
// of the table wherever the filter is placed; any other qualifier is an
// error. Subqueries are not allowed, and functions only from a short list of
// built-in, side-effect-free ones (see the package documentation). Any
// problem is an error: the caller must then refuse the statement.
func Compile(r Rules) (*Compiled, error) {
	c := &Compiled{
		filters: make(map[tableKey]*filter, len(r.Filters)),
		checks:  make(map[tableKey]*filter, len(r.Checks)),
		columns: make(map[tableKey]*columnRule, len(r.Columns)),
	}
	for _, name := range sortedKeys(r.Filters) {
		k, err := parseKey(name)
		if err != nil {
			return nil, fmt.Errorf("rewrite: filter key: %w", err)
		}
		if c.filters[k] != nil {
			return nil, fmt.Errorf("rewrite: two filters for %s", k)
		}
		f, err := compileFilter(k, r.Filters[name])
		if err != nil {
			return nil, fmt.Errorf("rewrite: filter for %s: %w", k, err)
		}
		c.filters[k] = f
	}
	for _, name := range sortedKeys(r.Checks) {
		k, err := parseKey(name)
		if err != nil {
			return nil, fmt.Errorf("rewrite: check key: %w", err)
		}
		if c.checks[k] != nil {
			return nil, fmt.Errorf("rewrite: two checks for %s", k)
		}
		f, err := compileFilter(k, r.Checks[name])
		if err != nil {
			return nil, fmt.Errorf("rewrite: check for %s: %w", k, err)
		}
		c.checks[k] = f
	}
	for _, name := range sortedKeys(r.Columns) {
		k, err := parseKey(name)
		if err != nil {
			return nil, fmt.Errorf("rewrite: column rule key: %w", err)
		}
		if c.columns[k] != nil {
			return nil, fmt.Errorf("rewrite: two column rules for %s", k)
		}
		cr, err := compileColumns(k, r.Columns[name])
		if err != nil {
			return nil, fmt.Errorf("rewrite: column rule for %s: %w", k, err)
		}
		if cr == nil {
			continue
		}
		c.columns[k] = cr
		if len(cr.readList) > 0 {
			c.hasRead = true
		}
	}
	return c, nil
}

// empty reports whether c asks for nothing.
func (c *Compiled) empty() bool {
	return c == nil || (len(c.filters) == 0 && len(c.checks) == 0 && len(c.columns) == 0)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// parseKey splits "schema.table" ("table" meaning "public.table").
func parseKey(s string) (tableKey, error) {
	schema, name, ok := strings.Cut(s, ".")
	if !ok {
		schema, name = "public", s
	}
	if schema == "" || name == "" || strings.Contains(name, ".") {
		return tableKey{}, fmt.Errorf("%q is not \"schema.table\"", s)
	}
	return tableKey{schema, name}, nil
}

func compileColumns(k tableKey, r decision.ColumnRule) (*columnRule, error) {
	if len(r.DenyRead) == 0 && len(r.DenyWrite) == 0 {
		return nil, nil
	}
	cr := &columnRule{table: k.String(), read: map[string]bool{}, write: map[string]bool{}}
	for _, c := range r.DenyRead {
		if c == "" {
			return nil, errors.New("empty column name in deny_read")
		}
		cr.read[c] = true
	}
	for _, c := range r.DenyWrite {
		if c == "" {
			return nil, errors.New("empty column name in deny_write")
		}
		cr.write[c] = true
	}
	cr.readList = sortedKeys(cr.read)
	cr.writeList = sortedKeys(cr.write)
	return cr, nil
}

// filterPrefix is what a filter's SQL is appended to.
const filterPrefix = "SELECT 1 WHERE "

// template is "SELECT 1 WHERE true" without its WHERE clause: what a filter
// parse must equal once its WHERE clause is removed. version is the parse
// tree version Deparse is given.
var template = sync.OnceValues(func() (*pg_query.SelectStmt, int32) {
	res, err := pg_query.Parse(filterPrefix + "true")
	if err != nil || len(res.Stmts) != 1 || res.Stmts[0].Stmt.GetSelectStmt() == nil {
		panic(fmt.Sprintf("rewrite: cannot parse the filter template: %v", err))
	}
	s := res.Stmts[0].Stmt.GetSelectStmt()
	s.WhereClause = nil
	return s, res.Version
})

func compileFilter(k tableKey, f decision.Filter) (*filter, error) {
	sql := strings.TrimSpace(f.SQL)
	if sql == "" {
		return nil, errors.New("empty sql")
	}
	res, err := pg_query.Parse(filterPrefix + sql)
	if err != nil {
		return nil, fmt.Errorf("sql %q does not parse as an expression: %v", f.SQL, err)
	}
	if len(res.Stmts) != 1 || res.Stmts[0].Stmt.GetSelectStmt() == nil {
		return nil, fmt.Errorf("sql %q is not one expression", f.SQL)
	}
	s := res.Stmts[0].Stmt.GetSelectStmt()
	where := s.WhereClause
	s.WhereClause = nil
	if tmpl, _ := template(); where == nil || !proto.Equal(s, tmpl) {
		return nil, fmt.Errorf("sql %q is not one expression (it adds clauses to the statement)", f.SQL)
	}
	b := binder{key: k, args: f.Args}
	if err := b.bind(where); err != nil {
		return nil, fmt.Errorf("sql %q: %w", f.SQL, err)
	}
	return &filter{key: k, expr: where, columns: checkColumns(where)}, nil
}

// allowedFunctions are the functions a filter may call: built-in, without
// side effects, and unable to read other tables. A name may be written
// unqualified or with schema pg_catalog.
var allowedFunctions = map[string]bool{
	"lower": true, "upper": true, "btrim": true, "ltrim": true, "rtrim": true,
	"length": true, "char_length": true, "character_length": true, "octet_length": true,
	"substr": true, "substring": true, "starts_with": true, "split_part": true,
	"left": true, "right": true, "replace": true, "concat": true, "position": true, "strpos": true,
	"abs": true, "round": true, "floor": true, "ceil": true, "ceiling": true, "mod": true,
	"now": true, "date_trunc": true, "date_part": true, "extract": true, "timezone": true,
	"make_date": true, "to_timestamp": true,
	"cardinality": true, "array_length": true, "array_position": true,
	"jsonb_typeof": true, "json_typeof": true,
}

// binder checks a filter expression and binds it: $n become constants and
// column references lose their (own table) qualifier.
type binder struct {
	key  tableKey
	args []any
}

func (b *binder) bind(n *pg_query.Node) error {
	if n == nil {
		return nil
	}
	switch x := n.Node.(type) {
	case *pg_query.Node_ParamRef:
		i := int(x.ParamRef.Number)
		if i < 1 || i > len(b.args) {
			return fmt.Errorf("$%d has no argument (%d given)", i, len(b.args))
		}
		c, err := constant(b.args[i-1])
		if err != nil {
			return fmt.Errorf("argument $%d: %w", i, err)
		}
		n.Node = c.Node
		return nil
	case *pg_query.Node_ColumnRef:
		return b.column(x.ColumnRef)
	case *pg_query.Node_AConst, *pg_query.Node_SqlvalueFunction:
		return nil
	case *pg_query.Node_String_:
		// field names in A_Indirection
		return nil
	case *pg_query.Node_SubLink:
		return errors.New("subqueries are not allowed in a filter")
	case *pg_query.Node_AExpr:
		if err := operatorName(x.AExpr.Name); err != nil {
			return err
		}
	case *pg_query.Node_FuncCall:
		if err := b.function(x.FuncCall); err != nil {
			return err
		}
	case *pg_query.Node_TypeCast:
		if tn := x.TypeCast.TypeName; tn != nil && (len(tn.Typmods) > 0 || len(tn.ArrayBounds) > 0) {
			for _, m := range append(append([]*pg_query.Node(nil), tn.Typmods...), tn.ArrayBounds...) {
				if m.GetAConst() == nil && m.GetInteger() == nil {
					return errors.New("type modifiers must be constants")
				}
			}
		}
	case *pg_query.Node_BoolExpr, *pg_query.Node_NullTest, *pg_query.Node_BooleanTest,
		*pg_query.Node_CoalesceExpr, *pg_query.Node_MinMaxExpr, *pg_query.Node_CaseExpr,
		*pg_query.Node_CaseWhen, *pg_query.Node_AArrayExpr, *pg_query.Node_RowExpr,
		*pg_query.Node_List, *pg_query.Node_AIndirection, *pg_query.Node_AIndices,
		*pg_query.Node_CollateClause:
	default:
		return fmt.Errorf("%s is not allowed in a filter", nodeName(n))
	}
	for _, k := range exprChildren(n) {
		if err := b.bind(k); err != nil {
			return err
		}
	}
	return nil
}

// column binds a column reference to the protected table.
func (b *binder) column(c *pg_query.ColumnRef) error {
	names := make([]string, 0, len(c.Fields))
	for _, f := range c.Fields {
		s := f.GetString_()
		if s == nil {
			return errors.New("* is not allowed in a filter")
		}
		names = append(names, s.Sval)
	}
	switch {
	case len(names) == 1:
	case len(names) == 2 && names[0] == b.key.name,
		len(names) == 3 && names[0] == b.key.schema && names[1] == b.key.name:
		c.Fields = c.Fields[len(names)-1:]
	default:
		return fmt.Errorf("column reference %s is not a column of %s", strings.Join(names, "."), b.key)
	}
	return nil
}

func (b *binder) function(fc *pg_query.FuncCall) error {
	names := make([]string, 0, 2)
	for _, f := range fc.Funcname {
		names = append(names, f.GetString_().GetSval())
	}
	name := names[len(names)-1]
	if len(names) > 2 || (len(names) == 2 && names[0] != "pg_catalog") || !allowedFunctions[name] {
		return fmt.Errorf("function %s is not allowed in a filter", strings.Join(names, "."))
	}
	if fc.AggStar || fc.AggDistinct || fc.AggFilter != nil || len(fc.AggOrder) > 0 || fc.Over != nil || fc.AggWithinGroup || fc.FuncVariadic {
		return fmt.Errorf("function %s: aggregates, window functions and VARIADIC are not allowed in a filter", name)
	}
	return nil
}

// operatorName allows built-in operators: unqualified or in pg_catalog.
func operatorName(name []*pg_query.Node) error {
	if len(name) <= 1 {
		return nil
	}
	if len(name) == 2 && name[0].GetString_().GetSval() == "pg_catalog" {
		return nil
	}
	return errors.New("schema-qualified operators are not allowed in a filter")
}

// exprChildren returns the sub-expressions of the expression node kinds a
// filter may contain.
func exprChildren(n *pg_query.Node) []*pg_query.Node {
	switch x := n.Node.(type) {
	case *pg_query.Node_AExpr:
		return []*pg_query.Node{x.AExpr.Lexpr, x.AExpr.Rexpr}
	case *pg_query.Node_BoolExpr:
		return x.BoolExpr.Args
	case *pg_query.Node_NullTest:
		return []*pg_query.Node{x.NullTest.Arg}
	case *pg_query.Node_BooleanTest:
		return []*pg_query.Node{x.BooleanTest.Arg}
	case *pg_query.Node_TypeCast:
		return []*pg_query.Node{x.TypeCast.Arg}
	case *pg_query.Node_FuncCall:
		return x.FuncCall.Args
	case *pg_query.Node_CoalesceExpr:
		return x.CoalesceExpr.Args
	case *pg_query.Node_MinMaxExpr:
		return x.MinMaxExpr.Args
	case *pg_query.Node_CaseExpr:
		return append([]*pg_query.Node{x.CaseExpr.Arg, x.CaseExpr.Defresult}, x.CaseExpr.Args...)
	case *pg_query.Node_CaseWhen:
		return []*pg_query.Node{x.CaseWhen.Expr, x.CaseWhen.Result}
	case *pg_query.Node_AArrayExpr:
		return x.AArrayExpr.Elements
	case *pg_query.Node_RowExpr:
		return x.RowExpr.Args
	case *pg_query.Node_List:
		return x.List.Items
	case *pg_query.Node_AIndirection:
		return append([]*pg_query.Node{x.AIndirection.Arg}, x.AIndirection.Indirection...)
	case *pg_query.Node_AIndices:
		return []*pg_query.Node{x.AIndices.Lidx, x.AIndices.Uidx}
	case *pg_query.Node_CollateClause:
		return []*pg_query.Node{x.CollateClause.Arg}
	}
	return nil
}

// nodeName names a node's kind for messages, e.g. "SubLink".
func nodeName(n *pg_query.Node) string {
	m := unwrap(n)
	if m == nil {
		return "an empty node"
	}
	return string(m.ProtoReflect().Descriptor().Name())
}

// constant turns a filter argument into a constant node.
func constant(v any) (*pg_query.Node, error) {
	c := &pg_query.A_Const{Location: -1}
	switch x := v.(type) {
	case nil:
		c.Isnull = true
	case string:
		if !utf8.ValidString(x) || strings.IndexByte(x, 0) >= 0 {
			return nil, errors.New("string is not valid UTF-8 or contains a NUL byte")
		}
		c.Val = &pg_query.A_Const_Sval{Sval: &pg_query.String{Sval: x}}
	case bool:
		c.Val = &pg_query.A_Const_Boolval{Boolval: &pg_query.Boolean{Boolval: x}}
	case int:
		return intConstant(int64(x)), nil
	case int32:
		return intConstant(int64(x)), nil
	case int64:
		return intConstant(x), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("%v is not a finite number", x)
		}
		s := strconv.FormatFloat(x, 'g', -1, 64)
		if !strings.ContainsAny(s, ".e") {
			s += ".0" // keep it numeric, not integer
		}
		c.Val = &pg_query.A_Const_Fval{Fval: &pg_query.Float{Fval: s}}
	default:
		return nil, fmt.Errorf("%T is not a string, number, bool or null", v)
	}
	return &pg_query.Node{Node: &pg_query.Node_AConst{AConst: c}}, nil
}

func intConstant(i int64) *pg_query.Node {
	c := &pg_query.A_Const{Location: -1}
	if i >= math.MinInt32 && i <= math.MaxInt32 {
		c.Val = &pg_query.A_Const_Ival{Ival: &pg_query.Integer{Ival: int32(i)}}
	} else {
		c.Val = &pg_query.A_Const_Fval{Fval: &pg_query.Float{Fval: strconv.FormatInt(i, 10)}}
	}
	return &pg_query.Node{Node: &pg_query.Node_AConst{AConst: c}}
}

// instance returns a fresh copy of the predicate whose column references are
// qualified with qual (the alias or name the protected table has where the
// predicate is placed).
func (f *filter) instance(qual string) *pg_query.Node {
	n := proto.Clone(f.expr).(*pg_query.Node)
	qualify(n, qual)
	return n
}

func qualify(n *pg_query.Node, qual string) {
	if n == nil {
		return
	}
	if c := n.GetColumnRef(); c != nil {
		c.Fields = append([]*pg_query.Node{pg_query.MakeStrNode(qual)}, c.Fields...)
		return
	}
	for _, k := range exprChildren(n) {
		qualify(k, qual)
	}
}
