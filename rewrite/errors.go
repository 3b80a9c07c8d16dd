package rewrite

import "fmt"

// SQLState is the SQLSTATE a client should see for every error Apply
// returns: 42501 insufficient_privilege.
const SQLState = "42501"

// ColumnError is returned when a statement reads or writes a column a column
// rule forbids. Its message names the column and the table and is meant for
// the client.
type ColumnError struct {
	// Table is the protected table, "schema.table".
	Table string
	// Column is the forbidden column.
	Column string
	// Write is true for a write (SET, INSERT or COPY FROM column, ON
	// CONFLICT DO UPDATE, MERGE), false for a read.
	Write bool
	// Implicit is true when the column was not named but implied: *, t.*,
	// a whole-row reference, NATURAL JOIN, an INSERT, MERGE INSERT or COPY
	// without a column list.
	Implicit bool
	// Ambiguous is true when an unqualified name could refer to the
	// forbidden column (the rewriter does not know the other tables'
	// columns); qualifying it with its table resolves the doubt.
	Ambiguous bool
}

// Error implements error.
func (e *ColumnError) Error() string {
	switch {
	case e.Write && e.Implicit:
		return fmt.Sprintf("column %q of %s may not be written, and a statement without a column list writes every column: list the columns you set", e.Column, e.Table)
	case e.Write:
		return fmt.Sprintf("column %q of %s may not be written", e.Column, e.Table)
	case e.Implicit:
		return fmt.Sprintf("column %q of %s may not be read, and *, a whole-row reference or NATURAL JOIN reads every column: list the columns you need", e.Column, e.Table)
	case e.Ambiguous:
		return fmt.Sprintf("column %q of %s may not be read (the unqualified name %q may refer to it: qualify it with its table if it does not)", e.Column, e.Table, e.Column)
	}
	return fmt.Sprintf("column %q of %s may not be read", e.Column, e.Table)
}

// SQLState returns "42501".
func (e *ColumnError) SQLState() string { return SQLState }

// DeniedError is returned for a statement that touches a filtered table in a
// way the rewriter cannot restrict to the visible rows (TRUNCATE, COPY FROM,
// MERGE into it, DDL naming it, WHERE CURRENT OF, functions that run SQL
// given as text). Its message is meant for the client.
type DeniedError struct {
	// Table is the filtered table, "schema.table"; "" when the refusal is
	// not about one table.
	Table string
	// Reason says what was refused and why.
	Reason string
}

// Error implements error.
func (e *DeniedError) Error() string { return e.Reason }

// SQLState returns "42501".
func (e *DeniedError) SQLState() string { return SQLState }

func denied(table, format string, args ...any) *DeniedError {
	return &DeniedError{Table: table, Reason: fmt.Sprintf(format, args...)}
}
