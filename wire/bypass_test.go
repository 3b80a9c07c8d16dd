package wire_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// otherUsers are the demo users alice must never see through the proxy.
var otherUsers = []string{"bob@example.com", "carol@example.com", "dave@example.com", "erin@example.com", "frank@example.com"}

// usersChecksum is a digest of every users row, read directly.
func usersChecksum(t *testing.T, p *proxy) string {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	conn, err := pgx.Connect(ctx, p.DirectDB)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, "SELECT md5(string_agg(u::text, '|' ORDER BY id)) FROM users u").Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func testenvExec(ctx context.Context, url, sql string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// runAll runs sql through the simple protocol and returns everything the
// client saw (rows, tags, errors, notices) as text.
func runAll(ctx context.Context, conn *pgconn.PgConn, sql string) string {
	var b strings.Builder
	results, err := conn.Exec(ctx, sql).ReadAll()
	for _, r := range results {
		for _, row := range r.Rows {
			for _, v := range row {
				b.Write(v)
				b.WriteByte('|')
			}
			b.WriteByte('\n')
		}
		b.WriteString(r.CommandTag.String())
		b.WriteByte('\n')
	}
	if err != nil {
		b.WriteString("ERROR: " + err.Error())
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			b.WriteString(" " + pe.Detail + " " + pe.Where)
		}
	}
	return b.String()
}

// TestBypassAttempts sends statements a "user" login might use to see or
// change other users' rows; none may return, change or reveal one.
func TestBypassAttempts(t *testing.T) {
	sink := &auditSink{}
	p := startProxy(t, withPolicy(t, policyEngine(t, "", decision.ModeStrict), sink))
	p.loadDemo(t)
	ctx := ctxT(t, 120*time.Second)
	// Statistics exist, so pg_stats would have something to show.
	if err := testenvExec(ctx, p.DirectDB, "ANALYZE users"); err != nil {
		t.Fatal(err)
	}
	before := usersChecksum(t, p)
	var notices bytes.Buffer
	cfg, err := pgconn.ParseConfig(p.URL("alice"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices.WriteString(n.Message + n.Detail) }
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())

	attacks := []string{
		"SELECT * FROM users",
		"SELECT * FROM public.users",
		`SELECT * FROM "users"`,
		"SELECT * FROM USERS",
		"SELECT * FROM PUBLIC.USERS",
		"SELECT * FROM /* hidden */ users -- comment",
		"SELECT * FROM ONLY users",
		"TABLE users",
		"SELECT email FROM users WHERE id = 'u_bob'",
		"SELECT u.* FROM users u",
		"SELECT (SELECT email FROM users WHERE id = 'u_bob')",
		"SELECT * FROM (SELECT * FROM users) s",
		"SELECT u1.email, u2.email FROM users u1, users u2",
		"SELECT p.slug, u.email FROM page_views p JOIN users u ON u.id = p.owner_id",
		"SELECT p.slug, u.email FROM page_views p LEFT JOIN users u ON u.id = p.owner_id",
		"SELECT slug FROM page_views WHERE owner_id IN (SELECT id FROM users WHERE email LIKE 'bob%')",
		"SELECT slug FROM page_views p WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = p.owner_id AND u.email LIKE 'carol%')",
		"SELECT p.slug, x.email FROM page_views p, LATERAL (SELECT email FROM users u WHERE u.id = p.owner_id) x",
		"WITH x AS (SELECT * FROM users) SELECT * FROM x",
		"WITH users AS (SELECT * FROM public.users) SELECT * FROM users",
		"WITH RECURSIVE r AS (SELECT email FROM users UNION SELECT email FROM r) SELECT * FROM r",
		"SELECT email FROM users UNION SELECT email FROM users",
		"SELECT slug FROM page_views UNION ALL SELECT email FROM users",
		"SELECT email FROM users INTERSECT SELECT email FROM users",
		"SELECT email FROM users EXCEPT SELECT 'nobody'",
		"VALUES ((SELECT email FROM users ORDER BY email DESC LIMIT 1))",
		"SELECT count(*), string_agg(email, ',') FROM users",
		"SELECT row_to_json(u) FROM users u",
		"SELECT json_agg(u) FROM users u",
		"SELECT 1 FROM users WHERE email::int = 1",
		"SELECT 1 / (CASE WHEN email = 'bob@example.com' THEN 0 ELSE 1 END) FROM users",
		"SELECT * FROM users WHERE (email || '')::date IS NOT NULL",
		"SELECT * FROM users FOR UPDATE",
		"SELECT 1; SELECT email FROM users",
		"SELECT * FROM users WHERE id = 'u_bob' OR true",
		"SELECT * FROM users u WHERE u.id <> 'u_alice'",
		"UPDATE users SET email = email RETURNING email",
		"UPDATE users SET email = 'owned@example.com' WHERE id = 'u_bob' RETURNING *",
		"UPDATE users SET username = username WHERE email::int = 1",
		"UPDATE users SET email = (SELECT email FROM users WHERE id = 'u_carol') WHERE id = 'u_alice'",
		"UPDATE users SET role = 'supergod' WHERE id = 'u_alice'",
		"DELETE FROM users WHERE id = 'u_bob'",
		"INSERT INTO users (id, username, email, role) VALUES ('u_x', 'x', 'x@example.com', 'supergod')",
		"SELECT * FROM query_to_xml('select * from users', true, false, '')",
		"SELECT * FROM table_to_xml('users', true, false, '')",
		"SELECT * FROM ts_stat('select to_tsvector(email) from users')",
		"SELECT attname, most_common_vals::text, histogram_bounds::text FROM pg_stats WHERE tablename = 'users'",
		"SELECT * FROM pg_catalog.pg_statistic",
		"PREPARE q AS SELECT email FROM users",
		"EXECUTE q",
		"BEGIN; DECLARE c CURSOR FOR SELECT email FROM users; FETCH ALL FROM c; COMMIT",
		"EXPLAIN ANALYZE SELECT * FROM users WHERE id = 'u_bob'",
		"SET search_path = pg_catalog, public",
		"SELECT * FROM users",
		"RESET search_path",
		"COPY users TO STDOUT",
		"COPY (SELECT * FROM users) TO STDOUT",
		"DO $$BEGIN RAISE NOTICE '%', (SELECT string_agg(email, ',') FROM users); END$$",
		// Issue 11: SQL run from text, calls spelled as field selections,
		// the functions behind denied views, large objects, sequences.
		"SELECT ts_rewrite('x'::tsquery, 'SELECT ''x''::tsquery, quote_literal(email)::tsquery FROM users')::text",
		"SELECT ('SELECT to_tsvector(email) FROM users'::text).ts_stat",
		"SELECT (t).ts_stat FROM (SELECT 'SELECT to_tsvector(email) FROM users'::text) s(t)",
		"SELECT query FROM pg_stat_get_activity(NULL)",
		"SELECT statement FROM pg_prepared_statement()",
		"SELECT lo_get(lo_from_bytea(0, convert_to((SELECT string_agg(email, ',') FROM users), 'UTF8')))",
		"SELECT setval('page_views_id_seq', 1)",
		"SELECT email FROM users FOR UPDATE",
		"SELECT (pg_backend_pid()).pg_terminate_backend",
	}
	for i, sql := range attacks {
		t.Run(fmt.Sprintf("%02d", i), func(t *testing.T) {
			notices.Reset()
			var out string
			if strings.HasPrefix(sql, "COPY") {
				var buf bytes.Buffer
				_, err := conn.CopyTo(ctx, &buf, sql)
				out = buf.String()
				if err != nil {
					out += "ERROR: " + err.Error()
				}
			} else {
				out = runAll(ctx, conn, sql)
			}
			out += notices.String()
			for _, other := range otherUsers {
				if strings.Contains(out, other) {
					t.Fatalf("%s\nrevealed %s:\n%s", sql, other, out)
				}
			}
		})
	}
	if after := usersChecksum(t, p); after != before {
		t.Fatal("the users table changed")
	}
	// Alice still sees and updates her own row.
	out := runAll(ctx, conn, "UPDATE users SET email = 'alice@example.com' WHERE id = 'u_alice' RETURNING id")
	if !strings.Contains(out, "u_alice|") || !strings.Contains(out, "UPDATE 1") {
		t.Fatalf("alice cannot update her own row: %s", out)
	}
	out = runAll(ctx, conn, "SELECT count(*) FROM users")
	if !strings.HasPrefix(out, "1|") {
		t.Fatalf("alice sees %s rows of users, want 1", out)
	}
	// A slow-function probe cannot tell hidden rows by timing.
	start := time.Now()
	runAll(ctx, conn, "SELECT * FROM users WHERE pg_sleep(CASE WHEN id = 'u_bob' THEN 1 ELSE 0 END) IS NOT NULL")
	if el := time.Since(start); el > 900*time.Millisecond {
		t.Fatalf("timing probe ran on a hidden row (%s)", el)
	}
}

// TestBypassPrepared checks the filter holds for prepared statements with
// parameters, reused across executions.
func TestBypassPrepared(t *testing.T) {
	p := startProxy(t, withPolicy(t, policyEngine(t, "", decision.ModeStrict), nil))
	p.loadDemo(t)
	ctx := ctxT(t, 30*time.Second)
	conn, err := pgx.Connect(ctx, p.URL("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, id := range []string{"u_bob", "u_carol", "u_alice", "u_dave"} {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM users WHERE id = $1", id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{true: 1, false: 0}[id == "u_alice"]; n != want {
			t.Fatalf("count for %s = %d, want %d", id, n, want)
		}
		tag, err := conn.Exec(ctx, "UPDATE users SET email = email WHERE id = $1", id)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int64{true: 1, false: 0}[id == "u_alice"]; tag.RowsAffected() != want {
			t.Fatalf("update of %s touched %d rows", id, tag.RowsAffected())
		}
	}
}
