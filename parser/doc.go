// Package parser turns SQL text into per-statement facts for the policy
// engine. It wraps pg_query_go (PostgreSQL 17's own grammar), parses a text
// once and caches the outcome (facts or error) by text in a bounded LRU, so a
// repeated statement never reaches the C parser again. It makes no decisions
// and knows nothing of sessions.
//
// # What it owns
//
//   - Splitting a simple-protocol query string into statements; each
//     Statement's Text is the exact slice input[Location:Location+Length]
//     (leading whitespace and comments, trailing whitespace and semicolons
//     trimmed).
//   - Facts: Command, Class, Tables (with access kinds and columns),
//     Functions, Flags, Setting, ParamCount.
//   - Fingerprint and Normalized (constants replaced by $n) per statement,
//     each computed from the statement's own Text.
//   - Syntax errors as *SyntaxError (SQLSTATE 42601, 1-based position).
//   - A text nested deeper than the C parser can safely hold as *DepthError
//     (SQLSTATE 54001, as PostgreSQL's "stack depth limit exceeded"),
//     found by CheckDepth before any C code runs.
//
// Results, statements and parse trees are shared between callers through the
// cache: nobody may modify them.
//
// # Command
//
// Command is the tag PostgreSQL's CreateCommandTag gives the statement, which
// is also the CommandComplete tag without its row count: "SELECT", "INSERT",
// "CREATE TABLE", "DROP INDEX", "ALTER TABLE", "TRUNCATE TABLE", "LOCK
// TABLE", "DECLARE CURSOR", "CLOSE CURSOR", "BEGIN", "START TRANSACTION",
// "ROLLBACK" (also for ROLLBACK TO SAVEPOINT), "SET" (also SET ROLE and SET
// SESSION AUTHORIZATION, told apart by Flags and Setting), "RESET",
// "DISCARD ALL", ... One exception: SELECT ... INTO is "SELECT INTO" (its
// tag after analysis), not "SELECT". An unknown statement is "???".
//
// # Class
//
//   - read: SELECT, VALUES, TABLE, SHOW, FETCH, MOVE, COPY ... TO, a plain
//     EXPLAIN (of anything: it does not execute), DECLARE CURSOR of a read.
//   - write: INSERT, UPDATE, DELETE, MERGE, TRUNCATE, COPY ... FROM, and any
//     read that writes (a data-modifying CTE, COPY (DELETE ... RETURNING)
//     TO). EXPLAIN ANALYZE takes the class of the statement it runs.
//   - ddl: CREATE/ALTER/DROP of any object except roles, COMMENT, SECURITY
//     LABEL, REFRESH MATERIALIZED VIEW, IMPORT FOREIGN SCHEMA, CREATE TABLE
//     AS, SELECT INTO.
//   - dcl: GRANT, REVOKE (also of roles), ALTER DEFAULT PRIVILEGES,
//     CREATE/ALTER/DROP ROLE (and USER/GROUP), DROP OWNED, REASSIGN OWNED,
//     SET/RESET ROLE, SET/RESET SESSION AUTHORIZATION, and ALTER SYSTEM
//     (it rewrites server configuration, so it is treated as a privilege
//     change rather than a utility).
//   - transaction: BEGIN, START TRANSACTION, COMMIT, ROLLBACK, SAVEPOINT,
//     RELEASE, ROLLBACK TO, PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED.
//   - utility: everything else: SET, RESET, SET CONSTRAINTS, DISCARD, LISTEN,
//     NOTIFY, UNLISTEN, VACUUM, ANALYZE, CLUSTER, REINDEX, CHECKPOINT, LOAD,
//     DO, CALL, PREPARE, EXECUTE, DEALLOCATE, CLOSE, LOCK.
//
// Functions do not change the class: SELECT pg_terminate_backend(1) or
// SELECT set_config('role', ...) is a read; policies must look at Functions.
// PREPARE is a utility but carries the facts of the prepared statement;
// EXECUTE carries none (the decision belongs at PREPARE).
//
// # Tables and columns
//
// Every relation named anywhere is listed once per (schema, name) as
// written; a CTE name is not a relation within its scope, and shadows a
// table of the same name there. Access kinds: "select" for relations read in
// FROM/USING/JOIN/subqueries (and COPY TO), "insert"/"update"/"delete" for
// DML targets (MERGE: the kinds of its WHEN actions; INSERT ... ON CONFLICT
// DO UPDATE: insert and update), "truncate" for TRUNCATE. Relations that are
// only named (DDL, LOCK, GRANT, the new table of CREATE TABLE AS) have no
// access kind.
//
// A column reference resolves to the relation its qualifier names (alias,
// table, or schema.table), innermost query level first; an unqualified one
// belongs to the only relation of the nearest query level that has any, and
// is otherwise left unassigned with Flag "ambiguous_column" (no guessing).
// Names resolve as package sqlscope (shared with package rewrite) says:
// CTEs, aliases, LATERAL (a function in FROM sees the earlier FROM items
// without it), JOIN ... USING. A bare name in ORDER BY or DISTINCT ON that
// is a select-list name (AS) is no column; in GROUP BY it is one, as
// PostgreSQL prefers an input column there and the parser cannot tell
// whether the table has one. Boolean options (EXPLAIN ANALYZE) are read as
// PostgreSQL's defGetBoolean reads them (package pgbool); a value it would
// reject counts as on.
// Read columns (select lists, WHERE, JOIN ON/USING, GROUP BY, HAVING, ORDER
// BY, RETURNING, function arguments, SET expressions) are "select" columns,
// also on a write target, whose Access then includes "select" as well (a
// DELETE ... RETURNING * reads what it deletes, and PostgreSQL's privilege
// checks and row-level security count a WHERE on the target as a read); SET targets are "update" columns, INSERT column lists "insert"
// columns. Star marks the kinds for which every column is used: *, t.*, a
// whole-row reference (SELECT u FROM users u), INSERT or COPY without a
// column list.
package parser
