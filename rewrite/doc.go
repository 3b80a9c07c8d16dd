// Package rewrite applies a policy decision's row filters and column rules
// to one parsed statement, the way PostgreSQL's row-level security would,
// and returns the SQL to run instead (deparsed with pg_query). It talks to
// no network and never modifies the parser's shared, cached parse tree: it
// rewrites a copy (proto.Clone), and only when a filter applies.
//
// Compile turns a decision's Rules into a Compiled set once per principal,
// table set and policy version; Apply then rewrites each statement. Apply's
// output depends only on the statement's text and the Compiled set, so a
// caller may cache it under both.
//
// # Filters: what is fenced
//
// A filter (decision.Filter, e.g. {"sql": "id = $1", "args": ["u_alice"]} for
// public.users) is an SQL boolean expression over one table's columns. It is
// parsed once as the WHERE clause of "SELECT 1 WHERE <sql>"; its $n become
// literal constants built from Args, and its column references are bound to
// the protected table (wherever the predicate is placed they are qualified
// with the table's alias or name, so they can never resolve to another
// relation). A filter that does not parse, adds clauses of its own, uses a
// $n without an argument, contains a subquery, a schema-qualified operator
// or a function outside a small built-in list (lower, upper, btrim, length,
// substr, now, date_trunc, extract, abs, coalesce/greatest/least, ...) is a
// Compile error: the caller must refuse the statement. The predicate is
// always a parse-tree node: no client text is ever concatenated into SQL.
//
// Every reference to a filtered table in a FROM list, JOIN, sub-select,
// EXISTS/IN/scalar sublink, LATERAL item, CTE body (also data-modifying
// CTEs), each arm of UNION/INTERSECT/EXCEPT, UPDATE ... FROM, DELETE ...
// USING, the source of INSERT ... SELECT, MERGE's source, COPY (SELECT ...)
// TO, EXPLAIN, PREPARE, DECLARE CURSOR and CREATE TABLE AS is replaced by a
// fenced sub-select that keeps the reference's alias (or the table name as
// alias, column aliases included):
//
//	SELECT u.email FROM users u WHERE u.email::int = 1
//	=> SELECT u.email FROM (SELECT * FROM public.users WHERE users.id = 'u_alice' OFFSET 0) u WHERE u.email::int = 1
//
// OFFSET 0 keeps the planner from pulling the sub-select up or pushing the
// client's conditions into it, so a condition that fails or sleeps on
// certain values (a cast error that prints the value, a division by zero,
// pg_sleep) is only ever evaluated on visible rows, as with security_barrier
// views. As PostgreSQL lets leakproof conditions through a barrier, the
// rewrite copies into the fence the client's simple comparisons: top-level
// AND terms that compare one of the table's columns with a literal or a
// parameter (=, <>, <, <=, >, >=, IN (...)), so that WHERE aid = $1 still
// uses the primary key; such a comparison shows nothing of a hidden row,
// and the original stays outside, so the result is unchanged. For the same
// reason the guard of an UPDATE or DELETE repeats them outside its CASE.
// Nothing is copied for a reference whose alias has a column list (users
// AS u(x, id), where u.id is the table's second column): it keeps the
// fence, with the column list outside, and no flat form (see unfence).
// SELECT * keeps the table's column set, so *, u.* and column
// references keep working; a column reference qualified with the table's
// schema (public.users.email) loses the schema, since the fence's alias is a
// plain name. A table reference keeps ONLY and TABLESAMPLE (which move into
// the fence). System columns (ctid, xmin, xmax, cmin, cmax, tableoid) that
// the statement references through a fenced table, qualified or bare, are
// added to the fence's select list under their own names
// (SELECT *, ctid FROM ...), as row-level security leaves them readable; a
// statement that also expands that table's columns (*, u.*, a whole-row
// reference, NATURAL JOIN, a join alias's *) would then get more columns
// than the table has, and is refused (*DeniedError). The targets of UPDATE,
// DELETE and MERGE are not fenced and keep their system columns. A
// whole-row reference (SELECT u FROM users u) becomes `CASE WHEN u IS
// DISTINCT FROM NULL THEN u::public.users END` (named u in a select list),
// since the sub-select's whole row is an anonymous record: the row
// description the client sees is unchanged, and the row is NULL, not a row
// of NULLs, where an outer join has no match. (A bare name is taken for a
// whole row when the nearest relation in scope has that name; a column
// named like its own table's alias would be rewritten too, and fail.)
//
// Unqualified names mean schema public; schema-qualified, quoted and
// differently cased spellings (public.users, "users", USERS) are the same
// table, while "Users" is another one. A reference to a CTE that shadows the
// table's name is not the table (`WITH users AS (SELECT * FROM users)
// SELECT * FROM users` fences only the inner reference).
//
// Names are resolved with package sqlscope, which package parser uses too,
// so that both agree on which relation a name refers to: query levels,
// aliases, CTEs (a non-recursive CTE is visible after its definition
// only), LATERAL, a function in FROM seeing the earlier FROM items, the
// select-list names ORDER BY and DISTINCT ON prefer (GROUP BY prefers input
// columns), EXCLUDED.
//
// # UPDATE, DELETE and ON CONFLICT DO UPDATE
//
// The target of an UPDATE or DELETE of a filtered table is guarded in its
// WHERE clause, with the filter bound to the target's alias:
//
//	(<filter>) AND CASE WHEN (<filter>) THEN (<client's WHERE>) ELSE false END
//
// or just (<filter>) when the client has none. CASE keeps the client's
// condition from being evaluated on a hidden row; RETURNING therefore only
// ever sees visible rows. INSERT ... ON CONFLICT DO UPDATE on a filtered
// table gets `CASE WHEN <filter> THEN <client's WHERE, or true> ELSE
// <violation> END` in its DO UPDATE WHERE: a conflicting row the principal
// may not see fails the statement (42501, as row-level security does)
// instead of being updated, and the client's condition never runs on it. A
// plain INSERT is not restricted by a filter: new rows are the business of
// checks.
//
// # Checks (WITH CHECK)
//
// A check has the form of a filter; its columns are those of a row being
// written. A row that fails it (or for which it is NULL) makes the statement
// fail: the check is wrapped as
//
//	CASE WHEN <check> THEN true
//	ELSE ('dbalproxy: check violation on <schema.table>: ' || random()::text)::int4 > 0 END
//
// whose ELSE branch raises an invalid-integer error (22P02) carrying
// CheckViolationMarker; the proxy turns it into 42501. random() keeps the
// planner from folding the error into every plan: it is raised only when a
// failing row reaches it. Where it goes:
//
//   - UPDATE: the new row is the target row with each SET expression in
//     place of its column, and the WHERE clause W (already guarded by the
//     filter) becomes `W AND CASE WHEN W THEN <check case> ELSE false END`,
//     so the check runs only for rows really updated and W stays usable for
//     index scans. A checked column may only be set to an expression that
//     gives the same value when evaluated again (constants, parameters,
//     columns, operators, casts, the filter's built-in functions; no
//     sub-selects, no DEFAULT, no multi-column or field assignment).
//   - INSERT: the rows go through `SELECT * FROM (<VALUES or SELECT>) AS
//     dbal_v(<columns>) WHERE <check case>`; string literals, NULLs and
//     parameters that took their type from the target column keep it
//     through `COALESCE(x, (NULL::<table>).<column>)`, so a prepared
//     statement's parameter types are unchanged. Without a column list (or
//     with DEFAULT VALUES) the columns come from the catalog (ApplyWith's
//     Tables), as many as the source gives; a column the check reads that
//     the list leaves out takes its catalog default in a sub-select
//     `SELECT dbal_s.*, <default> FROM (<source>) AS dbal_s`, which
//     PostgreSQL does not flatten when the default is volatile, so it runs
//     once a row. Without a catalog these are refused; DEFAULT items are
//     refused.
//   - ON CONFLICT DO UPDATE: as UPDATE, in its WHERE clause (EXCLUDED is
//     visible there).
//   - MERGE: each WHEN action that updates (as UPDATE) or inserts (the new
//     row is its VALUES; the check's columns must be listed) gets the check
//     in its AND condition.
//   - COPY ... FROM into a checked table is refused.
//
// # MERGE
//
// A filtered MERGE source is fenced like any FROM item. A filtered MERGE
// target gets the UPDATE guard in its ON condition, so only visible rows
// match, and in the condition of every WHEN NOT MATCHED BY SOURCE action, so
// a hidden row is never acted on as unmatched. A hidden row whose key a
// source row has is "not matched by target": an INSERT of it then fails on
// the key, as under row-level security.
//
// # What is refused (*DeniedError)
//
//   - COPY <filtered table> FROM (COPY ... TO becomes COPY (SELECT * FROM
//     <fence> AS t) TO, keeping its column list and options);
//   - UPDATE/DELETE ... WHERE CURRENT OF on a filtered table;
//   - a system column of a fenced table in a statement that also expands
//     all of that table's columns (see above);
//   - any other statement naming a filtered table outside FROM: TRUNCATE,
//     LOCK, VACUUM/ANALYZE, CLUSTER, GRANT, DDL;
//   - while any filter or column read rule applies, functions that run SQL
//     given as text or read a table named by a string (query_to_xml,
//     table_to_xml and the other *_to_xml functions, ts_stat, dblink, the
//     pageinspect readers): no rewrite can reach inside a string.
//
// # Column rules: we forbid, we do not mask (*ColumnError)
//
// A column in DenyRead may not be read anywhere: select list, WHERE, JOIN
// ON/USING, GROUP BY, HAVING, ORDER BY, window definitions, RETURNING,
// function and aggregate arguments, SET expressions, ON CONFLICT arbiters.
// Everything that reads every column is refused too, with a message asking
// to list the columns: *, t.*, a whole-row reference (SELECT u, to_json(u)),
// NATURAL JOIN, COPY without a column list. The rewriter does not know the
// other tables' columns, so an unqualified name that a protected table in
// reach has as a forbidden column is refused even if it might belong to
// another relation (qualifying it resolves the doubt); ORDER BY and
// DISTINCT ON names that are select-list aliases are outputs, not columns.
// Forbidden columns are never replaced by NULL: a statement either runs as
// written (filters aside) or is refused.
//
// A column in DenyWrite may not be written: UPDATE SET, an INSERT column
// list, ON CONFLICT DO UPDATE SET, MERGE UPDATE SET and INSERT, COPY FROM;
// an INSERT (also DEFAULT VALUES), MERGE INSERT or COPY FROM without a
// column list writes every column and is refused. Writes come from the
// parser's facts (Table.Columns, Table.Star), which name them exactly;
// reads need the walk described above, since the facts cannot tell which
// relation an unqualified name belongs to.
//
// Both error types have SQLState 42501 and a message meant for the client.
package rewrite
