package rewrite

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/dbalproxy/dbalproxy/parser"
	"github.com/dbalproxy/dbalproxy/testenv"
)

// The check rule sets: a "user" principal (own row only, as filter and
// check), an "admin" one (may not make anyone god or supergod) and one with
// a numeric check on page_views, to see that parameters keep their types.
var (
	ownRow     = decision.Filter{SQL: "id = $1", Args: []any{"u_alice"}}
	userChecks = Rules{
		Filters: map[string]decision.Filter{"public.users": ownRow},
		Checks:  map[string]decision.Filter{"public.users": ownRow},
	}
	adminChecks = Rules{Checks: map[string]decision.Filter{"public.users": {SQL: "role IN ('user','admin')"}}}
	levelChecks = Rules{Checks: map[string]decision.Filter{"public.page_views": {SQL: "level BETWEEN $1 AND $2", Args: []any{1, 5}}}}
)

// checkViolation is what the rewritten statement's error carries when a row
// fails a check.
const checkViolation = CheckViolationMarker + "public.users: "

type checkCaseT struct {
	name  string
	rules Rules
	sql   string
	// denied is a substring of the error Apply must return.
	denied string
	// violates: PostgreSQL must fail the statement with the marker, and
	// nothing may change.
	violates string
	// otherwise the statement runs, returns want, and after returns
	// afterWant.
	want      [][]string
	after     string
	afterWant [][]string
}

var checkCases = []checkCaseT{
	// UPDATE
	{name: "admin raises a role", rules: adminChecks, sql: "UPDATE users SET role = 'god' WHERE id = 'u_bob'", violates: checkViolation},
	{name: "admin raises a role by parameter-free expression", rules: adminChecks, sql: "UPDATE users SET role = upper('god')::text WHERE id = 'u_bob'", violates: checkViolation},
	{name: "admin sets a permitted role", rules: adminChecks, sql: "UPDATE users SET role = 'admin' WHERE id = 'u_alice' RETURNING role", want: rows("admin"),
		after: "SELECT role FROM users WHERE id = 'u_alice'", afterWant: rows("admin")},
	{name: "admin touches a god row", rules: adminChecks, sql: "UPDATE users SET email = 'x@example.com' WHERE role = 'god'", violates: checkViolation},
	{name: "admin update of no row writes nothing", rules: adminChecks, sql: "UPDATE users SET role = 'god' WHERE id = 'nobody' RETURNING id", want: rows()},
	{name: "admin update without where over a god row", rules: adminChecks, sql: "UPDATE users SET email = email", violates: checkViolation},
	{name: "admin mixed rows: all or nothing", rules: adminChecks, sql: "UPDATE users SET role = CASE WHEN id = 'u_alice' THEN 'admin' ELSE 'god' END WHERE role = 'user'", violates: checkViolation},
	{name: "admin sets role from another column", rules: adminChecks, sql: "UPDATE users SET role = username WHERE id = 'u_alice'", violates: checkViolation},
	{name: "admin subquery value refused", rules: adminChecks, sql: "UPDATE users SET role = (SELECT 'god')", denied: "may only be set to"},
	{name: "admin volatile value refused", rules: adminChecks, sql: "UPDATE users SET role = CASE WHEN random() < 2 THEN 'god' END", denied: "may only be set to"},
	{name: "admin default refused", rules: adminChecks, sql: "UPDATE users SET role = DEFAULT", denied: "DEFAULT"},
	{name: "admin multi-assign refused", rules: adminChecks, sql: "UPDATE users SET (role, email) = (SELECT 'god', 'x')", denied: "multi-column"},
	{name: "data-modifying cte", rules: adminChecks, sql: "WITH x AS (UPDATE users SET role = 'supergod' WHERE id = 'u_bob' RETURNING id) SELECT count(*) FROM x", violates: checkViolation},
	{name: "user moves its row away", rules: userChecks, sql: "UPDATE users SET id = 'u_mallory' RETURNING id", violates: checkViolation},
	{name: "user updates its own email", rules: userChecks, sql: "UPDATE users SET email = 'a2@example.com' RETURNING email", want: rows("a2@example.com"),
		after: "SELECT email FROM users WHERE id = 'u_alice'", afterWant: rows("a2@example.com")},
	{name: "user update of a hidden row is a no-op, not a violation", rules: userChecks, sql: "UPDATE users SET role = 'god' WHERE id = 'u_bob' RETURNING id", want: rows()},
	// INSERT
	{name: "admin inserts a god", rules: adminChecks, sql: "INSERT INTO users (id, username, email, role) VALUES ('u_x', 'x', 'x@example.com', 'god')", violates: checkViolation},
	{name: "admin inserts one good, one god row", rules: adminChecks, sql: "INSERT INTO users (id, username, email, role) VALUES ('u_x', 'x', 'x@example.com', 'user'), ('u_y', 'y', 'y@example.com', 'god')", violates: checkViolation},
	{name: "admin inserts a user", rules: adminChecks, sql: "INSERT INTO users (id, username, email, role, created_at) VALUES ('u_x', 'x', 'x@example.com', 'user', '2020-01-02 03:04:05+00') RETURNING id, created_at < '2021-01-01'",
		want: rows("u_x t"), after: "SELECT count(*) FROM users", afterWant: rows("7")},
	{name: "admin insert select", rules: adminChecks, sql: "INSERT INTO users (id, username, email, role) SELECT id || '2', username || '2', email || '2', role FROM users", violates: checkViolation},
	{name: "admin insert select of permitted rows", rules: adminChecks, sql: "INSERT INTO users (id, username, email, role) SELECT id || '2', username || '2', email || '2', role FROM users WHERE role = 'user' ORDER BY id RETURNING id",
		want: rows("u_alice2", "u_erin2", "u_frank2")},
	{name: "admin insert without role refused", rules: adminChecks, sql: "INSERT INTO users (id, username, email) VALUES ('u_x', 'x', 'x@example.com')", denied: "must give column role"},
	{name: "admin insert without column list refused", rules: adminChecks, sql: "INSERT INTO users VALUES ('u_x', 'x', 'x@example.com', 'god')", denied: "column list"},
	{name: "admin insert default values refused", rules: adminChecks, sql: "INSERT INTO users DEFAULT VALUES", denied: "DEFAULT VALUES"},
	{name: "admin insert with DEFAULT item refused", rules: adminChecks, sql: "INSERT INTO users (id, username, email, role, created_at) VALUES ('u_x', 'x', 'x@example.com', 'user', DEFAULT)", denied: "DEFAULT in VALUES"},
	{name: "insert with data-modifying cte", rules: adminChecks, sql: "WITH d AS (DELETE FROM packages WHERE name = 'seo-tools' RETURNING name) INSERT INTO users (id, username, email, role) SELECT 'u_' || name, name, name || '@x', 'god' FROM d", violates: checkViolation},
	{name: "user inserts someone else", rules: userChecks, sql: "INSERT INTO users (id, username, email, role) VALUES ('u_mallory', 'm', 'm@example.com', 'user')", violates: checkViolation},
	// ON CONFLICT
	{name: "admin upsert raises a role", rules: adminChecks, sql: "INSERT INTO users (id, username, email, role) VALUES ('u_bob', 'bob', 'bob@example.com', 'user') ON CONFLICT (id) DO UPDATE SET role = 'god'", violates: checkViolation},
	{name: "admin upsert raises a role from excluded", rules: adminChecks, sql: "INSERT INTO users (id, username, email, role) VALUES ('u_bob', 'bob', 'bob@example.com', 'admin') ON CONFLICT (id) DO UPDATE SET role = excluded.role || 'x'", violates: checkViolation},
	{name: "admin upsert with a permitted role", rules: adminChecks, sql: "INSERT INTO users AS u (id, username, email, role) VALUES ('u_bob', 'bob', 'bob@example.com', 'admin') ON CONFLICT (id) DO UPDATE SET role = excluded.role RETURNING u.role",
		want: rows("admin")},
	{name: "admin upsert onto a god row", rules: adminChecks, sql: "INSERT INTO users (id, username, email, role) SELECT id, username, email, 'user' FROM users WHERE role = 'god' ON CONFLICT (id) DO UPDATE SET email = excluded.email", violates: checkViolation},
	// refused
	{name: "merge update raises a role", rules: adminChecks, sql: "MERGE INTO users u USING page_views p ON p.owner_id = u.id WHEN MATCHED THEN UPDATE SET role = 'god'", violates: checkViolation},
	{name: "merge update of a god row", rules: adminChecks, sql: "MERGE INTO users u USING (VALUES ('u_carol')) s(id) ON u.id = s.id WHEN MATCHED THEN UPDATE SET email = 'c2@example.com'", violates: checkViolation},
	{name: "merge insert of a god", rules: adminChecks, sql: "MERGE INTO users u USING (VALUES ('u_x')) s(id) ON u.id = s.id WHEN NOT MATCHED THEN INSERT (id, username, email, role) VALUES (s.id, 'x', 'x@example.com', 'god')", violates: checkViolation},
	{name: "merge permitted", rules: adminChecks, sql: "MERGE INTO users u USING (VALUES ('u_alice', 'admin'), ('u_x', 'user')) s(id, r) ON u.id = s.id WHEN MATCHED AND u.role = 'user' THEN UPDATE SET role = s.r WHEN NOT MATCHED THEN INSERT (id, username, email, role) VALUES (s.id, 'x', 'x@example.com', s.r)",
		after: "SELECT id, role FROM users WHERE id IN ('u_alice', 'u_x') ORDER BY id", afterWant: rows("u_alice admin", "u_x user")},
	{name: "merge insert without the checked column", rules: adminChecks, sql: "MERGE INTO users u USING (VALUES ('u_x')) s(id) ON u.id = s.id WHEN NOT MATCHED THEN INSERT (id, username, email) VALUES (s.id, 'x', 'x@example.com')", denied: "must give column role"},
	{name: "user merge moves its row", rules: userChecks, sql: "MERGE INTO users u USING (VALUES (1)) s(n) ON true WHEN MATCHED THEN UPDATE SET id = 'u_mallory'", violates: checkViolation},
	{name: "copy from refused", rules: adminChecks, sql: "COPY users (id, username, email, role) FROM STDIN", denied: "COPY ... FROM"},
	{name: "delete is not checked", rules: adminChecks, sql: "DELETE FROM packages WHERE name = 'seo-tools' RETURNING name", want: rows("seo-tools")},
	// numeric check: parameters and literals keep their types
	{name: "level too high", rules: levelChecks, sql: "UPDATE page_views SET level = 9 WHERE slug = 'home'", violates: CheckViolationMarker + "public.page_views: "},
	{name: "level by arithmetic", rules: levelChecks, sql: "UPDATE page_views SET level = level + 10", violates: CheckViolationMarker + "public.page_views: "},
	{name: "level insert typed literals", rules: levelChecks, sql: "INSERT INTO page_views (slug, title, level, is_active, created_at) VALUES ('n', 'N', 3, 'f', '2020-01-01') RETURNING level, is_active",
		want: rows("3 f")},
}

func TestChecksAgainstPostgres(t *testing.T) {
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

	for _, cc := range checkCases {
		t.Run(cc.name, func(t *testing.T) {
			out, _, err := Apply(stmt(t, cc.sql), mustCompile(t, cc.rules))
			if cc.denied != "" {
				if err == nil || !strings.Contains(err.Error(), cc.denied) {
					t.Fatalf("Apply(%q) = %q, %v; want an error containing %q", cc.sql, out, err, cc.denied)
				}
				return
			}
			if err != nil {
				t.Fatalf("Apply(%q): %v", cc.sql, err)
			}
			t.Logf("rewritten: %s", out)
			mustExec(t, ctx, conn, "BEGIN")
			defer mustExec(t, ctx, conn, "ROLLBACK")
			before, err := snapshot(ctx, conn)
			if err != nil {
				t.Fatal(err)
			}
			mustExec(t, ctx, conn, "SAVEPOINT s")
			got, runErr := run(ctx, conn, out)
			if cc.violates != "" {
				if runErr == nil || !strings.Contains(errorText(runErr), cc.violates) {
					t.Fatalf("ran with %v (rows %v), want an error containing %q", runErr, got, cc.violates)
				}
				if pe, ok := runErr.(*pgconn.PgError); !ok || pe.Code != "22P02" {
					t.Errorf("error %v: want SQLSTATE 22P02, which the proxy turns into 42501", runErr)
				}
				mustExec(t, ctx, conn, "ROLLBACK TO SAVEPOINT s")
				after, err := snapshot(ctx, conn)
				if err != nil {
					t.Fatal(err)
				}
				for _, tbl := range snapshotTables {
					if before[tbl] != after[tbl] {
						t.Errorf("table %s changed", tbl)
					}
				}
				return
			}
			if runErr != nil {
				t.Fatalf("the statement failed: %v", runErr)
			}
			for _, p := range checkRows("result", got, cc.want) {
				t.Error(p)
			}
			if cc.after != "" {
				rs, err := run(ctx, conn, cc.after)
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range checkRows(cc.after, rs, cc.afterWant) {
					t.Error(p)
				}
			}
		})
	}
}

// A prepared statement keeps its parameter types and row description when a
// check is added: drivers cache them by the client's statement.
func TestChecksKeepParameterTypes(t *testing.T) {
	c := testenv.Shared(t)
	db := testenv.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := testenv.LoadDemo(ctx, c.AppURL(db)); err != nil {
		t.Fatal(err)
	}
	conn, err := pgconn.Connect(ctx, c.AppURL(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, tc := range []struct {
		rules Rules
		sql   string
	}{
		{levelChecks, "UPDATE page_views SET level = $1 WHERE id = $2 RETURNING level, title"},
		{levelChecks, "INSERT INTO page_views (slug, title, level, is_active, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id, level"},
		{levelChecks, "INSERT INTO page_views (slug, title, level) VALUES ($1, $2, $3), ($4, $5, $6)"},
		{levelChecks, "INSERT INTO page_views (slug, title, level) VALUES ($1, $2, $3) ON CONFLICT (slug) DO UPDATE SET level = $3 + 1 RETURNING level"},
		{adminChecks, "UPDATE users SET role = $1, email = $2 WHERE id = $3 RETURNING *"},
		{adminChecks, "INSERT INTO users (id, username, email, role, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING created_at"},
		{userChecks, "INSERT INTO users (id, username, email, role) SELECT $1, $2, $3, $4 RETURNING id"},
		{userChecks, "SELECT u, to_jsonb(u) AS j, u.id FROM users u WHERE u.id <> $1"},
		{userChecks, "SELECT users FROM public.users"},
	} {
		out, changed, err := Apply(stmt(t, tc.sql), mustCompile(t, tc.rules))
		if err != nil || !changed {
			t.Fatalf("Apply(%q) = %q, %v, %v", tc.sql, out, changed, err)
		}
		orig, err := conn.Prepare(ctx, "", tc.sql, nil)
		if err != nil {
			t.Fatalf("prepare %q: %v", tc.sql, err)
		}
		re, err := conn.Prepare(ctx, "", out, nil)
		if err != nil {
			t.Fatalf("prepare rewritten %q: %v", out, err)
		}
		if !slices.Equal(orig.ParamOIDs, re.ParamOIDs) {
			t.Errorf("%q: parameter types %v, rewritten %v (%s)", tc.sql, orig.ParamOIDs, re.ParamOIDs, out)
		}
		if len(orig.Fields) != len(re.Fields) {
			t.Fatalf("%q: %d result columns, rewritten %d", tc.sql, len(orig.Fields), len(re.Fields))
		}
		for i := range orig.Fields {
			o, r := orig.Fields[i], re.Fields[i]
			if o.Name != r.Name || o.DataTypeOID != r.DataTypeOID {
				t.Errorf("%q: column %d is %s/%d, rewritten %s/%d", tc.sql, i, o.Name, o.DataTypeOID, r.Name, r.DataTypeOID)
			}
		}
	}
}

func TestCompileChecks(t *testing.T) {
	for _, bad := range []decision.Filter{
		{SQL: "role IN (SELECT 'x')"},
		{SQL: "id = $2", Args: []any{"a"}},
		{SQL: "other.id = 'x'"},
		{SQL: "pg_sleep(1) IS NULL"},
	} {
		if _, err := Compile(Rules{Checks: map[string]decision.Filter{"public.users": bad}}); err == nil || !strings.Contains(err.Error(), "check for public.users") {
			t.Errorf("Compile(check %q) = %v, want an error naming the check", bad.SQL, err)
		}
	}
	c := mustCompile(t, Rules{Checks: map[string]decision.Filter{"users": {SQL: "users.role = lower($1) AND id <> ''", Args: []any{"X"}}}})
	if got := c.checks[tableKey{"public", "users"}].columns; !slices.Equal(got, []string{"id", "role"}) {
		t.Errorf("check columns = %v, want [id role]", got)
	}
	// A check alone makes reads untouched and writes rewritten.
	for sql, wantChanged := range map[string]bool{
		"SELECT * FROM users":                            false,
		"DELETE FROM users":                              false,
		"UPDATE users SET email = 'x'":                   true,
		"INSERT INTO users (id, role) VALUES ('a', 'x')": true,
		"UPDATE page_views SET title = 'x'":              false,
		"INSERT INTO page_views (slug) VALUES ('x')":     false,
	} {
		_, changed, err := Apply(stmt(t, sql), c)
		if err != nil || changed != wantChanged {
			t.Errorf("Apply(%q): changed %v, err %v; want changed %v", sql, changed, err, wantChanged)
		}
	}
}

// FuzzApplyChecks checks, for every statement that parses, that Apply under
// a filter and a check on public.users either refuses it or returns SQL that
// parses and, when the statement writes public.users, carries the check.
func FuzzApplyChecks(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	for _, cc := range checkCases {
		f.Add(cc.sql)
	}
	rules := mustCompile(f, userChecks)
	f.Fuzz(func(t *testing.T, sql string) {
		res, err := parser.New(parser.Options{}).Parse(sql)
		if err != nil {
			return
		}
		for _, st := range res.Statements {
			out, _, err := Apply(st, rules)
			if err != nil {
				continue
			}
			if _, err := pg_query.Parse(out); err != nil {
				t.Fatalf("Apply(%q) = %q, which does not parse: %v", st.Text, out, err)
			}
			// FOR UPDATE/SHARE gives the locked tables the update access
			// kind (PostgreSQL's privilege) without writing a row.
			if slices.Contains(st.Flags, parser.FlagSelectForUpdate) && !slices.Contains(st.Flags, parser.FlagDataModifyingCTE) {
				continue
			}
			for _, tbl := range st.Tables {
				if tbl.Name == "users" && (tbl.Schema == "" || tbl.Schema == "public") && writes(&tbl) &&
					!strings.Contains(out, CheckViolationMarker+"public.users") {
					t.Fatalf("Apply(%q) = %q: writes public.users without its check", st.Text, out)
				}
			}
		}
	})
}
