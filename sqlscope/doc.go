// Package sqlscope resolves names in a PostgreSQL parse tree (pg_query_go)
// as PostgreSQL's parser does, for the walkers that need to know what a
// name refers to: package parser (which tables and columns a statement
// uses) and package rewrite (which references reach a filtered table or a
// protected column). It holds no facts and makes no changes of its own; a
// walker keeps what it needs about each relation in Rel.Info.
//
// # What it owns
//
//   - Query levels (Scope): the range table of each level (Rel: alias or
//     name, schema as written, EXCLUDED's qualified-only entry), the CTE
//     names visible at a level (With: a recursive WITH makes every name
//     visible to every body, a non-recursive CTE only after its own
//     definition), the select-list names ORDER BY and DISTINCT ON prefer
//     (GROUP BY prefers input columns, so walkers leave UseOutputs off
//     there), and the columns of JOIN ... USING.
//   - The levels a sub-select sees: Child for a sub-select in an
//     expression or a LATERAL item (it sees the enclosing range table),
//     Sibling for a plain sub-select in FROM (outer levels and its own
//     level's CTEs only). A function in FROM sees the earlier FROM items
//     with or without LATERAL, so it needs neither.
//   - Resolution: a qualified column reference (Qualified: the longest
//     qualifier naming a relation in scope wins, [catalog.]schema.table or
//     a name; a schema-qualified name never matches an alias), a bare * or
//     name (Reach, Nearest: the innermost level with a range table, no
//     further than a set operation's level), a whole-row reference
//     (WholeRow), and a FROM name that is a CTE reference (IsCTERef).
//   - Small helpers of every walk: Unwrap, Children (the generic step over
//     every message-typed field), Walk (the whole tree, for questions that
//     need no name resolution), Strings, ColumnRefNames, FunctionName,
//     IsSetOperation, QuoteIdent.
//
// Without the catalog's columns it cannot tell which relation of several
// owns a bare column name; callers decide what that means for them (parser
// flags it ambiguous, rewrite checks every candidate).
package sqlscope
