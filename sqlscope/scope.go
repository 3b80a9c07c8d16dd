package sqlscope

import (
	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// Rel is one entry of a query level's range table: a name a column
// reference can be qualified with. T is what the walker keeps about it.
type Rel[T any] struct {
	// Name is the visible name: the alias, else the relation's own name.
	Name string
	// Schema is the schema as written, for an unaliased table reference.
	Schema string
	// Aliased is set when an alias hides the relation's own name (also
	// for sub-selects, functions and join aliases, which have no other).
	Aliased bool
	// QualifiedOnly rels (ON CONFLICT's EXCLUDED) never own an unqualified
	// column, are never expanded by a bare * and never are a whole-row
	// reference.
	QualifiedOnly bool
	// Info is the walker's own data.
	Info T
}

// RelOf is the Rel a FROM item or DML target rv defines: named by its alias
// if it has one, else by its own (schema-qualified) name.
func RelOf[T any](rv *pg_query.RangeVar) Rel[T] {
	r := Rel[T]{Name: rv.Relname, Schema: rv.Schemaname}
	if a := rv.Alias.GetAliasname(); a != "" {
		r.Name, r.Aliased = a, true
	}
	return r
}

// Scope is one query level.
type Scope[T any] struct {
	// Parent is the enclosing query level; nil at the top.
	Parent *Scope[T]
	// Rels is the level's range table, in the order FROM defines it.
	Rels []Rel[T]
	// CTEs are the names the level's WITH clause has made visible so far.
	CTEs []string
	// Opaque stops name resolution from reaching outer levels (the ORDER
	// BY of a set operation names output columns only).
	Opaque bool
	// Outputs are the select-list names (AS) of the level, which ORDER BY
	// and DISTINCT ON prefer to input columns; consulted while UseOutputs
	// is set (see IsOutput).
	Outputs    map[string]bool
	UseOutputs bool
	// Using are the level's JOIN ... USING column names, which a bare name
	// reaches unambiguously (through the join) though both sides have them.
	Using map[string]bool
}

// Child opens a new query level below s.
func (s *Scope[T]) Child() *Scope[T] { return &Scope[T]{Parent: s} }

// Sibling is the level a non-LATERAL sub-select in s's FROM clause sees:
// s's outer levels and the CTEs of s, but not s's range table.
func (s *Scope[T]) Sibling() *Scope[T] {
	return &Scope[T]{Parent: s.Parent, CTEs: s.CTEs}
}

// IsCTE reports whether an unqualified relation name refers to a CTE
// visible at s (which then hides a table of that name).
func (s *Scope[T]) IsCTE(name string) bool {
	for ; s != nil; s = s.Parent {
		for _, c := range s.CTEs {
			if c == name {
				return true
			}
		}
	}
	return false
}

// With registers the CTE names of wc in s and calls body for each CTE's
// query, in order. A recursive WITH makes every name visible to every
// body; a non-recursive CTE is visible only after its own definition, so
// `WITH users AS (SELECT * FROM users)` reads the table.
func (s *Scope[T]) With(wc *pg_query.WithClause, body func(*pg_query.CommonTableExpr)) {
	if wc == nil {
		return
	}
	if wc.Recursive {
		for _, c := range wc.Ctes {
			if cte := c.GetCommonTableExpr(); cte != nil {
				s.CTEs = append(s.CTEs, cte.Ctename)
			}
		}
	}
	for _, c := range wc.Ctes {
		cte := c.GetCommonTableExpr()
		if cte == nil {
			continue
		}
		body(cte)
		if !wc.Recursive {
			s.CTEs = append(s.CTEs, cte.Ctename)
		}
	}
}

// IsCTERef reports whether the FROM item rv is a reference to a CTE in
// scope rather than a relation: unqualified and named like one.
func (s *Scope[T]) IsCTERef(rv *pg_query.RangeVar) bool {
	return rv.Schemaname == "" && rv.Catalogname == "" && s.IsCTE(rv.Relname)
}

// SetOutputs records the select-list names (AS) of targets as the level's
// outputs.
func (s *Scope[T]) SetOutputs(targets []*pg_query.Node) {
	for _, t := range targets {
		if name := t.GetResTarget().GetName(); name != "" {
			if s.Outputs == nil {
				s.Outputs = make(map[string]bool)
			}
			s.Outputs[name] = true
		}
	}
}

// AddUsing records the column names of a JOIN ... USING list.
func (s *Scope[T]) AddUsing(cols []string) {
	if len(cols) == 0 {
		return
	}
	if s.Using == nil {
		s.Using = make(map[string]bool, len(cols))
	}
	for _, c := range cols {
		s.Using[c] = true
	}
}

// IsOutput reports whether a bare name is a select-list name of the
// level, which ORDER BY or DISTINCT ON (while UseOutputs is set) then
// means rather than an input column.
func (s *Scope[T]) IsOutput(name string) bool {
	return s.UseOutputs && s.Outputs[name]
}

// Reach yields the query levels a bare column name or * may resolve in,
// innermost first: those with a range table, up to the first opaque level
// without one.
func (s *Scope[T]) Reach(yield func(*Scope[T]) bool) {
	for ; s != nil; s = s.Parent {
		if len(s.Rels) == 0 {
			if s.Opaque {
				return
			}
			continue
		}
		if !yield(s) {
			return
		}
	}
}

// Nearest is the innermost level with a range table that a bare * expands
// (see Reach), or nil.
func (s *Scope[T]) Nearest() *Scope[T] {
	for lvl := range s.Reach {
		return lvl
	}
	return nil
}

// FindRel looks up a relation by its qualifier ([catalog.]schema.table or
// a name), innermost level first and, within a level, the latest entry
// first. A schema-qualified name matches only an unaliased reference to a
// table written in that schema or unqualified.
func (s *Scope[T]) FindRel(q []string) *Rel[T] {
	schema, name := "", q[len(q)-1]
	if len(q) >= 2 {
		schema = q[len(q)-2]
	}
	for ; s != nil; s = s.Parent {
		for i := len(s.Rels) - 1; i >= 0; i-- {
			r := &s.Rels[i]
			if r.Name != name {
				continue
			}
			if schema == "" {
				return r
			}
			if !r.Aliased && (r.Schema == schema || r.Schema == "") {
				return r
			}
		}
	}
	return nil
}

// Qualified finds the relation a qualified column reference names and
// how many of names qualify it. Without a star the longest qualifier that
// names a relation in scope wins, as in PostgreSQL: a.b.c is schema a,
// table b, column c, else table a, column b (and field c). With a star all
// of names is the qualifier. It returns nil when no relation in scope
// matches.
func (s *Scope[T]) Qualified(names []string, star bool) (*Rel[T], int) {
	if star {
		if len(names) == 0 || len(names) > 3 {
			return nil, 0
		}
		if r := s.FindRel(names); r != nil {
			return r, len(names)
		}
		return nil, 0
	}
	for take := min(len(names)-1, 3); take >= 1; take-- {
		if r := s.FindRel(names[:take]); r != nil {
			return r, take
		}
	}
	return nil, 0
}

// WholeRow finds the relation a bare name refers to as a whole row: the
// first of that name in the levels it reaches (see Reach), when no column
// has the name. It returns nil for a select-list name (see IsOutput) and
// when no relation has the name.
func (s *Scope[T]) WholeRow(name string) *Rel[T] {
	if s.IsOutput(name) {
		return nil
	}
	for lvl := range s.Reach {
		for i := range lvl.Rels {
			if r := &lvl.Rels[i]; !r.QualifiedOnly && r.Name == name {
				return r
			}
		}
	}
	return nil
}
