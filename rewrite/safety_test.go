package rewrite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/dbalproxy/dbalproxy/testenv"
)

// attack is a statement a principal who may see only u_alice's row of
// public.users runs to see or change other rows. Apply rewrites it and the
// result runs on a real PostgreSQL with the demo data, inside a transaction
// that is rolled back.
type attack struct {
	name string
	sql  string
	// setup runs directly (unrewritten) in the transaction first.
	setup string
	// want are the rows the rewritten statement returns (each row compared
	// on its first len(row) columns; NULL is "NULL"), or the lines COPY
	// writes (one column per tab-separated field).
	want [][]string
	// dbErr is a substring of the error PostgreSQL must raise instead.
	dbErr string
	// denied is a substring of the error Apply must return (nothing runs).
	denied string
	// changes lists the tables (other than u_alice's row of users) the
	// statement may change; after/afterWant check their new state.
	changes   []string
	after     string
	afterWant [][]string
}

var attacks = []attack{
	// plain reads
	{name: "select all", sql: "SELECT id, email FROM users ORDER BY id", want: rows("u_alice alice@example.com")},
	{name: "count", sql: "SELECT count(*) FROM users", want: rows("1")},
	{name: "where on hidden row", sql: "SELECT * FROM users WHERE id = 'u_bob'", want: rows()},
	{name: "count by role", sql: "SELECT count(*) FROM users WHERE role = 'admin'", want: rows("0")},
	{name: "aggregate", sql: "SELECT string_agg(email, ',') FROM users", want: rows("alice@example.com")},
	{name: "whole row", sql: "SELECT u::text FROM users u", want: [][]string{{"(u_alice,alice,alice@example.com,user,"}}},
	// joins, sublinks, lateral
	{name: "inner join", sql: "SELECT u.id FROM users u JOIN page_views p ON p.owner_id = u.id", want: rows("u_alice")},
	{name: "left join", sql: "SELECT p.slug, u.email FROM page_views p LEFT JOIN users u ON u.id = p.owner_id ORDER BY p.id",
		want: rows("home NULL", "about NULL", "pricing NULL", "admin NULL", "drafts alice@example.com")},
	{name: "cross join with cast error", sql: "SELECT u.email FROM page_views p JOIN users u ON u.email::int = p.level", dbErr: `"alice@example.com"`},
	{name: "in", sql: "SELECT email FROM users WHERE id IN (SELECT owner_id FROM page_views)", want: rows("alice@example.com")},
	{name: "exists", sql: "SELECT slug FROM page_views p WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = p.owner_id AND u.role = 'admin')", want: rows()},
	{name: "in with like probe", sql: "SELECT slug FROM page_views WHERE owner_id IN (SELECT id FROM users WHERE email LIKE 'bob%')", want: rows()},
	{name: "scalar subquery", sql: "SELECT (SELECT email FROM users WHERE id = 'u_bob')", want: rows("NULL")},
	{name: "lateral", sql: "SELECT p.slug, x.email FROM page_views p, LATERAL (SELECT email FROM users u WHERE u.id = p.owner_id) x", want: rows("drafts alice@example.com")},
	{name: "division probe in a subquery", sql: "SELECT (SELECT 1 / (CASE WHEN count(*) > 1 THEN 0 ELSE 1 END) FROM users)", want: rows("1")},
	// CTEs
	{name: "cte", sql: "WITH x AS (SELECT * FROM users) SELECT id FROM x ORDER BY id", want: rows("u_alice")},
	{name: "cte named users wraps the table", sql: "WITH users AS (SELECT * FROM users) SELECT id FROM users", want: rows("u_alice")},
	{name: "cte named users, qualified inside", sql: "WITH users AS (SELECT * FROM public.users WHERE role <> 'user') SELECT email FROM users", want: rows()},
	{name: "recursive cte", sql: "WITH RECURSIVE r AS (SELECT id FROM users UNION SELECT u.id FROM users u JOIN r ON true) SELECT id FROM r", want: rows("u_alice")},
	// set operations
	{name: "union", sql: "SELECT email FROM users UNION SELECT email FROM public.users WHERE id = 'u_bob'", want: rows("alice@example.com")},
	{name: "intersect", sql: "SELECT 'bob@example.com' INTERSECT SELECT email FROM users", want: rows()},
	{name: "except", sql: "SELECT id FROM (VALUES ('u_alice'), ('u_bob')) v(id) EXCEPT SELECT id FROM users", want: rows("u_bob")},
	// error and timing channels
	{name: "cast error", sql: "SELECT * FROM users WHERE email::int = 1", dbErr: `"alice@example.com"`},
	{name: "cast error behind or", sql: "SELECT id FROM users u WHERE u.id = 'u_alice' OR u.email::int = 1", want: rows("u_alice")},
	{name: "division by zero probe", sql: "SELECT 1/(CASE WHEN email='bob@example.com' THEN 0 ELSE 1 END) FROM users", want: rows("1")},
	{name: "slow function probe", sql: "SELECT id FROM users WHERE pg_sleep(CASE WHEN id='u_bob' THEN 1 ELSE 0 END) IS NOT NULL", want: rows("u_alice")},
	// unfenced single-table reads (see unfence): only simple comparisons
	// stand beside the filter; anything an outer level adds must not.
	{name: "unfenced, probe from the outer level", sql: "SELECT * FROM (SELECT * FROM users WHERE id <> 'x') s WHERE 1/(CASE WHEN s.email = 'bob@example.com' THEN 0 ELSE 1 END) = 1", want: rows("u_alice")},
	{name: "unfenced, cast probe from the outer level", sql: "SELECT s.id FROM (SELECT id, email FROM users WHERE role <> 'x') s WHERE s.email::int = 1", dbErr: `"alice@example.com"`},
	{name: "unfenced, probe through a CTE", sql: "WITH c AS (SELECT * FROM users WHERE id <> 'x') SELECT id FROM c WHERE 1/(CASE WHEN email = 'bob@example.com' THEN 0 ELSE 1 END) = 1", want: rows("u_alice")},
	{name: "unfenced, probe through union all", sql: "SELECT * FROM (SELECT email FROM users WHERE id <> 'x' UNION ALL SELECT 'z') s WHERE 1/(CASE WHEN s.email = 'bob@example.com' THEN 0 ELSE 1 END) = 1", want: rows("alice@example.com", "z")},
	{name: "unfenced, probe in the select list", sql: "SELECT 1/(CASE WHEN email = 'bob@example.com' THEN 0 ELSE 1 END) FROM users WHERE id <> 'x'", want: rows("1")},
	{name: "unfenced, hidden row by key", sql: "SELECT email FROM users WHERE id = 'u_bob'", want: rows()},
	{name: "unfenced, in list", sql: "SELECT id FROM users WHERE id IN ('u_alice', 'u_bob') ORDER BY id", want: rows("u_alice")},
	{name: "unfenced sublink, probe outside", sql: "SELECT slug FROM page_views p WHERE p.owner_id IN (SELECT id FROM users WHERE role <> 'x') AND 1/(CASE WHEN p.owner_id = 'u_bob' THEN 0 ELSE 1 END) = 1", want: rows("drafts")},
	// spellings
	{name: "quoted", sql: `SELECT email FROM "users"`, want: rows("alice@example.com")},
	{name: "upper case", sql: "SELECT EMAIL FROM USERS", want: rows("alice@example.com")},
	{name: "schema", sql: "SELECT public.users.email FROM public.users", want: rows("alice@example.com")},
	{name: "quoted schema", sql: `SELECT email FROM "public"."users" AS "U"`, want: rows("alice@example.com")},
	{name: "comments between tokens", sql: "SELECT/**/email/**/FROM/* users */users -- x\n", want: rows("alice@example.com")},
	{name: "only", sql: "SELECT email FROM ONLY users", want: rows("alice@example.com")},
	{name: "tablesample", sql: "SELECT email FROM users TABLESAMPLE BERNOULLI (100)", want: rows("alice@example.com")},
	{name: "for update", sql: "SELECT id FROM users FOR UPDATE", want: rows("u_alice")},
	{name: "for update of", sql: "SELECT u.id FROM users u, page_views p WHERE p.owner_id = u.id FOR NO KEY UPDATE OF u", want: rows("u_alice")},
	// COPY
	{name: "copy table", sql: "COPY users TO STDOUT", want: [][]string{{"u_alice", "alice", "alice@example.com", "user"}}},
	{name: "copy query", sql: "COPY (SELECT * FROM users) TO STDOUT", want: [][]string{{"u_alice", "alice", "alice@example.com", "user"}}},
	{name: "copy columns csv", sql: "COPY users (id, email) TO STDOUT WITH (FORMAT csv)", want: [][]string{{"u_alice,alice@example.com"}}},
	// cursors and prepared statements
	{name: "cursor", sql: "DECLARE c CURSOR FOR SELECT email FROM users", after: "FETCH ALL FROM c", afterWant: rows("alice@example.com")},
	{name: "prepare", sql: "PREPARE q AS SELECT email FROM users", after: "EXECUTE q", afterWant: rows("alice@example.com")},
	// writes
	{name: "update without where", sql: "UPDATE users SET email = 'hacked@example.com' RETURNING id", want: rows("u_alice"),
		after: "SELECT email FROM users WHERE id = 'u_alice'", afterWant: rows("hacked@example.com")},
	{name: "update schema-qualified", sql: "UPDATE public.users SET email = 'y@example.com' WHERE true RETURNING public.users.id", want: rows("u_alice")},
	{name: "upsert schema-qualified onto a hidden row", sql: "INSERT INTO public.users (id, username, email, role) VALUES ('u_carol', 'c2', 'c2@example.com', 'user') ON CONFLICT (id) DO UPDATE SET role = 'user' RETURNING id", dbErr: CheckViolationMarker},
	{name: "update hidden row", sql: "UPDATE users SET role = 'user' WHERE id = 'u_bob' RETURNING id", want: rows()},
	{name: "update with cast probe", sql: "UPDATE users SET username = username WHERE email::int = 1", dbErr: `"alice@example.com"`},
	{name: "delete where true returning", setup: "DELETE FROM page_views WHERE owner_id = 'u_alice'",
		sql: "DELETE FROM users WHERE true RETURNING *", want: rows("u_alice alice alice@example.com user"),
		after: "SELECT count(*) FROM users", afterWant: rows("5")},
	{name: "delete hidden row", sql: "DELETE FROM users WHERE id = 'u_bob' RETURNING id", want: rows()},
	{name: "update other table from hidden row", sql: "UPDATE page_views SET title = (SELECT email FROM users WHERE id='u_bob')", dbErr: "not-null"},
	{name: "update from", sql: "UPDATE page_views p SET title = u.email FROM users u WHERE u.id = p.owner_id RETURNING p.slug, p.title",
		want: rows("drafts alice@example.com"), changes: []string{"page_views"},
		after: "SELECT slug, title FROM page_views ORDER BY id", afterWant: rows("home Home", "about About~us", "pricing Pricing", "admin Admin~console", "drafts alice@example.com")},
	{name: "delete using", sql: "DELETE FROM page_views p USING users u WHERE u.id = p.owner_id AND u.role = 'admin' RETURNING p.slug", want: rows()},
	{name: "insert select", sql: "INSERT INTO packages (name, version, installed_by) SELECT username, email, id FROM users RETURNING name", want: rows("alice"),
		changes: []string{"packages"}, after: "SELECT name FROM packages ORDER BY id", afterWant: rows("forms", "analytics", "blog", "seo-tools", "alice")},
	{name: "merge source", sql: "MERGE INTO page_views p USING users u ON p.owner_id = u.id WHEN MATCHED THEN UPDATE SET title = u.email",
		changes: []string{"page_views"}, after: "SELECT slug, title FROM page_views ORDER BY id", afterWant: rows("home Home", "about About~us", "pricing Pricing", "admin Admin~console", "drafts alice@example.com")},
	{name: "data-modifying cte update", sql: "WITH d AS (UPDATE users SET email = 'x@example.com' RETURNING id) SELECT id FROM d", want: rows("u_alice")},
	{name: "data-modifying cte delete", sql: "WITH d AS (DELETE FROM users WHERE id <> 'u_alice' RETURNING id) SELECT count(*) FROM d", want: rows("0")},
	{name: "upsert onto a hidden row", sql: "INSERT INTO users (id, username, email, role) VALUES ('u_bob', 'bob2', 'b2@example.com', 'user') ON CONFLICT (id) DO UPDATE SET email = excluded.email RETURNING id", dbErr: CheckViolationMarker},
	{name: "upsert onto the own row", sql: "INSERT INTO users AS u (id, username, email, role) VALUES ('u_alice', 'x', 'new@example.com', 'user') ON CONFLICT (id) DO UPDATE SET email = excluded.email WHERE u.role = 'user' RETURNING u.email", want: rows("new@example.com")},
	// fidelity: what row-level security would return
	{name: "column list renames id: not copied into the fence", sql: "SELECT x, id FROM users AS u(x, id) WHERE id = 'alice' AND length(x) > 0", want: rows("u_alice alice")},
	{name: "column list, simple comparison only", sql: "SELECT x FROM users AS u(x, id) WHERE u.id = 'alice'", want: rows("u_alice")},
	{name: "column list with a name the table lacks", sql: "SELECT u.a FROM users AS u(a) JOIN page_views p ON p.owner_id = u.a WHERE u.a = 'u_alice'", want: rows("u_alice")},
	{name: "system columns through the fence", sql: "SELECT u.ctid, u.tableoid::regclass, u.xmin::text <> '0', u.cmin::text FROM users u JOIN page_views p ON p.owner_id = u.id", want: rows("(0,1) users t 0")},
	{name: "bare system column through the fence", sql: "SELECT ctid, email FROM users WHERE email LIKE '%e%' AND xmax::text <> 'x' ORDER BY xmin::text", want: rows("(0,1) alice@example.com")},
	{name: "system column from a sublink", sql: "SELECT (SELECT u.ctid) FROM users u WHERE u.email LIKE '%'", want: rows("(0,1)")},
	{name: "system column of an update's FROM", sql: "UPDATE page_views p SET title = p.title FROM users u WHERE u.id = p.owner_id AND u.email LIKE '%' RETURNING u.ctid", want: rows("(0,1)"), changes: []string{"page_views"}},
	{name: "system columns of an update target", sql: "UPDATE users SET email = email WHERE email LIKE '%' RETURNING tableoid::regclass, users.xmin::text <> '0'", want: rows("users t")},
	{name: "whole row of an outer join's missing side is NULL", sql: "SELECT p.slug, u IS DISTINCT FROM NULL, to_jsonb(u) IS NULL FROM page_views p LEFT JOIN users u ON u.id = p.owner_id ORDER BY p.id",
		want: rows("home f t", "about f t", "pricing f t", "admin f t", "drafts t f")},
	// refused outright
	{name: "merge into: only the visible row matches", setup: "DELETE FROM page_views WHERE owner_id = 'u_alice'",
		sql:   "MERGE INTO users u USING (SELECT id FROM (VALUES ('u_alice'), ('u_bob'), ('u_carol')) v(id)) s ON u.id = s.id WHEN MATCHED THEN UPDATE SET email = s.id || '@merged'",
		after: "SELECT id, email FROM users WHERE email LIKE '%@merged' ORDER BY id", afterWant: rows("u_alice u_alice@merged")},
	{name: "merge delete", setup: "DELETE FROM page_views WHERE owner_id = 'u_alice'",
		sql: "MERGE INTO users u USING users s ON u.id <> s.id WHEN MATCHED THEN DELETE", after: "SELECT count(*) FROM users", afterWant: rows("6")},
	{name: "merge with cast probe", sql: "MERGE INTO users u USING page_views p ON u.email::int = p.level WHEN MATCHED THEN DO NOTHING", dbErr: `"alice@example.com"`},
	{name: "truncate", sql: "TRUNCATE users CASCADE", denied: "may not name public.users"},
	{name: "copy from", sql: "COPY users FROM STDIN", denied: "COPY ... FROM"},
	{name: "table_to_xml", sql: "SELECT table_to_xml('users', true, false, '')", denied: "table_to_xml"},
}

// rows builds rows from space-separated cells ("~" in a cell is a space).
func rows(lines ...string) [][]string {
	out := [][]string{}
	for _, l := range lines {
		cells := strings.Fields(l)
		for i := range cells {
			cells[i] = strings.ReplaceAll(cells[i], "~", " ")
		}
		out = append(out, cells)
	}
	return out
}

// secrets may not appear in anything a rewritten attack returns.
var secrets = []string{"bob@", "carol@", "dave@", "erin@", "frank@"}

var snapshotTables = []string{"users", "page_views", "component_hierarchy", "workflows", "lua_scripts", "packages"}

func TestAttacksAgainstPostgres(t *testing.T) {
	if len(attacks) < 30 {
		t.Fatalf("%d attacks, want at least 30", len(attacks))
	}
	c := testenv.Shared(t)
	db := testenv.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := testenv.LoadDemo(ctx, c.AppURL(db)); err != nil {
		t.Fatal(err)
	}
	conn, err := pgconn.Connect(ctx, c.AppURL(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	mustExec(t, ctx, conn, "SET statement_timeout = '5s'")
	rules := mustCompile(t, Rules{Filters: map[string]decision.Filter{"public.users": {SQL: "id = $1", Args: []any{"u_alice"}}}})

	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			st := stmt(t, a.sql)
			out, _, err := Apply(st, rules)
			if a.denied != "" {
				if err == nil || !strings.Contains(err.Error(), a.denied) {
					t.Fatalf("Apply(%q) = %q, %v; want an error containing %q", a.sql, out, err, a.denied)
				}
				return
			}
			if err != nil {
				t.Fatalf("Apply(%q): %v", a.sql, err)
			}
			t.Logf("rewritten: %s", out)
			for _, p := range a.check(ctx, conn, out) {
				t.Error(p)
			}
		})
	}
}

// The harness must see the leaks the rewrite prevents: the same attacks,
// unrewritten, fail its checks.
func TestAttackHarnessDetectsLeaks(t *testing.T) {
	c := testenv.Shared(t)
	db := testenv.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := testenv.LoadDemo(ctx, c.AppURL(db)); err != nil {
		t.Fatal(err)
	}
	conn, err := pgconn.Connect(ctx, c.AppURL(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	mustExec(t, ctx, conn, "SET statement_timeout = '5s'")
	caught, ran := 0, 0
	for _, a := range attacks {
		if a.denied != "" {
			continue
		}
		ran++
		if len(a.check(ctx, conn, a.sql)) > 0 {
			caught++
		} else if strings.Contains(a.sql, "'u_bob'") || strings.Contains(a.sql, "bob@") {
			t.Errorf("attack %q leaks nothing even unrewritten: it tests nothing", a.name)
		}
	}
	t.Logf("%d of %d attacks leak when not rewritten", caught, ran)
	if caught < 30 {
		t.Errorf("only %d attacks are caught by the harness when not rewritten, want at least 30", caught)
	}
}

// check runs sql (the rewritten attack) in a transaction that is rolled back
// and returns what went wrong.
func (a attack) check(ctx context.Context, conn *pgconn.PgConn, sql string) (problems []string) {
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	exec := func(q string) bool {
		if _, err := conn.Exec(ctx, q).ReadAll(); err != nil {
			fail("%s: %v", q, err)
			return false
		}
		return true
	}
	defer exec("DEALLOCATE ALL")
	if !exec("BEGIN") {
		return problems
	}
	defer exec("ROLLBACK")
	if a.setup != "" && !exec(a.setup) {
		return problems
	}
	before, err := snapshot(ctx, conn)
	if err != nil {
		fail("snapshot: %v", err)
		return problems
	}
	if !exec("SAVEPOINT attack") {
		return problems
	}
	start := time.Now()
	got, runErr := run(ctx, conn, sql)
	elapsed := time.Since(start)
	if runErr != nil && !exec("ROLLBACK TO SAVEPOINT attack") {
		return problems
	}
	if elapsed >= time.Second {
		fail("took %v: the client's condition was evaluated on hidden rows", elapsed)
	}
	for _, s := range secrets {
		if runErr != nil && strings.Contains(errorText(runErr), s) {
			fail("the error reveals %q: %s", s, errorText(runErr))
		}
		if strings.Contains(fmt.Sprint(got), s) {
			fail("the result reveals %q: %v", s, got)
		}
	}
	switch {
	case a.dbErr != "":
		if runErr == nil || !strings.Contains(errorText(runErr), a.dbErr) {
			fail("ran with %v (rows %v), want an error containing %q", runErr, got, a.dbErr)
		}
	case runErr != nil:
		fail("the statement failed: %v", runErr)
		return problems
	default:
		problems = append(problems, checkRows("result", got, a.want)...)
	}
	if a.after != "" {
		afterRows, err := run(ctx, conn, a.after)
		if err != nil {
			fail("%s: %v", a.after, err)
			return problems
		}
		problems = append(problems, checkRows(a.after, afterRows, a.afterWant)...)
	}
	after, err := snapshot(ctx, conn)
	if err != nil {
		fail("snapshot: %v", err)
		return problems
	}
	for _, tbl := range snapshotTables {
		if !contains(a.changes, tbl) && before[tbl] != after[tbl] {
			fail("table %s changed beyond u_alice's row:\nbefore %s\nafter  %s", tbl, before[tbl], after[tbl])
		}
	}
	return problems
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func checkRows(what string, got, want [][]string) (problems []string) {
	if len(got) != len(want) {
		return []string{fmt.Sprintf("%s: %d rows %v, want %d %v", what, len(got), got, len(want), want)}
	}
	for i := range want {
		if len(got[i]) < len(want[i]) {
			problems = append(problems, fmt.Sprintf("%s: row %d = %v, want %v", what, i, got[i], want[i]))
			continue
		}
		g := got[i][:len(want[i])]
		if len(want[i]) == 1 && len(got[i]) == 1 {
			// single text column: allow a prefix (whole-row values)
			if strings.HasPrefix(got[i][0], want[i][0]) {
				continue
			}
		}
		if !reflect.DeepEqual(g, want[i]) {
			problems = append(problems, fmt.Sprintf("%s: row %d = %v, want %v", what, i, got[i], want[i]))
		}
	}
	return problems
}

func errorText(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Message + " | " + pe.Detail + " | " + pe.Hint + " | " + pe.Where
	}
	return err.Error()
}

func mustExec(t *testing.T, ctx context.Context, conn *pgconn.PgConn, sql string) {
	t.Helper()
	if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// run executes sql in the simple protocol and returns its rows as text (or
// COPY's lines split at tabs).
func run(ctx context.Context, conn *pgconn.PgConn, sql string) ([][]string, error) {
	if strings.HasPrefix(strings.ToUpper(sql), "COPY") {
		var buf bytes.Buffer
		if _, err := conn.CopyTo(ctx, &buf, sql); err != nil {
			return nil, err
		}
		out := [][]string{}
		for _, line := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
			if line != "" {
				out = append(out, strings.Split(line, "\t"))
			}
		}
		return out, nil
	}
	results, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, err
	}
	out := [][]string{}
	for _, r := range results {
		for _, row := range r.Rows {
			cells := make([]string, len(row))
			for i, v := range row {
				if v == nil {
					cells[i] = "NULL"
				} else {
					cells[i] = string(v)
				}
			}
			out = append(out, cells)
		}
	}
	return out, nil
}

// snapshot returns every demo table's content as text, without u_alice's
// row of users, read directly (unrewritten).
func snapshot(ctx context.Context, conn *pgconn.PgConn) (map[string]string, error) {
	snap := make(map[string]string, len(snapshotTables))
	for _, tbl := range snapshotTables {
		where := ""
		if tbl == "users" {
			where = " WHERE id <> 'u_alice'"
		}
		got, err := run(ctx, conn, fmt.Sprintf("SELECT coalesce(string_agg(t::text, '|' ORDER BY t::text), '') || ' #' || count(*) FROM %s t%s", tbl, where))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", tbl, err)
		}
		snap[tbl] = got[0][0]
	}
	return snap, nil
}
