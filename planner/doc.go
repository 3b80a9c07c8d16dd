// Package planner decides what the proxy does with a statement text: it is
// the Decider the protocol server (package wire) asks about every simple
// Query, every Parse and every fast-path FunctionCall, and it answers with
// a plan.Plan.
//
// For one text it:
//
//  1. looks the text up in the plan cache (principal, policy version,
//     database, catalog generation, transaction state, text): a hit costs
//     no parse and no policy evaluation;
//  2. for a single statement, looks its shape up (its constants replaced by
//     $n, quickshape.go, then pg_query's normalization): a known shape
//     reuses the decision, and a rewritten one gets the new constants
//     spliced into the shape's rewrite (splice.go);
//  3. otherwise parses it (package parser: one statement's facts per
//     statement), resolves the functions each statement calls and the
//     relations it writes in the database's catalog (package catalog,
//     functions.go), builds the policy input (decision.Input) and asks the
//     PolicyEngine, through the decision memo (memo.go: a new text whose
//     facts were decided before skips OPA);
//  4. applies the decision's filters, checks and column rules with the
//     Rewriter (package rewrite), refuses statements that could change how
//     the server lexes text (parser.Statement.LexerHazard), and makes the
//     plan: the text to send, one plan.Statement per statement for the
//     audit log, and the Denial of the first statement that may not run.
//
// Failures deny: an unparsable text, a policy error, an unreadable catalog
// or a rewrite error makes a Denial, never a plan that forwards the text
// unchecked. The policy engine and the rewriter are interfaces declared
// here (PolicyEngine, Rewriter), so the planner links neither OPA nor the
// deparser; package cmd/dbalproxy gives it *policy.Engine and
// *rewrite.Rewriter.
package planner
