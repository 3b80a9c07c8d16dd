package catalog

import (
	"errors"
	"fmt"
)

// Relation is one table, view, foreign table or materialized view: its
// columns in order, as an INSERT without a column list or a `*` sees them.
type Relation struct {
	Schema, Name string
	// Table is true for an ordinary or partitioned table, whose column
	// defaults are PostgreSQL's own (a view's come from its base table).
	Table   bool
	Columns []Column
}

// Column is one column of a relation.
type Column struct {
	Name string
	// Default is the default expression as pg_get_expr prints it, "" for
	// none (NULL).
	Default string
	// Generated is a generated column (GENERATED ALWAYS AS (...) STORED).
	Generated bool
	// IdentityAlways is an identity column GENERATED ALWAYS.
	IdentityAlways bool
}

// Column returns the column of that name, or nil.
func (r *Relation) Column(name string) *Column {
	for i := range r.Columns {
		if r.Columns[i].Name == name {
			return &r.Columns[i]
		}
	}
	return nil
}

// Relations gives a database's relations; *Snapshot implements it. The
// rewriter takes one (rewrite.ApplyWith).
type Relations interface {
	// Relation returns the relation schema.name, or nil if it knows none.
	Relation(schema, name string) *Relation
}

// Relation returns the relation schema.name, or nil.
func (s *Snapshot) Relation(schema, name string) *Relation {
	return s.rels[schema+"."+name]
}

// columnQuery reads the columns of every user relation, in column order
// (not temporary ones: a policy's tables are never a session's own).
const columnQuery = `SELECT n.nspname, c.relname, c.relkind IN ('r', 'p'), a.attname,
	a.attgenerated <> '', a.attidentity = 'a',
	CASE WHEN a.attgenerated = '' THEN pg_catalog.pg_get_expr(d.adbin, d.adrelid) END
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'f', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%'
  AND n.nspname NOT LIKE 'pg\_temp\_%'
ORDER BY c.oid, a.attnum`

// maxColumns bounds the columns a snapshot keeps.
const maxColumns = 2000000

// loadRelations adds the rows of columnQuery to s, hashing them into h.
func (s *Snapshot) loadRelations(rows [][][]byte, h interface{ Write([]byte) (int, error) }) error {
	if len(rows) > maxColumns {
		return fmt.Errorf("catalog: %d columns, more than the %d the proxy keeps", len(rows), maxColumns)
	}
	s.rels = map[string]*Relation{}
	for _, row := range rows {
		if len(row) != 7 {
			return errors.New("catalog: unexpected pg_attribute row")
		}
		for _, c := range row {
			_, _ = h.Write(c)
			_, _ = h.Write([]byte{2})
		}
		key := string(row[0]) + "." + string(row[1])
		r := s.rels[key]
		if r == nil {
			r = &Relation{Schema: string(row[0]), Name: string(row[1]), Table: isTrue(row[2])}
			s.rels[key] = r
		}
		r.Columns = append(r.Columns, Column{Name: string(row[3]), Generated: isTrue(row[4]), IdentityAlways: isTrue(row[5]), Default: string(row[6])})
	}
	return nil
}
