package policy

import "github.com/dbalproxy/dbalproxy/decision"

// The decision's value types live in package decision, which has no OPA
// import, so that packages applying a decision need not link the engine.
// These aliases keep the names callers used before the move (wire, cmd,
// bridge); new code uses package decision.
type (
	// Mode is decision.Mode.
	Mode = decision.Mode
	// Input is decision.Input.
	Input = decision.Input
	// Session is decision.Session.
	Session = decision.Session
	// Statement is decision.Statement.
	Statement = decision.Statement
	// Table is decision.Table.
	Table = decision.Table
	// Function is decision.Function.
	Function = decision.Function
	// FunctionCandidate is decision.FunctionCandidate.
	FunctionCandidate = decision.FunctionCandidate
	// Setting is decision.Setting.
	Setting = decision.Setting
	// Transaction is decision.Transaction.
	Transaction = decision.Transaction
	// Backend is decision.Backend.
	Backend = decision.Backend
	// Filter is decision.Filter.
	Filter = decision.Filter
	// ColumnRule is decision.ColumnRule.
	ColumnRule = decision.ColumnRule
	// Decision is decision.Decision.
	Decision = decision.Decision
)

// The modes, as in package decision.
const (
	ModeStrict     = decision.ModeStrict
	ModePermissive = decision.ModePermissive
	ModeDisabled   = decision.ModeDisabled
)

// ParseMode is decision.ParseMode.
func ParseMode(s string) (Mode, error) { return decision.ParseMode(s) }
