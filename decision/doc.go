// Package decision holds the values that pass between the proxy and its
// policy engine: what a policy sees of one statement (Input: the session,
// the parser's facts, the transaction and the backend) and what it
// answers (Decision: allow or deny, row filters, checks, column rules,
// timeouts and row caps), and the enforcement Mode.
//
// It is a leaf: plain Go types with their JSON names, no behaviour beyond
// ParseMode and no imports of the proxy's packages or of OPA. Package
// policy (OPA) produces Decisions from Inputs; package rewrite applies a
// Decision's filters, checks and column rules; package wire fills in the
// Input and enforces the rest. What each field means to a policy author is
// documented in package policy.
package decision
