package wire

import (
	"context"
	"strings"

	"github.com/dbalproxy/dbalproxy/audit"
	"github.com/dbalproxy/dbalproxy/plan"
)

// Decider decides what to do with a statement text: parse it, ask the
// policy, rewrite it. A Decider caches: the same text for an equal principal
// returns the same *Plan, which callers must not modify.
type Decider interface {
	Decide(ctx context.Context, s *plan.Session, sql string) (*plan.Plan, error)
	// DecideFunctionCall decides a fast-path FunctionCall of the function
	// with that OID and number of arguments: a plan of one statement,
	// allowed only if the same call written in SQL would be, and never
	// rewritten (the message goes to the backend as the client sent it).
	DecideFunctionCall(ctx context.Context, s *plan.Session, oid uint32, args int) (*plan.Plan, error)
	// CatalogChanged says that a schema change to database committed: what
	// was decided or rewritten from its catalog must be decided again.
	CatalogChanged(database string)
	// Version names the policy set that decides now. A prepared statement
	// decided under another version is decided again before it runs.
	Version() string
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
func denyStatement(d *plan.Denial, decisionID string) string {
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
