package wire

import (
	"context"
	"strings"

	"github.com/dbalproxy/dbalproxy/audit"
)

// SessionInfo is what a Decider may know of the session a statement comes
// from. It is valid only during the call.
type SessionInfo struct {
	ID              string
	Principal       Principal
	Database        string
	ApplicationName string
	ClientAddr      string
	TLS             bool
	// InTransaction is true when the last ReadyForQuery said 'T' or 'E'.
	InTransaction bool
	// BackendParams are the ParameterStatus values of the backend server
	// (server_version and the rest), for capability checks. Read-only.
	BackendParams map[string]string

	principalKey string // canonical principal, computed once by the Planner
}

// Decider decides what to do with a statement text: parse it, ask the
// policy, rewrite it. A Decider caches: the same text for an equal principal
// returns the same *Plan, which callers must not modify.
type Decider interface {
	Decide(ctx context.Context, s *SessionInfo, sql string) (*Plan, error)
	// DecideFunctionCall decides a fast-path FunctionCall of the function
	// with that OID and number of arguments: a plan of one statement,
	// allowed only if the same call written in SQL would be, and never
	// rewritten (the message goes to the backend as the client sent it).
	DecideFunctionCall(ctx context.Context, s *SessionInfo, oid uint32, args int) (*Plan, error)
	// CatalogChanged says that a schema change to database committed: what
	// was decided or rewritten from its catalog must be decided again.
	CatalogChanged(database string)
	// Version names the policy set that decides now. A prepared statement
	// decided under another version is decided again before it runs.
	Version() string
}

// Plan is what to do with one statement text (a simple Query, possibly of
// several statements, or the text of an extended-protocol Parse).
type Plan struct {
	// SQL is the text to send to the backend when nothing is denied: the
	// client's own, or a rewrite of it.
	SQL string
	// Version is the policy version the plan was decided under.
	Version string
	// Statements describes each statement for audit, in order.
	Statements []PlannedStatement
	// Deny, when set, is the first statement that must not run. The
	// statements before it run (as PostgreSQL would run them before an
	// error), and the denied one fails with Deny's error.
	Deny *Denial

	switchTo *tokenSource // set on the proxy's own plan of an end-user switch (identity.go)
	noShape  bool         // never plan other texts of this one's shape from it
	noCache  bool         // a passing failure (the catalog could not be read): decide the text again next time
}

// PlannedStatement is the audit view of one decided statement.
type PlannedStatement struct {
	Command       string
	Tables        []string // "schema.table"
	Functions     []string // the functions called, as resolved ("schema.name"); read-only
	Fingerprint   string
	Query         string // normalized: literals replaced by $n
	QueryRaw      string // the client's own text (logged only if configured)
	Decision      string // audit.DecisionAllow, DecisionRewrite, DecisionWouldDeny or DecisionDeny
	Reason        string
	PolicyVersion string
	Rewritten     string // normalized rewritten text, if rewritten
	// MaxRows caps the rows the statement may return to the client; 0 for
	// none. Rows past it are withheld and the client gets a NOTICE.
	MaxRows int
	// TimeoutMS is the policy's statement timeout; 0 for none.
	TimeoutMS int
}

// Denial is why a statement may not run, as the client will see it.
type Denial struct {
	// Index is the denied statement's index in Plan.Statements.
	Index int
	// Prefix is the SQL of the statements before it, to run first; empty if
	// the denied statement is the first.
	Prefix string
	// Code is the SQLSTATE: 42501 for a policy denial, 42601 for a
	// statement the parser cannot read, 54001 for one nested too deeply.
	Code    string
	Message string
	// Detail names the statement's command and table; the decision id is
	// appended per execution.
	Detail string
	Hint   string
	// Position is the 1-based character position of a syntax error in the
	// client's text, 0 for none; the client gets it as PostgreSQL's
	// Position field, so psql can show the line and a caret.
	Position int
}

// Auditor records decisions; *audit.Logger implements it. Log must not block
// for long.
type Auditor interface {
	Log(r *audit.Record)
}

// denyStatement builds the statement that makes the backend itself raise
// the denial. Going through the backend keeps PostgreSQL's own semantics for
// free: an open transaction is aborted exactly as by any error (25P02 until
// ROLLBACK, ROLLBACK TO SAVEPOINT recovers), and the error comes in order
// with everything else the backend answers.
func denyStatement(d *Denial, decisionID string) string {
	var b strings.Builder
	b.WriteString("DO $dbalproxy$BEGIN RAISE EXCEPTION USING ERRCODE = ")
	writePLLiteral(&b, d.Code)
	b.WriteString(", MESSAGE = ")
	writePLLiteral(&b, d.Message)
	detail := d.Detail
	if decisionID != "" {
		if detail != "" {
			detail += "; "
		}
		detail += "decision_id=" + decisionID
	}
	if detail != "" {
		b.WriteString(", DETAIL = ")
		writePLLiteral(&b, detail)
	}
	if d.Hint != "" {
		b.WriteString(", HINT = ")
		writePLLiteral(&b, d.Hint)
	}
	b.WriteString("; END$dbalproxy$")
	return b.String()
}

// writePLLiteral writes s as an escape-string literal, correct whatever
// standard_conforming_strings says, that cannot contain a dollar sign, so it
// can never end a dollar-quoted DO body around it. Invalid UTF-8 is replaced,
// so the backend accepts the text.
func writePLLiteral(b *strings.Builder, s string) {
	s = strings.ToValidUTF8(s, "\uFFFD")
	b.WriteString("E'")
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\'':
			b.WriteString("''")
		case '\\':
			b.WriteString(`\\`)
		case '$':
			b.WriteString(`\x24`)
		case 0:
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
}
