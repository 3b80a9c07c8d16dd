// Package policy decides SQL statements with Rego policies.
//
// It loads a directory of Rego v1 files (plus optional JSON/YAML data),
// compiles it with the OPA Go SDK, prepares the query data.dbal.decision once
// per load, and answers Decide calls with a typed Decision. It knows nothing
// about sockets, wire messages or SQL text: the caller (package wire) passes
// the parser's facts about one statement as an Input.
//
// Input, Decision and the types inside them are package decision's, which
// does not import OPA, so that packages that only apply a decision
// (rewrite) do not link the engine; this package's names for them (Input,
// Decision, Filter, Mode, ...) are aliases kept for callers that have not
// moved yet.
//
// # Contract for policy authors
//
// Policies are Rego v1 files in package dbal. The entry point is
// data.dbal.decision, an object:
//
//	allow       bool, required: may the statement run?
//	reason      string: why, in words the client will see
//	rule        string: a rule name, for logs
//	filters     {"schema.table": {"sql": "id = $1", "args": ["u_alice"]}}
//	            rows outside the predicate are invisible (like RLS USING)
//	checks      same shape: new or updated rows must satisfy it
//	            (like RLS WITH CHECK)
//	columns     {"schema.table": {"deny_read": [...], "deny_write": [...]}}
//	timeout_ms  int >= 0: statement timeout, 0 or absent for none
//	max_rows    int >= 0: row cap, 0 or absent for none
//
// Any other key, a wrong type, a table key that is not "schema.table", a
// filter without sql, or an undefined decision is an error and the
// statement is denied (fail closed). Evaluation uses strict built-in errors:
// a failing built-in (division by zero, a bad argument to object.get, ...)
// or conflicting values of a complete rule deny the statement, too.
//
// The input (see Input) is
//
//	{"session":     {"user", "role", "claims", "database", "application_name", "client_addr", "tls"},
//	 "statement":   {"command", "class", "tables": [{"schema", "name", "access", "columns"}],
//	                 "functions": [{"schema", "name", "args", "field", "operator", "resolved",
//	                                "candidates": [{"schema", "name", "arguments", "oid", "builtin",
//	                                                "kind", "volatility", "language",
//	                                                "security_definer", "returns_set"}]}],
//	                 "flags", "configs", "setting": {"name", "local"},
//	                 "fingerprint", "text"},
//	 "transaction": {"active"},
//	 "backend":     {"version", "version_num", "settings"}}
//
// Command is the upper-case command tag and class one of "read", "write",
// "ddl", "dcl", "transaction", "utility", as package parser gives them. An
// unqualified table has schema "". Arrays and objects are never null.
// "setting" is present only for statements that name a parameter.
// "configs" are the settings set_config calls change ("?" for a name that
// is not a constant). Each function is a call as written ("field" when
// spelled as a field selection, "operator" for an operator the database
// defines), with "candidates": every pg_proc entry it may run, looked up in
// the database's catalog ("resolved" false when the proxy had none, as
// explain without --backend). Policies should allow a call only when every
// candidate is known to be safe; see Function.
//
// Data files (*.json, *.yaml, *.yml) are loaded under data as `opa eval -d
// dir` would: a file at the top of the directory is merged into data, a file
// in subdirectory a/b under data.a.b. Files and directories whose names
// start with "." are ignored. Tests (*_test.rego, test_* rules) are run by
// RunTests and, with Options.RunTests, at every load; they are not part of
// the set that decides.
//
// A minimal policy:
//
//	package dbal
//
//	default decision := {"allow": false, "reason": "denied by default"}
//
//	decision := {"allow": true, "reason": "reads are open"} if input.statement.class == "read"
//
// The shipped set in the repository's policies/ directory implements the
// seed's role matrix; its README shows more.
//
// # Row rules in Rego
//
// Which rows a statement may see and write can be said in Rego, in package
// dbal, over one row of a table (input.row.<column>, unknown) and the
// principal (input.session.user, .role and .claims, known):
//
//	rows["schema.table"].select      rows reads see              -> filters
//	rows["schema.table"].update      rows UPDATE may change      -> filters
//	rows["schema.table"].delete      rows DELETE may remove      -> filters
//	new_rows["schema.table"].insert  rows INSERT may write       -> checks
//	new_rows["schema.table"].update  rows UPDATE may produce     -> checks
//	row_columns["schema.table"]      the columns the rules may use
//
// For an allowed statement, every table it touches that has row rules gets
// the rules of the statement's access kinds, partially evaluated (OPA's
// data filtering: input.row unknown) and translated into the {"sql",
// "args"} form with columns as quoted identifiers and every value an
// argument; they are ANDed with any SQL-form filter or check the decision
// itself returns. A table with row rules is protected: a rule undefined for
// the session allows no row. Conditions are cached per policy set, rule and
// the session values the rule reads. Rules of the wrong shape, rules that
// read other input, use undeclared columns, call non-deterministic
// built-ins, or apply functions to columns refuse the set at load; a rule
// that needs a session value the session lacks, or yields a condition SQL
// cannot carry exactly, denies the statement with the reason. The
// repository's policies/README.md documents the form.
//
// # Modes
//
// ModeStrict enforces decisions. ModePermissive evaluates but allows
// everything, marking what would have been denied with Decision.WouldDeny.
// ModeDisabled allows everything without evaluating.
//
// # Performance
//
// The query is prepared once per load, the input is built as an AST directly
// (no JSON round trip; the backend's settings are converted once and reused
// while they stay the same), and the result is read as an AST, so a decision
// costs the policy's own evaluation plus about 15 µs. The policy dominates:
// the shipped set takes 100 to 150 µs of CPU per decision on a small shared
// machine (BenchmarkDecide), so callers cache decisions by statement,
// principal and Version.
//
// # Reloading
//
// An Engine holds its compiled set behind an atomic pointer; Decide takes no
// lock. Reload (and Watch, which calls it when files change) builds the new
// set aside and swaps it in only if it compiles, defines a decision and, if
// asked, passes its tests; otherwise the running set stays in force.
// Version is a content hash of the loaded files, so that callers can key
// caches of decisions on it.
//
// # Bundles
//
// With Options.Bundle the set comes from an OPA bundle service instead of a
// directory (see BundleOptions): an `opa build` tarball read, and with a key
// signature-verified, by OPA's bundle package, then loaded exactly as a
// directory. Revision is the bundle's .manifest revision, and Version is the
// revision, "@" and the content hash.
//
// # Testing and print()
//
// Test runs a directory's Rego tests (optionally with coverage) and then the
// load-time validation, so a set the proxy would refuse fails it. The
// policies' print() calls go to Options.Logger.
package policy
