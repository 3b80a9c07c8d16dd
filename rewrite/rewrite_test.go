package rewrite

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/dbalproxy/dbalproxy/parser"
	"github.com/dbalproxy/dbalproxy/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunMain(m)) }

var testParser = parser.New(parser.Options{})

// stmt parses sql, which must hold exactly one statement.
func stmt(tb testing.TB, sql string) *parser.Statement {
	tb.Helper()
	res, err := testParser.Parse(sql)
	if err != nil {
		tb.Fatalf("parse %q: %v", sql, err)
	}
	if len(res.Statements) != 1 {
		tb.Fatalf("%q: %d statements, want 1", sql, len(res.Statements))
	}
	return res.Statements[0]
}

func mustCompile(tb testing.TB, r Rules) *Compiled {
	tb.Helper()
	c, err := Compile(r)
	if err != nil {
		tb.Fatalf("Compile: %v", err)
	}
	return c
}

// The rule sets of the table tests.
var (
	aliceFilter = map[string]decision.Filter{"public.users": {SQL: "id = $1", Args: []any{"u_alice"}}}
	usersCols   = map[string]decision.ColumnRule{"public.users": {DenyRead: []string{"email"}, DenyWrite: []string{"role", "id"}}}
	filterOnly  = Rules{Filters: aliceFilter}
	colsOnly    = Rules{Columns: usersCols}
	both        = Rules{Filters: aliceFilter, Columns: usersCols}
	orFilter    = Rules{Filters: map[string]decision.Filter{"users": {SQL: "id = $1 OR role = $2", Args: []any{"u_alice", "admin"}}}}
)

// fence is the fenced sub-select of public.users under filterOnly.
const fence = "(SELECT * FROM public.users WHERE users.id = 'u_alice' OFFSET 0)"

type applyCase struct {
	name  string
	rules Rules
	sql   string
	want  string // rewritten SQL; "=" for unchanged
	err   string // substring of the expected error
}

var applyCases = []applyCase{
	// 1. fenced references
	{name: "plain select", rules: filterOnly, sql: "SELECT * FROM users", want: `SELECT * FROM public.users users WHERE users.id = 'u_alice'`},
	{name: "client params keep their numbers", rules: filterOnly, sql: "SELECT id, email FROM users WHERE id = $2 AND username = $1", want: `SELECT id, email FROM public.users users WHERE users.id = 'u_alice' AND id = $2 AND username = $1`},
	{name: "alias kept, cast not pushed", rules: filterOnly, sql: "SELECT u.email FROM users AS u WHERE u.email::int = 1", want: `SELECT u.email FROM $FENCE u WHERE u.email::int = 1`},
	{name: "schema qualified", rules: filterOnly, sql: "SELECT * FROM public.users", want: `SELECT * FROM public.users users WHERE users.id = 'u_alice'`},
	{name: "quoted", rules: filterOnly, sql: `SELECT * FROM "users"`, want: `SELECT * FROM public.users users WHERE users.id = 'u_alice'`},
	{name: "upper case", rules: filterOnly, sql: "SELECT * FROM USERS", want: `SELECT * FROM public.users users WHERE users.id = 'u_alice'`},
	{name: "quoted other case is another table", rules: filterOnly, sql: `SELECT * FROM "Users"`, want: "="},
	{name: "other schema", rules: filterOnly, sql: "SELECT * FROM other.users", want: "="},
	{name: "comments between tokens", rules: filterOnly, sql: "SELECT/**/*/**/FROM/* x */users -- y\n WHERE true", want: `SELECT * FROM $FENCE users WHERE true`},
	{name: "join", rules: filterOnly, sql: "SELECT p.title FROM page_views p JOIN users u ON u.id = p.owner_id", want: `SELECT p.title FROM page_views p JOIN $FENCE u ON u.id = p.owner_id`},
	{name: "left join unaliased", rules: filterOnly, sql: "SELECT * FROM page_views p LEFT JOIN users ON users.id = p.owner_id", want: `SELECT * FROM page_views p LEFT JOIN $FENCE users ON users.id = p.owner_id`},
	{name: "in sublink", rules: filterOnly, sql: "SELECT title FROM page_views WHERE owner_id IN (SELECT id FROM users)", want: `SELECT title FROM page_views WHERE owner_id IN (SELECT id FROM public.users users WHERE users.id = 'u_alice')`},
	{name: "exists sublink", rules: filterOnly, sql: "SELECT title FROM page_views p WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = p.owner_id)", want: `SELECT title FROM page_views p WHERE EXISTS (SELECT 1 FROM $FENCE u WHERE u.id = p.owner_id)`},
	{name: "scalar sublink", rules: filterOnly, sql: "SELECT (SELECT email FROM users WHERE id = 'u_bob')", want: `SELECT (SELECT email FROM public.users users WHERE users.id = 'u_alice' AND id = 'u_bob')`},
	{name: "lateral", rules: filterOnly, sql: "SELECT p.title, x.email FROM page_views p, LATERAL (SELECT email FROM users WHERE id = p.owner_id) x", want: `SELECT p.title, x.email FROM page_views p, LATERAL (SELECT email FROM $FENCE users WHERE id = p.owner_id) x`},
	{name: "cte body", rules: filterOnly, sql: "WITH x AS (SELECT * FROM users) SELECT * FROM x", want: `WITH x AS (SELECT * FROM $FENCE users) SELECT * FROM x`},
	{name: "cte shadowing wraps the table", rules: filterOnly, sql: "WITH users AS (SELECT * FROM users WHERE role = 'admin') SELECT * FROM users", want: `WITH users AS (SELECT * FROM (SELECT * FROM public.users WHERE users.id = 'u_alice' AND role = 'admin' OFFSET 0) users WHERE role = 'admin') SELECT * FROM users`},
	{name: "cte shadowing only", rules: filterOnly, sql: "WITH users AS (SELECT 1 AS id) SELECT * FROM users", want: "="},
	{name: "cte shadowing, qualified is the table", rules: filterOnly, sql: "WITH users AS (SELECT 1 AS id) SELECT * FROM users, public.users p", want: `WITH users AS (SELECT 1 AS id) SELECT * FROM users, $FENCE p`},
	{name: "recursive cte", rules: filterOnly, sql: "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t, users WHERE n < 3) SELECT * FROM t", want: `WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t, $FENCE users WHERE n < 3) SELECT * FROM t`},
	{name: "union arms", rules: filterOnly, sql: "SELECT id FROM users UNION SELECT owner_id FROM page_views UNION ALL SELECT id FROM users ORDER BY 1", want: `(SELECT id FROM public.users users WHERE users.id = 'u_alice' UNION SELECT owner_id FROM page_views) UNION ALL SELECT id FROM public.users users WHERE users.id = 'u_alice' ORDER BY 1`},
	{name: "intersect and except", rules: filterOnly, sql: "(SELECT id FROM page_views INTERSECT SELECT id FROM users) EXCEPT SELECT id FROM public.users", want: `(SELECT id FROM page_views INTERSECT SELECT id FROM public.users users WHERE users.id = 'u_alice') EXCEPT SELECT id FROM public.users users WHERE users.id = 'u_alice'`},
	{name: "update from", rules: filterOnly, sql: "UPDATE page_views SET title = u.email FROM users u WHERE u.id = page_views.owner_id", want: `UPDATE page_views SET title = u.email FROM $FENCE u WHERE u.id = page_views.owner_id`},
	{name: "delete using", rules: filterOnly, sql: "DELETE FROM page_views USING users u WHERE u.id = page_views.owner_id", want: `DELETE FROM page_views USING $FENCE u WHERE u.id = page_views.owner_id`},
	{name: "insert select", rules: filterOnly, sql: "INSERT INTO page_views (slug, title) SELECT username, email FROM users", want: `INSERT INTO page_views (slug, title) SELECT username, email FROM public.users users WHERE users.id = 'u_alice'`},
	{name: "merge source", rules: filterOnly, sql: "MERGE INTO page_views p USING users u ON p.owner_id = u.id WHEN MATCHED THEN UPDATE SET title = u.email", want: `MERGE INTO page_views p USING $FENCE u ON p.owner_id = u.id WHEN MATCHED THEN UPDATE SET title = u.email`},
	{name: "copy query", rules: filterOnly, sql: "COPY (SELECT * FROM users) TO STDOUT", want: `COPY (SELECT * FROM public.users users WHERE users.id = 'u_alice') TO STDOUT`},
	{name: "data-modifying cte", rules: filterOnly, sql: "WITH d AS (DELETE FROM users WHERE role = 'user' RETURNING id) SELECT * FROM d", want: `WITH d AS (DELETE FROM users WHERE users.id = 'u_alice' AND role = 'user' AND CASE WHEN users.id = 'u_alice' THEN role = 'user' ELSE false END RETURNING id) SELECT * FROM d`},
	{name: "schema-qualified column refs lose the schema", rules: filterOnly, sql: "SELECT public.users.email, users.id FROM public.users WHERE public.users.id <> ''", want: `SELECT users.email, users.id FROM public.users users WHERE users.id = 'u_alice' AND users.id <> ''`},
	{name: "schema-qualified star", rules: filterOnly, sql: "SELECT public.users.* FROM users", want: `SELECT users.* FROM public.users users WHERE users.id = 'u_alice'`},
	{name: "only", rules: filterOnly, sql: "SELECT * FROM ONLY users", want: `SELECT * FROM ONLY public.users users WHERE users.id = 'u_alice'`},
	{name: "column aliases", rules: filterOnly, sql: "SELECT a, b FROM users AS u(a, b)", want: `SELECT a, b FROM $FENCE u(a, b)`},
	{name: "tablesample", rules: filterOnly, sql: "SELECT * FROM users TABLESAMPLE SYSTEM (50) REPEATABLE (1)", want: `SELECT * FROM (SELECT * FROM public.users TABLESAMPLE system(50) REPEATABLE (1) WHERE users.id = 'u_alice' OFFSET 0) users`},
	{name: "explain", rules: filterOnly, sql: "EXPLAIN SELECT * FROM users", want: `EXPLAIN SELECT * FROM public.users users WHERE users.id = 'u_alice'`},
	{name: "prepare", rules: filterOnly, sql: "PREPARE q AS SELECT * FROM users WHERE id = $1", want: `PREPARE q AS SELECT * FROM public.users users WHERE users.id = 'u_alice' AND id = $1`},
	{name: "declare cursor", rules: filterOnly, sql: "DECLARE c CURSOR FOR SELECT email FROM users", want: `DECLARE c CURSOR FOR SELECT email FROM public.users users WHERE users.id = 'u_alice'`},
	{name: "for update", rules: filterOnly, sql: "SELECT * FROM users FOR UPDATE", want: `SELECT * FROM public.users users WHERE users.id = 'u_alice' FOR UPDATE`},
	{name: "create table as", rules: filterOnly, sql: "CREATE TABLE copy AS SELECT * FROM users", want: `CREATE TABLE copy AS SELECT * FROM public.users users WHERE users.id = 'u_alice'`},
	{name: "function in from sees the fence", rules: filterOnly, sql: "SELECT j.* FROM users u, jsonb_each(to_jsonb(u)) j", want: `SELECT j.* FROM $FENCE u, jsonb_each(to_jsonb(CASE WHEN u IS DISTINCT FROM NULL THEN u::public.users END)) j`},
	{name: "whole row keeps the table's row type", rules: filterOnly, sql: "SELECT u, users.id FROM users u, page_views users", want: `SELECT CASE WHEN u IS DISTINCT FROM NULL THEN u::public.users END AS u, users.id FROM $FENCE u, page_views users`},
	{name: "whole row of an unaliased table", rules: filterOnly, sql: "SELECT users FROM users ORDER BY users", want: `SELECT CASE WHEN users IS DISTINCT FROM NULL THEN users::public.users END AS users FROM public.users users WHERE users.id = 'u_alice' ORDER BY users`},
	{name: "output name is not a whole row", rules: filterOnly, sql: "SELECT id AS u FROM users u ORDER BY u", want: `SELECT id AS u FROM public.users u WHERE u.id = 'u_alice' ORDER BY u`},
	{name: "sub-select in from keeps its fence", rules: filterOnly, sql: "SELECT * FROM (SELECT * FROM users WHERE id = 'x') s WHERE s.email = 'y'", want: `SELECT * FROM (SELECT * FROM (SELECT * FROM public.users WHERE users.id = 'u_alice' AND id = 'x' OFFSET 0) users WHERE id = 'x') s WHERE s.email = 'y'`},
	{name: "union in from keeps its fences", rules: filterOnly, sql: "SELECT * FROM (SELECT id FROM users UNION ALL SELECT owner_id FROM page_views) s", want: `SELECT * FROM (SELECT id FROM $FENCE users UNION ALL SELECT owner_id FROM page_views) s`},
	{name: "other condition keeps the fence", rules: filterOnly, sql: "SELECT * FROM users WHERE id = 'x' AND length(email) > 3", want: `SELECT * FROM (SELECT * FROM public.users WHERE users.id = 'u_alice' AND id = 'x' OFFSET 0) users WHERE id = 'x' AND length(email) > 3`},
	{name: "view body keeps its fence", rules: filterOnly, sql: "CREATE VIEW v AS SELECT * FROM users", want: `CREATE VIEW v AS SELECT * FROM $FENCE users`},
	{name: "untouched table", rules: filterOnly, sql: "SELECT * FROM page_views", want: "="},
	{name: "column list: nothing copied into the fence", rules: filterOnly, sql: "SELECT * FROM users AS u(x, id) WHERE id = 'alice' AND u.x = $1 AND length(x) > 0", want: `SELECT * FROM $FENCE u(x, id) WHERE id = 'alice' AND u.x = $1 AND length(x) > 0`},
	{name: "column list: no flat form", rules: filterOnly, sql: "SELECT x FROM users AS u(x, id) WHERE id = 'alice'", want: `SELECT x FROM $FENCE u(x, id) WHERE id = 'alice'`},
	{name: "column list beside a plain reference", rules: filterOnly, sql: "SELECT 1 FROM users AS a(x), users b WHERE a.x = 'u_1' AND b.id = 'u_2'", want: `SELECT 1 FROM $FENCE a(x), (SELECT * FROM public.users WHERE users.id = 'u_alice' AND users.id = 'u_2' OFFSET 0) b WHERE a.x = 'u_1' AND b.id = 'u_2'`},
	{name: "system columns join the fence", rules: filterOnly, sql: "SELECT u.xmin, u.ctid, p.ctid FROM users u JOIN page_views p ON p.owner_id = u.id AND u.tableoid > 0", want: `SELECT u.xmin, u.ctid, p.ctid FROM (SELECT *, tableoid, ctid, xmin FROM public.users WHERE users.id = 'u_alice' OFFSET 0) u JOIN page_views p ON p.owner_id = u.id AND u.tableoid > 0`},
	{name: "bare system column", rules: filterOnly, sql: "SELECT cmax FROM users WHERE email LIKE 'a%' ORDER BY xmax", want: `SELECT cmax FROM (SELECT *, xmax, cmax FROM public.users WHERE users.id = 'u_alice' OFFSET 0) users WHERE email LIKE 'a%' ORDER BY xmax`},
	{name: "system column named by an output", rules: filterOnly, sql: "SELECT email AS ctid FROM users WHERE email LIKE 'a%' ORDER BY ctid", want: `SELECT email AS ctid FROM $FENCE users WHERE email LIKE 'a%' ORDER BY ctid`},
	{name: "system column of a sub-select's table", rules: filterOnly, sql: "SELECT s.ctid FROM (SELECT ctid, id FROM users WHERE email LIKE 'a%') s", want: `SELECT s.ctid FROM (SELECT ctid, id FROM (SELECT *, ctid FROM public.users WHERE users.id = 'u_alice' OFFSET 0) users WHERE email LIKE 'a%') s`},
	{name: "system column from an inner level", rules: filterOnly, sql: "SELECT (SELECT ctid) FROM users u, LATERAL (SELECT u.xmin) x WHERE u.email LIKE 'a%'", want: `SELECT (SELECT ctid) FROM (SELECT *, ctid, xmin FROM public.users WHERE users.id = 'u_alice' OFFSET 0) u, LATERAL (SELECT u.xmin) x WHERE u.email LIKE 'a%'`},
	{name: "bare system column does not reach into a join", rules: filterOnly, sql: "SELECT ctid FROM users u JOIN page_views p ON true", want: `SELECT ctid FROM $FENCE u JOIN page_views p ON true`},
	{name: "bare system column of two tables is PostgreSQL's ambiguity", rules: filterOnly, sql: "SELECT ctid FROM users u, page_views p", want: `SELECT ctid FROM $FENCE u, page_views p`},
	{name: "system column, flat form", rules: filterOnly, sql: "SELECT *, ctid FROM users WHERE id = 'x'", want: `SELECT *, ctid FROM public.users users WHERE users.id = 'u_alice' AND id = 'x'`},
	{name: "system column with star", rules: filterOnly, sql: "SELECT *, u.ctid FROM users u WHERE u.email LIKE 'a%'", err: "system column ctid of public.users cannot be read"},
	{name: "system column with qualified star", rules: filterOnly, sql: "SELECT u.*, x.n FROM users u, LATERAL (SELECT u.xmin::text AS n) x", err: "system column xmin"},
	{name: "system column with whole row", rules: filterOnly, sql: "SELECT to_jsonb(u) FROM users u JOIN page_views p ON p.owner_id = u.id WHERE u.tableoid > 0", err: "system column tableoid"},
	{name: "system column with join alias star", rules: filterOnly, sql: "SELECT j.* FROM (users u JOIN page_views p ON p.owner_id = u.id AND u.ctid > '(0,0)') j", err: "system column ctid"},
	{name: "system column with natural join", rules: filterOnly, sql: "SELECT u.ctid FROM users u NATURAL JOIN page_views p", err: "system column ctid"},
	{name: "system column with star of another table", rules: filterOnly, sql: "SELECT p.*, u.ctid FROM users u JOIN page_views p ON p.owner_id = u.id", want: `SELECT p.*, u.ctid FROM (SELECT *, ctid FROM public.users WHERE users.id = 'u_alice' OFFSET 0) u JOIN page_views p ON p.owner_id = u.id`},
	{name: "whole row in an outer join keeps NULL", rules: filterOnly, sql: "SELECT u::text FROM page_views p LEFT JOIN users u ON u.id = p.owner_id", want: `SELECT CASE WHEN u IS DISTINCT FROM NULL THEN u::public.users END::text AS u FROM page_views p LEFT JOIN $FENCE u ON u.id = p.owner_id`},

	// 2. UPDATE and DELETE targets
	{name: "update with params", rules: filterOnly, sql: "UPDATE users SET email = $1 WHERE id = $2", want: `UPDATE users SET email = $1 WHERE users.id = 'u_alice' AND id = $2 AND CASE WHEN users.id = 'u_alice' THEN id = $2 ELSE false END`},
	{name: "update keeps the target's system columns", rules: filterOnly, sql: "UPDATE users u SET email = 'x' WHERE u.email LIKE 'a%' RETURNING u.ctid, xmin", want: `UPDATE users u SET email = 'x' WHERE u.id = 'u_alice' AND CASE WHEN u.id = 'u_alice' THEN u.email LIKE 'a%' ELSE false END RETURNING u.ctid, xmin`},
	{name: "update without where, alias", rules: filterOnly, sql: "UPDATE users AS u SET email = 'x' RETURNING u.*", want: `UPDATE users u SET email = 'x' WHERE u.id = 'u_alice' RETURNING u.*`},
	{name: "delete where true returning", rules: filterOnly, sql: "DELETE FROM users WHERE true RETURNING *", want: `DELETE FROM users WHERE users.id = 'u_alice' AND CASE WHEN users.id = 'u_alice' THEN true ELSE false END RETURNING *`},
	{name: "or in client where", rules: filterOnly, sql: "UPDATE users SET email = 'x' WHERE id = 'a' OR role = 'b'", want: `UPDATE users SET email = 'x' WHERE users.id = 'u_alice' AND CASE WHEN users.id = 'u_alice' THEN id = 'a' OR role = 'b' ELSE false END`},
	{name: "or in filter", rules: orFilter, sql: "DELETE FROM public.users WHERE id IN (SELECT owner_id FROM page_views)", want: `DELETE FROM public.users WHERE (users.id = 'u_alice' OR users.role = 'admin') AND CASE WHEN users.id = 'u_alice' OR users.role = 'admin' THEN id IN (SELECT owner_id FROM page_views) ELSE false END`},
	{name: "subquery on the target table", rules: filterOnly, sql: "UPDATE page_views SET title = (SELECT email FROM users WHERE id = 'u_bob')", want: `UPDATE page_views SET title = (SELECT email FROM public.users users WHERE users.id = 'u_alice' AND id = 'u_bob')`},
	{name: "on conflict do update", rules: filterOnly, sql: "INSERT INTO users (id, username, email, role) VALUES ('u_bob', 'x', 'x', 'user') ON CONFLICT (id) DO UPDATE SET email = excluded.email", want: `INSERT INTO users (id, username, email, role) VALUES ('u_bob', 'x', 'x', 'user') ON CONFLICT (id) DO UPDATE SET email = excluded.email WHERE CASE WHEN users.id = 'u_alice' THEN true ELSE ('dbalproxy: check violation on public.users: ' || pg_catalog.random()::pg_catalog.text)::int > 0 END`},
	{name: "on conflict do update with where and alias", rules: filterOnly, sql: "INSERT INTO users AS u (id) VALUES ('x') ON CONFLICT (id) DO UPDATE SET email = excluded.email WHERE u.role = 'user' RETURNING *", want: `INSERT INTO users AS u (id) VALUES ('x') ON CONFLICT (id) DO UPDATE SET email = excluded.email WHERE CASE WHEN u.id = 'u_alice' THEN u.role = 'user' ELSE ('dbalproxy: check violation on public.users: ' || pg_catalog.random()::pg_catalog.text)::int > 0 END RETURNING *`},
	{name: "on conflict do nothing", rules: filterOnly, sql: "INSERT INTO users (id) VALUES ('x') ON CONFLICT DO NOTHING", want: "="},
	{name: "plain insert", rules: filterOnly, sql: "INSERT INTO users (id, username, email, role) VALUES ($1, $2, $3, 'user')", want: "="},
	{name: "where current of", rules: filterOnly, sql: "UPDATE users SET email = 'x' WHERE CURRENT OF c", err: "WHERE CURRENT OF"},

	// 3. COPY
	{name: "copy to", rules: filterOnly, sql: "COPY users TO STDOUT", want: `COPY (SELECT * FROM $FENCE users) TO STDOUT`},
	{name: "copy to with columns and options", rules: filterOnly, sql: "COPY public.users (id, email) TO STDOUT WITH (FORMAT csv, HEADER, FORCE_QUOTE (email))", want: `COPY (SELECT id, email FROM $FENCE users) TO STDOUT WITH (FORMAT CSV, HEADER, FORCE_QUOTE (email))`},
	{name: "copy from", rules: filterOnly, sql: "COPY users FROM STDIN", err: "COPY ... FROM into public.users is not allowed"},

	// 4. MERGE target
	{name: "merge into filtered", rules: filterOnly, sql: "MERGE INTO users u USING page_views p ON u.id = p.owner_id WHEN MATCHED THEN DELETE",
		want: `MERGE INTO users u USING page_views p ON u.id = 'u_alice' AND CASE WHEN u.id = 'u_alice' THEN u.id = p.owner_id ELSE false END WHEN MATCHED THEN DELETE`},
	{name: "merge not matched by source", rules: filterOnly, sql: "MERGE INTO users USING page_views p ON users.id = p.owner_id WHEN NOT MATCHED BY SOURCE AND users.role = 'user' THEN DELETE WHEN NOT MATCHED BY SOURCE THEN UPDATE SET email = 'x'",
		want: `MERGE INTO users USING page_views p ON users.id = 'u_alice' AND CASE WHEN users.id = 'u_alice' THEN users.id = p.owner_id ELSE false END WHEN NOT MATCHED BY SOURCE AND users.id = 'u_alice' AND users.role = 'user' AND CASE WHEN users.id = 'u_alice' THEN users.role = 'user' ELSE false END THEN DELETE WHEN NOT MATCHED BY SOURCE AND users.id = 'u_alice' THEN UPDATE SET email = 'x'`},

	// other refusals
	{name: "truncate", rules: filterOnly, sql: "TRUNCATE users", err: "may not name public.users"},
	{name: "drop", rules: filterOnly, sql: "DROP TABLE IF EXISTS page_views, public.users", err: "may not name public.users"},
	{name: "drop other", rules: filterOnly, sql: "DROP TABLE page_views", want: "="},
	{name: "lock", rules: filterOnly, sql: "LOCK TABLE users", err: "may not name public.users"},
	{name: "ddl", rules: filterOnly, sql: "CREATE INDEX ON users ((1 / (email = 'bob@example.com')::int))", err: "may not name public.users"},
	{name: "sql in a string", rules: filterOnly, sql: "SELECT query_to_xml('SELECT * FROM users', true, true, '')", err: "function query_to_xml is not allowed"},
	{name: "table named by a string", rules: filterOnly, sql: "SELECT table_to_xml('users', true, true, '')", err: "function table_to_xml is not allowed"},

	// 5. column rules: reads
	{name: "read in select list", rules: colsOnly, sql: "SELECT email FROM users", err: `column "email" of public.users may not be read`},
	{name: "star", rules: colsOnly, sql: "SELECT * FROM users", err: "list the columns you need"},
	{name: "qualified star", rules: colsOnly, sql: "SELECT u.* FROM users u", err: "list the columns you need"},
	{name: "whole row", rules: colsOnly, sql: "SELECT u FROM users u", err: "list the columns you need"},
	{name: "whole row in function", rules: colsOnly, sql: "SELECT row_to_json(u) FROM users u", err: "list the columns you need"},
	{name: "read in where", rules: colsOnly, sql: "SELECT id FROM users WHERE email = 'x'", err: `column "email"`},
	{name: "read in order by", rules: colsOnly, sql: "SELECT id FROM users ORDER BY email", err: `column "email"`},
	{name: "read in group by", rules: colsOnly, sql: "SELECT count(*) FROM users GROUP BY email", err: `column "email"`},
	{name: "read in having", rules: colsOnly, sql: "SELECT role FROM users GROUP BY role HAVING max(email) > 'a'", err: `column "email"`},
	{name: "read in join on", rules: colsOnly, sql: "SELECT p.title FROM page_views p JOIN users u ON u.email = p.title", err: `column "email"`},
	{name: "read in function arg", rules: colsOnly, sql: "SELECT lower(email) FROM users", err: `column "email"`},
	{name: "read in window", rules: colsOnly, sql: "SELECT rank() OVER (ORDER BY email) FROM users", err: `column "email"`},
	{name: "read in returning", rules: colsOnly, sql: "UPDATE users SET username = 'x' RETURNING email", err: `column "email"`},
	{name: "returning star", rules: colsOnly, sql: "DELETE FROM users RETURNING *", err: "list the columns you need"},
	{name: "read in set expression", rules: colsOnly, sql: "UPDATE users SET username = email", err: `column "email"`},
	{name: "read via schema-qualified name", rules: colsOnly, sql: "SELECT public.users.email FROM users", err: `column "email"`},
	{name: "join using", rules: colsOnly, sql: "SELECT id FROM users JOIN contacts USING (email)", err: `column "email"`},
	{name: "natural join", rules: colsOnly, sql: "SELECT id FROM users NATURAL JOIN page_views", err: "NATURAL JOIN"},
	{name: "join alias exposes the table", rules: colsOnly, sql: "SELECT j.email FROM (users u JOIN page_views p ON p.owner_id = u.id) AS j", err: `column "email"`},
	{name: "correlated unqualified is ambiguous", rules: colsOnly, sql: "SELECT id, (SELECT count(*) FROM page_views WHERE email = title) FROM users", err: "qualify it"},
	{name: "star in exists", rules: colsOnly, sql: "SELECT 1 WHERE EXISTS (SELECT * FROM users)", err: "list the columns you need"},
	{name: "copy to without columns", rules: colsOnly, sql: "COPY users TO STDOUT", err: "list the columns you need"},
	{name: "copy to with a forbidden column", rules: colsOnly, sql: "COPY users (id, email) TO STDOUT", err: `column "email"`},
	{name: "allowed columns", rules: colsOnly, sql: "SELECT id, username, role FROM users u WHERE u.role = 'user' ORDER BY username", want: "="},
	{name: "output alias in order by", rules: colsOnly, sql: "SELECT id AS email FROM users ORDER BY email", want: "="},
	{name: "qualified other table", rules: colsOnly, sql: "SELECT u.id, p.title FROM users u JOIN page_views p ON p.owner_id = u.id WHERE p.title <> ''", want: "="},
	{name: "count star", rules: colsOnly, sql: "SELECT count(*) FROM users", want: "="},

	// 5. column rules: writes
	{name: "update set", rules: colsOnly, sql: "UPDATE users SET role = 'god'", err: `column "role" of public.users may not be written`},
	{name: "insert column list", rules: colsOnly, sql: "INSERT INTO users (id, username) VALUES ('x', 'y')", err: `column "id" of public.users may not be written`},
	{name: "insert without column list", rules: colsOnly, sql: "INSERT INTO users VALUES ('x', 'y', 'z', 'user')", err: "without a column list"},
	{name: "insert select without column list", rules: colsOnly, sql: "INSERT INTO users SELECT * FROM staging", err: "without a column list"},
	{name: "on conflict set", rules: colsOnly, sql: "INSERT INTO users (username) VALUES ('y') ON CONFLICT (username) DO UPDATE SET role = 'god'", err: `column "role"`},
	{name: "merge update set", rules: colsOnly, sql: "MERGE INTO users u USING staging s ON u.username = s.username WHEN MATCHED THEN UPDATE SET role = s.role", err: `column "role"`},
	{name: "merge insert without list", rules: colsOnly, sql: "MERGE INTO users u USING staging s ON u.username = s.username WHEN NOT MATCHED THEN INSERT VALUES (s.a, s.b, s.c, s.d)", err: "without a column list"},
	{name: "copy from", rules: colsOnly, sql: "COPY users FROM STDIN", err: "without a column list"},
	{name: "allowed write", rules: colsOnly, sql: "UPDATE users SET username = 'x' WHERE id = 'u_alice'", want: "="},

	// filters and column rules together
	{name: "both, allowed", rules: both, sql: "SELECT id, username FROM users WHERE username LIKE 'a%'", want: `SELECT id, username FROM $FENCE users WHERE username LIKE 'a%'`},
	{name: "both, forbidden", rules: both, sql: "SELECT id FROM users WHERE email LIKE 'b%'", err: `column "email"`},
	{name: "both, update allowed column", rules: both, sql: "UPDATE users SET username = 'al' WHERE username = 'alice'", want: `UPDATE users SET username = 'al' WHERE users.id = 'u_alice' AND username = 'alice' AND CASE WHEN users.id = 'u_alice' THEN username = 'alice' ELSE false END`},
}

func TestApply(t *testing.T) {
	var todo strings.Builder
	for _, tc := range applyCases {
		t.Run(tc.name, func(t *testing.T) {
			st := stmt(t, tc.sql)
			before := proto.Clone(st.Tree)
			got, changed, err := Apply(st, mustCompile(t, tc.rules))
			if !proto.Equal(before, st.Tree) {
				t.Fatal("Apply modified the statement's parse tree")
			}
			if tc.err != "" {
				if err == nil {
					t.Fatalf("Apply(%q) = %q, want an error containing %q", tc.sql, got, tc.err)
				}
				if !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Apply(%q) error %q, want it to contain %q", tc.sql, err, tc.err)
				}
				var ce *ColumnError
				var de *DeniedError
				if !errors.As(err, &ce) && !errors.As(err, &de) {
					t.Fatalf("error %T is neither *ColumnError nor *DeniedError", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Apply(%q): %v", tc.sql, err)
			}
			if tc.want == "" {
				fmt.Fprintf(&todo, "%s\n\t%q\n", tc.name, got)
				return
			}
			want := strings.ReplaceAll(tc.want, "$FENCE", fence)
			if tc.want == "=" {
				want = tc.sql
			}
			if got != want {
				t.Errorf("Apply(%q)\n got %s\nwant %s", tc.sql, got, want)
			}
			if changed != (got != tc.sql) {
				t.Errorf("changed = %v for %q -> %q", changed, tc.sql, got)
			}
			if changed {
				_, tree, _ := apply(st, mustCompile(t, tc.rules))
				if err := verify(got, tree); err != nil {
					t.Error(err)
				}
			}
		})
	}
	if todo.Len() > 0 {
		t.Errorf("cases without an expected output:\n%s", todo.String())
	}
}

func TestApplyIsSafeForConcurrentUse(t *testing.T) {
	c := mustCompile(t, both)
	st := stmt(t, "SELECT u.id, p.title FROM users u JOIN page_views p ON p.owner_id = u.id WHERE public.users.id <> ''")
	want, _, err := Apply(st, c)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				got, _, err := Apply(st, c)
				if err != nil || got != want {
					t.Errorf("concurrent Apply = %q, %v; want %q", got, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

// When the parser's facts do not show a filtered table that the walk finds,
// Apply rewrites a copy anyway instead of trusting the facts.
func TestApplyDoesNotTrustMissingFacts(t *testing.T) {
	rules := mustCompile(t, Rules{
		Filters: aliceFilter,
		Columns: map[string]decision.ColumnRule{"public.page_views": {DenyRead: []string{"level"}}},
	})
	orig := stmt(t, "SELECT p.title FROM page_views p, users u WHERE u.id = p.owner_id")
	st := *orig
	st.Tables = nil
	for _, tb := range orig.Tables {
		if tb.Name != "users" {
			st.Tables = append(st.Tables, tb)
		}
	}
	before := proto.Clone(orig.Tree)
	got, changed, err := Apply(&st, rules)
	if err != nil || !changed {
		t.Fatalf("Apply = %q, %v, %v", got, changed, err)
	}
	if want := "SELECT p.title FROM page_views p, " + fence + " u WHERE u.id = p.owner_id"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if !proto.Equal(before, orig.Tree) {
		t.Error("the shared tree was modified")
	}
}

func TestErrorsCarrySQLState(t *testing.T) {
	for _, sql := range []string{"SELECT email FROM users", "TRUNCATE users"} {
		_, _, err := Apply(stmt(t, sql), mustCompile(t, both))
		var s interface{ SQLState() string }
		if !errors.As(err, &s) || s.SQLState() != "42501" {
			t.Errorf("%s: error %v has no SQLState 42501", sql, err)
		}
	}
}
