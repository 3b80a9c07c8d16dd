// Package plan holds the values that pass between the planner and the
// protocol server: who a statement text comes from (Session, Principal),
// and what the proxy does with it (Plan: the text to send, one Statement
// per statement for the audit log, and the Denial of the first statement
// that may not run).
//
// It is a leaf: plain Go types, no behaviour beyond Session's canonical
// principal key, and no imports of the proxy's other packages. Package
// planner produces Plans (parser facts, catalog, policy, rewrite); package
// wire asks for them through its Decider interface and carries them out.
package plan

import (
	"fmt"
	"slices"
	"strings"
)

// SQLSTATE codes of the denials the planner makes.
const (
	CodeInsufficientPriv  = "42501" // a policy denial
	CodeSyntaxError       = "42601" // a statement the parser cannot read
	CodeUndefinedFunction = "42883" // a fast-path call of an unknown function
	CodeProtocolViolation = "08P01" // a fast-path call with the wrong number of arguments
)

// Principal is who a session acts for, established at login.
type Principal struct {
	User   string         // the login name
	Role   string         // the policy role
	Claims map[string]any // verified claims (from the config or a token)
}

// Session is what a planner may know of the session a statement comes
// from. It is valid only during the call.
type Session struct {
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

	principalKey string // canonical Principal, computed once
}

// SetPrincipal changes who the session acts for (an end-user switch).
func (s *Session) SetPrincipal(p Principal) {
	s.Principal = p
	s.principalKey = ""
}

// PrincipalKey is a canonical string of what the principal's decisions may
// depend on (login, role and claims): two sessions of the same login have
// the same key, so they share plans. It is computed once per principal.
func (s *Session) PrincipalKey() string {
	if s.principalKey == "" {
		s.principalKey = principalKey(s.Principal)
	}
	return s.principalKey
}

func principalKey(p Principal) string {
	var b strings.Builder
	b.WriteString(p.User)
	b.WriteByte(0)
	b.WriteString(p.Role)
	b.WriteByte(0)
	keys := make([]string, 0, len(p.Claims))
	for k := range p.Claims {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%q=%#v;", k, p.Claims[k])
	}
	return b.String()
}

// Plan is what to do with one statement text (a simple Query, possibly of
// several statements, or the text of an extended-protocol Parse). A planner
// caches Plans: callers must not modify one.
type Plan struct {
	// SQL is the text to send to the backend when nothing is denied: the
	// client's own, or a rewrite of it.
	SQL string
	// Version is the policy version the plan was decided under.
	Version string
	// Statements describes each statement for audit, in order.
	Statements []Statement
	// Deny, when set, is the first statement that must not run. The
	// statements before it run (as PostgreSQL would run them before an
	// error), and the denied one fails with Deny's error.
	Deny *Denial
	// SwitchTo is set on the proxy's own plan of a statement that switches
	// the end user for a transaction (SET LOCAL dbal.token): where its
	// token is. The policy does not see such statements.
	SwitchTo *TokenSource
}

// TokenSource is where an end-user switch statement's token is: a literal
// in the text, or bind parameter number Param (1-based).
type TokenSource struct {
	Literal string
	Param   int
}

// Statement is the audit view of one decided statement.
type Statement struct {
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
