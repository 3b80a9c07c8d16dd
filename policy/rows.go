package policy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
)

// Row rules written in Rego.
//
//	rows["schema.table"].select  if { ... input.row.<column> ... }   which rows reads see
//	rows["schema.table"].update  if { ... }                           which rows UPDATE may change
//	rows["schema.table"].delete  if { ... }                           which rows DELETE may remove
//	new_rows["schema.table"].insert if { ... }                        which rows INSERT may write
//	new_rows["schema.table"].update if { ... }                        what an UPDATE may turn a row into
//	row_columns["schema.table"] := {"col", ...}                       the columns the rules may use
//
// all in package dbal. At decision time, for every table of an allowed
// statement that has row rules, the rules of the statement's access kinds
// are partially evaluated with input.session known and input.row unknown;
// the residual conditions become the decision's filters (rows) and checks
// (new_rows) in the {"sql", "args"} form, columns as quoted identifiers and
// every value an argument. Results are cached per policy set, table, rule
// and the session values the rule reads.

// Families of row rules and the operations each may define.
const (
	familyRows    = "rows"
	familyNewRows = "new_rows"
)

var familyOps = map[string][]string{
	familyRows:    {"select", "update", "delete"},
	familyNewRows: {"insert", "update"},
}

var (
	rowsPrefix      = ast.MustParseRef("data.dbal.rows")
	newRowsPrefix   = ast.MustParseRef("data.dbal.new_rows")
	rowColumnsQuery = "data.dbal.row_columns"
	inputRowUnknown = []*ast.Term{ast.MustParseTerm("input.row")}
	kRow            = ast.StringTerm("row")
	// principalFields are the parts of input.session row rules may read.
	principalFields = map[string]bool{"user": true, "role": true, "claims": true}
	rowCacheSize    = 10000
)

// rowRuleSet is the compiled row rules of one policy set. It is immutable
// but for its cache.
type rowRuleSet struct {
	tables map[string]*rowTable
	cache  *lru.Cache[string, *rowCond]
}

// rowTable is one table's row rules.
type rowTable struct {
	name    string          // "schema.table"
	columns map[string]bool // row_columns[name]
	rules   map[string]*rowRule
}

// rowRule is one family and operation of one table, e.g.
// rows["public.users"].select.
type rowRule struct {
	table, family, op string
	// label is how messages name it: rows["public.users"].select
	label string
	// defined is false when no rule defines it: it allows no row.
	defined bool
	query   rego.PreparedPartialQuery
	// session lists the paths under input.session that the rule (and
	// everything it calls) reads: the cache key and the values a session
	// must have.
	session [][]string
}

// rowCond is the outcome of one rule for one session: a condition, or a
// reason to deny.
type rowCond struct {
	expr *rowExpr // never nil when deny == ""
	deny string   // for the client
	err  error    // for the log (with deny)
}

// buildRowRules finds, checks and prepares the row rules of a compiled set.
// It returns nil when the set has none. Rules of the wrong shape, rules that
// read anything of input but input.row and input.session, use an undeclared
// column, or call a non-deterministic built-in refuse the set.
func buildRowRules(ctx context.Context, c *ast.Compiler, store storage.Store) (*rowRuleSet, error) {
	rules := append(c.GetRulesWithPrefix(rowsPrefix), c.GetRulesWithPrefix(newRowsPrefix)...)
	if len(rules) == 0 {
		return nil, nil
	}
	byKey := map[[3]string][]*ast.Rule{}
	for _, r := range rules {
		family, table, op, err := rowRuleName(r)
		if err != nil {
			return nil, err
		}
		k := [3]string{table, family, op}
		byKey[k] = append(byKey[k], r)
	}
	columns, err := rowColumns(ctx, c, store)
	if err != nil {
		return nil, err
	}
	set := &rowRuleSet{tables: map[string]*rowTable{}}
	set.cache, _ = lru.New[string, *rowCond](rowCacheSize)
	keys := make([][3]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return slices.Compare(keys[i][:], keys[j][:]) < 0 })
	for _, k := range keys {
		table, family, op := k[0], k[1], k[2]
		t := set.tables[table]
		if t == nil {
			cols, ok := columns[table]
			if !ok {
				return nil, fmt.Errorf("row rules for %s: declare the columns they use in row_columns[%q]", table, table)
			}
			t = &rowTable{name: table, columns: cols, rules: map[string]*rowRule{}}
			for f, ops := range familyOps {
				for _, o := range ops {
					t.rules[f+"."+o] = &rowRule{table: table, family: f, op: o, label: ruleLabel(f, table, o)}
				}
			}
			set.tables[table] = t
		}
		rr := t.rules[family+"."+op]
		rr.defined = true
		if rr.session, err = checkRowClosure(c, byKey[k], rr.label, t); err != nil {
			return nil, err
		}
		ref := ast.MustParseRef("data.dbal").Append(ast.StringTerm(family)).Append(ast.StringTerm(table)).Append(ast.StringTerm(op))
		rr.query, err = rego.New(
			rego.ParsedQuery(ast.NewBody(ast.NewExpr(ast.NewTerm(ref)))),
			rego.Compiler(c),
			rego.Store(store),
			rego.StrictBuiltinErrors(true),
		).PrepareForPartial(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: prepare: %w", rr.label, err)
		}
		if err := checkRowFragment(ctx, rr); err != nil {
			return nil, err
		}
	}
	return set, nil
}

// allowUnknowns are the unknowns of the load-time check: the row and the
// session, so that every branch of a rule stays in the residual.
var allowUnknowns = []*ast.Term{ast.MustParseTerm("input.row"), ast.MustParseTerm("input.session")}

// checkRowFragment refuses, at load, row rules that no session could turn
// into SQL: it partially evaluates the rule with the session unknown too,
// so every branch remains, and looks at each expression that uses the row.
// A bare input.row.<column>, a function applied to a column, or a built-in
// other than the comparisons, in, startswith, endswith and contains would
// deny every statement that reaches it. (What depends on session values is
// checked again at decision time.)
func checkRowFragment(ctx context.Context, r *rowRule) error {
	pq, err := r.query.Partial(ctx, rego.EvalParsedUnknowns(allowUnknowns), rego.EvalRuleIndexing(false))
	if err != nil {
		return nil // decided per session, where an error denies
	}
	bodies := slices.Clone(pq.Queries)
	for _, m := range pq.Support {
		for _, rule := range m.Rules {
			bodies = append(bodies, rule.Body)
		}
	}
	for _, body := range bodies {
		for _, e := range body {
			if err := fragmentExpr(e); err != nil {
				where := ""
				if l := e.Loc(); l != nil && l.File != "" {
					where = fmt.Sprintf("%s:%d: ", l.File, l.Row)
				}
				return fmt.Errorf("%s%s cannot be turned into SQL: %v", where, r.label, err)
			}
		}
	}
	return nil
}

var fragmentOps = map[string]bool{
	"eq": true, "equal": true, "neq": true, "lt": true, "lte": true, "gt": true, "gte": true,
	"internal.member_2": true, "startswith": true, "endswith": true, "contains": true,
}

func usesRow(x any) bool {
	found := false
	ast.WalkRefs(x, func(ref ast.Ref) bool {
		if ref.HasPrefix(inputRowUnknown[0].Value.(ast.Ref)) {
			found = true
		}
		return found
	})
	return found
}

func fragmentExpr(e *ast.Expr) error {
	if !usesRow(e) {
		return nil
	}
	switch {
	case len(e.With) > 0:
		return errors.New("`with` is not allowed in row rules")
	case e.IsEvery():
		return errors.New("`every` over row values is not supported")
	case !e.IsCall():
		return errors.New("a bare reference to a row value (compare it: input.row.<column> == true)")
	}
	name := e.Operator().String()
	if !fragmentOps[name] {
		return fmt.Errorf("%s is applied to a row value; %s", builtinLabel(name), errFragment)
	}
	for _, op := range e.Operands() {
		if _, isRef := op.Value.(ast.Ref); isRef || !usesRow(op) {
			continue
		}
		if call, ok := op.Value.(ast.Call); ok {
			return fmt.Errorf("%s is applied to a row value; %s", builtinLabel(call[0].String()), errFragment)
		}
		return fmt.Errorf("a row value inside a %s; %s", ast.ValueName(op.Value), errFragment)
	}
	return nil
}

func ruleLabel(family, table, op string) string {
	return fmt.Sprintf("%s[%q].%s", family, table, op)
}

// rowRuleName checks that r is `rows["schema.table"].<op> if { ... }` (or
// new_rows) and returns its parts.
func rowRuleName(r *ast.Rule) (family, table, op string, err error) {
	ref := r.Ref()
	loc := ""
	if l := r.Loc(); l != nil {
		loc = fmt.Sprintf("%s:%d: ", l.File, l.Row)
	}
	want := func(msg string) error {
		return fmt.Errorf("%srow rule %v: %s (want rows[\"schema.table\"].select|update|delete or new_rows[\"schema.table\"].insert|update, defined with `if`)", loc, ref, msg)
	}
	if len(ref) != 5 {
		return "", "", "", want("wrong shape")
	}
	for i := 2; i < 5; i++ {
		if _, ok := ref[i].Value.(ast.String); !ok {
			if _, ok := ref[i].Value.(ast.Var); !ok || i != 2 {
				return "", "", "", want("table and operation must be constant strings")
			}
		}
	}
	family = strings.Trim(ref[2].String(), `"`)
	table = string(ref[3].Value.(ast.String))
	op = string(ref[4].Value.(ast.String))
	if !slices.Contains(familyOps[family], op) {
		return "", "", "", want(fmt.Sprintf("unknown operation %q", op))
	}
	if schema, name, ok := strings.Cut(table, "."); !ok || schema == "" || name == "" || strings.Contains(name, ".") {
		return "", "", "", want(fmt.Sprintf("table %q is not \"schema.table\"", table))
	}
	switch {
	case len(r.Head.Args) > 0:
		return "", "", "", want("a row rule is not a function")
	case r.Default:
		return "", "", "", want("a row rule may not have a default (an undefined rule already allows no row)")
	case r.Else != nil:
		return "", "", "", want("a row rule may not use else (write separate rules; each one allows more rows)")
	case r.Head.RuleKind() != ast.SingleValue:
		return "", "", "", want("a row rule is a boolean, not a set")
	case r.Head.Value == nil || !r.Head.Value.Equal(ast.InternedTerm(true)):
		return "", "", "", want("a row rule's value must be true")
	}
	return family, table, op, nil
}

// rowColumns evaluates data.dbal.row_columns: {"schema.table": {"col", ...}}.
func rowColumns(ctx context.Context, c *ast.Compiler, store storage.Store) (map[string]map[string]bool, error) {
	rs, err := rego.New(rego.Query(rowColumnsQuery), rego.Compiler(c), rego.Store(store), rego.StrictBuiltinErrors(true)).Eval(ctx)
	if err != nil {
		return nil, fmt.Errorf("row_columns: %w", err)
	}
	out := map[string]map[string]bool{}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return out, nil
	}
	obj, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		return nil, errors.New(`row_columns must be an object {"schema.table": {"column", ...}}`)
	}
	for table, v := range obj {
		list, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("row_columns[%q] must be a set or array of column names", table)
		}
		cols := map[string]bool{}
		for _, e := range list {
			s, ok := e.(string)
			if !ok || !validColumn(s) {
				return nil, fmt.Errorf("row_columns[%q] holds %v, not a column name", table, e)
			}
			cols[s] = true
		}
		out[table] = cols
	}
	return out, nil
}

// validColumn: a name PostgreSQL could store (no NUL, valid UTF-8, at most
// 63 bytes).
func validColumn(s string) bool {
	return s != "" && len(s) <= 63 && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// checkRowClosure walks roots and every rule and function they depend on.
// Input references must be input.row.<declared column> or under
// input.session; non-deterministic built-ins and `with` are refused: the
// result is cached per session. It returns the session paths read.
func checkRowClosure(c *ast.Compiler, roots []*ast.Rule, label string, t *rowTable) ([][]string, error) {
	seen := map[*ast.Rule]bool{}
	queue := append([]*ast.Rule(nil), roots...)
	paths := map[string][]string{}
	var firstErr error
	fail := func(loc *ast.Location, format string, args ...any) {
		if firstErr != nil {
			return
		}
		where := ""
		if loc != nil {
			where = fmt.Sprintf("%s:%d: ", loc.File, loc.Row)
		}
		firstErr = fmt.Errorf("%s%s: %s", where, label, fmt.Sprintf(format, args...))
	}
	for len(queue) > 0 && firstErr == nil {
		r := queue[0]
		queue = queue[1:]
		if seen[r] {
			continue
		}
		seen[r] = true
		ast.WalkExprs(r, func(e *ast.Expr) bool {
			if len(e.With) > 0 {
				fail(e.Loc(), "`with` is not allowed in row rules")
			}
			if e.IsCall() {
				if b := ast.BuiltinMap[e.Operator().String()]; b != nil && b.Nondeterministic {
					fail(e.Loc(), "%s is not deterministic; row rules are evaluated once per session and cached", b.Name)
				}
			}
			return false
		})
		ast.WalkRefs(r, func(ref ast.Ref) bool {
			if !ref[0].Equal(ast.InputRootDocument) {
				return false
			}
			loc := ref[0].Location
			if len(ref) < 2 {
				fail(loc, "row rules may not use input as a whole, only input.row.<column> and input.session")
				return false
			}
			switch {
			case ref[1].Equal(kRow):
				var col ast.String
				ok := false
				if len(ref) >= 3 {
					col, ok = ref[2].Value.(ast.String)
				}
				switch {
				case !ok:
					fail(loc, "%v: use input.row.<column> with a constant column name", ref)
				case len(ref) > 3:
					fail(loc, "%v: row rules compare whole columns (input.row.<column>), not parts of them", ref)
				case !t.columns[string(col)]:
					fail(loc, "input.row.%s: %q is not a column of %s declared in row_columns[%q]", string(col), string(col), t.name, t.name)
				}
			case ref[1].Equal(kSession):
				field, ok := ast.String(""), false
				if len(ref) >= 3 {
					field, ok = ref[2].Value.(ast.String)
				}
				if !ok || !principalFields[string(field)] {
					fail(loc, "%v: row rules may read only input.session.user, .role and .claims (what identifies the principal: the proxy reuses a principal's plans across its sessions)", ref)
					return false
				}
				var p []string
				for _, x := range ref[2:] {
					s, ok := x.Value.(ast.String)
					if !ok {
						break
					}
					p = append(p, string(s))
				}
				paths[strings.Join(p, "\x00")] = p
			default:
				fail(loc, "%v: row rules may use only input.row and input.session (they are evaluated once per session, not per statement)", ref)
			}
			return false
		})
		for d := range c.Graph.Dependencies(r) {
			if dr, ok := d.(*ast.Rule); ok && !seen[dr] {
				queue = append(queue, dr)
			}
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	keys := make([]string, 0, len(paths))
	for k := range paths {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([][]string, len(keys))
	for i, k := range keys {
		out[i] = paths[k]
	}
	return out, nil
}

// RowColumns returns, for each table with Rego row rules in the current
// set, the columns its row_columns entry declares (sorted), keyed
// "schema.table"; nil when the set has no row rules or in ModeDisabled. A
// caller with a database connection can check them against the catalog
// (information_schema.columns): a declared column the table lacks makes
// every filtered statement on it fail at the backend (42703).
func (e *Engine) RowColumns() map[string][]string {
	s := e.set.Load()
	if s == nil || s.rows == nil {
		return nil
	}
	out := make(map[string][]string, len(s.rows.tables))
	for name, t := range s.rows.tables {
		cols := make([]string, 0, len(t.columns))
		for c := range t.columns {
			cols = append(cols, c)
		}
		sort.Strings(cols)
		out[name] = cols
	}
	return out
}
