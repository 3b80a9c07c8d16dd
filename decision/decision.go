package decision

import "fmt"

// Mode is how decisions are enforced.
type Mode string

const (
	// ModeStrict enforces decisions: a deny is a deny. The default.
	ModeStrict Mode = "strict"
	// ModePermissive evaluates the policy but allows every statement; a
	// statement the policy denies comes back with Allow and WouldDeny set,
	// so that it can be logged.
	ModePermissive Mode = "permissive"
	// ModeDisabled allows every statement without evaluating anything.
	ModeDisabled Mode = "disabled"
)

// ParseMode returns the Mode named s; "" is ModeStrict.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", ModeStrict:
		return ModeStrict, nil
	case ModePermissive, ModeDisabled:
		return Mode(s), nil
	}
	return "", fmt.Errorf("policy: unknown mode %q (want strict, permissive or disabled)", s)
}

// Input is what a policy sees as `input` for one statement.
type Input struct {
	Session     Session     `json:"session"`
	Statement   Statement   `json:"statement"`
	Transaction Transaction `json:"transaction"`
	Backend     Backend     `json:"backend"`
}

// Session describes the authenticated client.
type Session struct {
	// User is the login name.
	User string `json:"user"`
	// Role is the principal's role ("" if it has none).
	Role string `json:"role"`
	// Claims are the principal's verified claims (from a JWT or the config),
	// e.g. {"user_id": "u_alice"}. Values are JSON-like: string, bool,
	// float64, int, int64, json.Number, nil, []any, []string, map[string]any.
	Claims map[string]any `json:"claims"`
	// Database is the database named in the startup message.
	Database string `json:"database"`
	// ApplicationName is the client's application_name.
	ApplicationName string `json:"application_name"`
	// ClientAddr is the client's address (host or host:port).
	ClientAddr string `json:"client_addr"`
	// TLS is true when the client connection is encrypted.
	TLS bool `json:"tls"`
}

// Statement is the parser's facts about one SQL statement.
type Statement struct {
	// Command is the statement's command tag as PostgreSQL names it, in
	// upper case ("SELECT", "ALTER SYSTEM", "CREATE TABLE", "DISCARD ALL").
	Command string `json:"command"`
	// Class groups commands: "read", "write", "ddl", "dcl", "transaction",
	// "utility" (package parser documents which command is which).
	Class string `json:"class"`
	// Tables are the tables the statement touches, in order of appearance.
	Tables []Table `json:"tables"`
	// Functions are the functions the statement calls.
	Functions []Function `json:"functions"`
	// Flags mark dangerous features ("copy_program", "copy_file",
	// "set_role", "set_session_authorization", ...).
	Flags []string `json:"flags"`
	// Setting is the parameter a SET/RESET/SHOW statement names, if any.
	Setting *Setting `json:"setting,omitempty"`
	// Configs are the settings the statement's set_config calls change,
	// lower-cased; "?" for one whose name is not a string constant.
	Configs []string `json:"configs"`
	// Fingerprint identifies the statement's normalized shape.
	Fingerprint string `json:"fingerprint"`
	// Text is the statement's normalized text: its constants are replaced
	// by $n, so a decision never depends on them (the proxy reuses it for
	// every text of the same shape) and never sees a secret in a literal.
	Text string `json:"text"`
}

// Table is one table a statement touches.
type Table struct {
	// Schema is the schema as written; "" when unqualified.
	Schema string `json:"schema"`
	// Name is the table name.
	Name string `json:"name"`
	// Access lists the access kinds: "select", "insert", "update",
	// "delete", "truncate"; empty for a table that is only named (DDL,
	// LOCK).
	Access []string `json:"access"`
	// Columns maps an access kind to the columns used with it.
	Columns map[string][]string `json:"columns"`
}

// Function is one function a statement calls.
type Function struct {
	// Schema is the schema as written; "" when unqualified.
	Schema string `json:"schema"`
	// Name is the function name.
	Name string `json:"name"`
	// Args is the number of arguments written; -1 when unknown (VARIADIC).
	Args int `json:"args"`
	// Field is true when the call is spelled as a field selection,
	// (x).name or t.name, which PostgreSQL runs as name(x).
	Field bool `json:"field"`
	// Operator is true for an operator (Name is its symbol, Args 1 for a
	// prefix operator): Candidates are the functions the database's own
	// operators of that name run. Built-in operators are never listed.
	Operator bool `json:"operator"`
	// Resolved is true when the proxy looked the name up in the
	// database's catalog (pg_proc); Candidates is then every function the
	// call may be (every schema for an unqualified name, every overload
	// whose number of parameters fits), empty when there is none.
	Resolved   bool                `json:"resolved"`
	Candidates []FunctionCandidate `json:"candidates"`
}

// FunctionCandidate is one pg_proc entry a call may run.
type FunctionCandidate struct {
	Schema string `json:"schema"`
	Name   string `json:"name"`
	// Arguments is the identity argument list, e.g. "tsquery, text".
	Arguments string `json:"arguments"`
	OID       uint32 `json:"oid"`
	// Builtin is true for functions created by initdb (OID below 16384).
	Builtin bool `json:"builtin"`
	// Kind is "function", "aggregate", "window" or "procedure".
	Kind string `json:"kind"`
	// Volatility is "immutable", "stable" or "volatile".
	Volatility      string `json:"volatility"`
	Language        string `json:"language"`
	SecurityDefiner bool   `json:"security_definer"`
	ReturnsSet      bool   `json:"returns_set"`
}

// Setting is the run-time parameter a SET, RESET or SHOW names.
type Setting struct {
	// Name is the parameter's name, e.g. "search_path" or "role".
	Name string `json:"name"`
	// Local is true for SET LOCAL.
	Local bool `json:"local"`
}

// Transaction is the session's transaction state before the statement.
type Transaction struct {
	// Active is true inside a transaction block.
	Active bool `json:"active"`
}

// Backend describes the PostgreSQL server behind the proxy.
type Backend struct {
	// Version is server_version, e.g. "17.2".
	Version string `json:"version"`
	// VersionNum is major*10000+minor, e.g. 170002; 0 if unknown.
	VersionNum int `json:"version_num"`
	// Settings are the backend's ParameterStatus values.
	Settings map[string]string `json:"settings"`
}

// Filter is an SQL boolean expression over one table's columns, with $n
// placeholders bound to Args.
type Filter struct {
	// SQL is the expression, e.g. "id = $1".
	SQL string `json:"sql"`
	// Args are the values of $1, $2, ...: string, bool, int64, float64,
	// nil, or (for arrays and objects) []any and map[string]any.
	Args []any `json:"args,omitempty"`
}

// ColumnRule lists the columns of one table a statement may not read or
// write.
type ColumnRule struct {
	// DenyRead are columns the statement may not read.
	DenyRead []string `json:"deny_read,omitempty"`
	// DenyWrite are columns the statement may not set.
	DenyWrite []string `json:"deny_write,omitempty"`
}

// Decision is the policy's answer for one statement.
type Decision struct {
	// Allow is true if the statement may run.
	Allow bool `json:"allow"`
	// Reason says why, in words a user understands.
	Reason string `json:"reason,omitempty"`
	// Rule is the name of the rule that decided, for logs.
	Rule string `json:"rule,omitempty"`
	// Filters are row filters keyed by "schema.table": rows outside the
	// predicate are invisible to SELECT, UPDATE and DELETE.
	Filters map[string]Filter `json:"filters,omitempty"`
	// Checks are keyed by "schema.table": new or updated rows must satisfy
	// them.
	Checks map[string]Filter `json:"checks,omitempty"`
	// Columns are column rules keyed by "schema.table".
	Columns map[string]ColumnRule `json:"columns,omitempty"`
	// TimeoutMS is the statement timeout in milliseconds; 0 means none.
	TimeoutMS int `json:"timeout_ms,omitempty"`
	// MaxRows caps the rows a statement returns; 0 means no cap.
	MaxRows int `json:"max_rows,omitempty"`
	// WouldDeny is set in permissive mode when the policy denied (or failed
	// to decide) a statement that is allowed anyway; Reason says why it
	// would have been denied.
	WouldDeny bool `json:"would_deny,omitempty"`
	// Version is the Version of the policy set that decided; "" when
	// nothing was evaluated (disabled mode).
	Version string `json:"version,omitempty"`
}
