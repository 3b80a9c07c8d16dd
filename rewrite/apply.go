package rewrite

import (
	"errors"
	"fmt"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"

	"github.com/dbalproxy/dbalproxy/catalog"
	"github.com/dbalproxy/dbalproxy/parser"
)

// sqlTextFunctions run SQL given as text, or read a table named by a string,
// where no rewrite can reach. They are refused while a row filter or a
// column read rule is in force. Matched by name in any schema.
var sqlTextFunctions = map[string]bool{
	"query_to_xml": true, "query_to_xmlschema": true, "query_to_xml_and_xmlschema": true,
	"table_to_xml": true, "table_to_xmlschema": true, "table_to_xml_and_xmlschema": true,
	"schema_to_xml": true, "schema_to_xmlschema": true, "schema_to_xml_and_xmlschema": true,
	"database_to_xml": true, "database_to_xmlschema": true, "database_to_xml_and_xmlschema": true,
	"ts_stat": true, "dblink": true, "dblink_exec": true, "dblink_open": true, "dblink_send_query": true,
	"get_raw_page": true, "heap_page_items": true, "heap_page_item_attrs": true, "tuple_data_split": true,
}

// errNeedClone stops a read-only walk that found something to change.
var errNeedClone = errors.New("rewrite: internal: the statement needs rewriting")

// Apply returns the SQL to run instead of st under the compiled rules c:
// st.Text itself (changed false) when no rule applies to it, else the
// deparsed rewritten statement. An error means the statement must be denied
// (SQLSTATE 42501, with the error's message); it is a *ColumnError for a
// forbidden column, a *DeniedError for a statement that cannot be limited to
// the visible rows, or another error if the statement could not be rewritten.
// Apply never modifies st or its Tree; it is safe for concurrent use.
func Apply(st *parser.Statement, c *Compiled) (sql string, changed bool, err error) {
	return ApplyWith(st, c, nil)
}

// Tables tells the rewriter what the database's catalog says of a
// relation: its columns in order, with their defaults. Relation returns nil
// for a relation it does not know.
type Tables = catalog.Relations

// ApplyWith is Apply with the database's catalog: an INSERT into a checked
// table without a column list, or one that leaves a column the check reads
// to its default, is rewritten with the columns and defaults the catalog
// gives (without one, or for a relation it does not know, such an INSERT
// is denied).
func ApplyWith(st *parser.Statement, c *Compiled, tables Tables) (sql string, changed bool, err error) {
	sql, tree, err := applyWith(st, c, tables)
	if err != nil {
		return "", false, err
	}
	return sql, tree != nil, nil
}

// apply is Apply, also returning the rewritten tree (nil when unchanged).
func apply(st *parser.Statement, c *Compiled) (string, *pg_query.Node, error) {
	return applyWith(st, c, nil)
}

func applyWith(st *parser.Statement, c *Compiled, tables Tables) (string, *pg_query.Node, error) {
	if st == nil {
		return "", nil, errors.New("rewrite: no statement")
	}
	if c.empty() {
		return st.Text, nil, nil
	}
	if len(c.filters) > 0 || c.hasRead {
		for _, f := range st.Functions {
			if sqlTextFunctions[f.Name] {
				return "", nil, denied("", "function %s is not allowed while row filters or column rules apply: it runs SQL (or reads a table) given as text, which cannot be rewritten", f.Name)
			}
		}
	}
	needRewrite, needWalk := false, false
	for i := range st.Tables {
		t := &st.Tables[i]
		k := tableKey{t.Schema, t.Name}
		if k.schema == "" {
			k.schema = "public"
		}
		if c.filters[k] != nil {
			needRewrite = true
		}
		if c.checks[k] != nil && writes(t) {
			needRewrite = true
		}
		if cr := c.columns[k]; cr != nil {
			if err := cr.checkWrites(t); err != nil {
				return "", nil, err
			}
			if len(cr.readList) > 0 {
				needWalk = true
			}
		}
	}
	if !needRewrite && !needWalk {
		return st.Text, nil, nil
	}
	if st.Tree == nil || st.Tree.Stmt == nil {
		return "", nil, errors.New("rewrite: the statement has no parse tree")
	}
	root := st.Tree.Stmt
	if needRewrite {
		root = proto.Clone(root).(*pg_query.Node)
	}
	w := &walker{c: c, mutable: needRewrite, tables: tables}
	err := w.run(root)
	if errors.Is(err, errNeedClone) {
		// The facts did not show a filtered table the walk found: redo it
		// on a copy.
		root = proto.Clone(st.Tree.Stmt).(*pg_query.Node)
		w = &walker{c: c, mutable: true, tables: tables}
		err = w.run(root)
	}
	if err != nil {
		return "", nil, err
	}
	if !w.changed {
		return st.Text, nil, nil
	}
	_, version := template()
	out, err := pg_query.Deparse(&pg_query.ParseResult{Version: version, Stmts: []*pg_query.RawStmt{{Stmt: root}}})
	if err != nil {
		return "", nil, fmt.Errorf("rewrite: deparse: %w", err)
	}
	return out, root, nil
}

// writes reports whether t is written by INSERT, UPDATE (also ON CONFLICT
// DO UPDATE and MERGE) or COPY FROM.
func writes(t *parser.Table) bool {
	for _, a := range t.Access {
		if a == parser.AccessInsert || a == parser.AccessUpdate {
			return true
		}
	}
	return false
}

// checkWrites refuses the writes the parser's facts show for t: SET, INSERT
// and COPY FROM column lists name their columns exactly, and an INSERT,
// MERGE INSERT or COPY FROM without a column list writes every column.
func (cr *columnRule) checkWrites(t *parser.Table) error {
	if len(cr.writeList) == 0 {
		return nil
	}
	for _, a := range t.Star {
		if a == parser.AccessInsert || a == parser.AccessUpdate {
			return &ColumnError{Table: cr.table, Column: cr.writeList[0], Write: true, Implicit: true}
		}
	}
	for _, a := range []parser.Access{parser.AccessInsert, parser.AccessUpdate} {
		for _, col := range t.Columns[a] {
			if cr.write[col] {
				return &ColumnError{Table: cr.table, Column: col, Write: true}
			}
		}
	}
	return nil
}
