package wire_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/audit"
	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// This file tests the proxy's policy enforcement end to end: a real pgx
// client, the proxy with the shipped policies (or small ones written here),
// and a real PostgreSQL behind it. Every denied statement is also checked to
// have changed nothing, with a query straight to the database.

// decisionIDRe finds the decision id the proxy appends to a denial's DETAIL.
var decisionIDRe = regexp.MustCompile(`decision_id=([0-9a-hjkmnp-tv-z]{16})\b`)

// asPgErr returns err's *pgconn.PgError, or nil.
func asPgErr(err error) *pgconn.PgError {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}

// sqlState is err's SQLSTATE, "" if it has none.
func sqlState(err error) string {
	if pe := asPgErr(err); pe != nil {
		return pe.Code
	}
	return ""
}

// wantProxyError fails unless err is an error with SQLSTATE code raised by
// the proxy (its DETAIL carries a decision id, which no backend error has),
// with no PL/pgSQL context. It returns the error and its decision id.
func wantProxyError(t testing.TB, err error, code string) (*pgconn.PgError, string) {
	t.Helper()
	pe := asPgErr(err)
	if pe == nil {
		t.Fatalf("got %v, want a server error with SQLSTATE %s", err, code)
	}
	if pe.Code != code {
		t.Fatalf("got SQLSTATE %s (%s; detail %q), want %s", pe.Code, pe.Message, pe.Detail, code)
	}
	m := decisionIDRe.FindStringSubmatch(pe.Detail)
	if m == nil {
		t.Fatalf("detail %q has no decision_id=<16 chars>: the error did not come from the proxy", pe.Detail)
	}
	if pe.Where != "" {
		t.Errorf("a denial reached the client with a CONTEXT field: %q", pe.Where)
	}
	if pe.File != "" || pe.Line != 0 || pe.Routine != "" {
		t.Errorf("a denial names a source location that is not the client's: %s:%d %s", pe.File, pe.Line, pe.Routine)
	}
	for _, f := range []string{pe.Message, pe.Detail, pe.Hint, pe.Where, pe.InternalQuery} {
		if strings.Contains(f, "PL/pgSQL") || strings.Contains(f, "$dbalproxy$") {
			t.Errorf("a denial leaks the injected statement: %+v", pe)
		}
	}
	return pe, m[1]
}

// wantDenied is wantProxyError for a policy denial (42501).
func wantDenied(t testing.TB, err error) (*pgconn.PgError, string) {
	t.Helper()
	return wantProxyError(t, err, "42501")
}

// connect opens a pgx connection and closes it at the end of the test.
func connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	return connectMode(t, url, pgx.QueryExecModeCacheStatement)
}

// connectMode is connect with a default query exec mode.
func connectMode(t testing.TB, url string, mode pgx.QueryExecMode) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = mode
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

// demoTables are the demo schema's tables, in the order of the seed matrix.
var demoTables = []string{"users", "page_views", "component_hierarchy", "workflows", "lua_scripts", "packages"}

// digestSQL returns one md5 per demo table over its whole content.
var digestSQL = func() string {
	parts := make([]string, len(demoTables))
	for i, tb := range demoTables {
		parts[i] = fmt.Sprintf("(SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM %s t)", tb)
	}
	return "SELECT " + strings.Join(parts, ", ")
}()

// digest is the content of every demo table, straight from the database.
func digest(t testing.TB, db *pgx.Conn) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := make([]string, len(demoTables))
	dest := make([]any, len(out))
	for i := range out {
		dest[i] = &out[i]
	}
	if err := db.QueryRow(ctx, digestSQL).Scan(dest...); err != nil {
		t.Fatalf("direct digest: %v", err)
	}
	return out
}

// wantUnchanged fails if any demo table differs from before.
func wantUnchanged(t testing.TB, db *pgx.Conn, before []string) {
	t.Helper()
	after := digest(t, db)
	for i := range before {
		if before[i] != after[i] {
			t.Errorf("table %s changed", demoTables[i])
		}
	}
}

// directString runs a one-value query straight against the database.
func directString(t testing.TB, db *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var s *string
	if err := db.QueryRow(ctx, sql, args...).Scan(&s); err != nil {
		t.Fatalf("direct %q: %v", sql, err)
	}
	if s == nil {
		return "<null>"
	}
	return *s
}

// demoProxy starts a proxy with the shipped policies in mode, loads the demo
// schema, and opens a direct connection to the database.
//
// The policies are the shipped ones, except that role user may also call
// the function public.app_set, which some tests create (see appSet).
func demoProxy(t *testing.T, mode decision.Mode) (*proxy, *auditSink, *pgx.Conn) {
	t.Helper()
	sink := &auditSink{}
	p := startProxy(t, withPolicy(t, policyEngine(t, shippedPoliciesWith(t, `"user": {"public.app_set"},`), mode), sink))
	p.loadDemo(t)
	return p, sink, connect(t, p.DirectDB)
}

// recordByDecisionID waits for the audit record with the given decision id.
func recordByDecisionID(t testing.TB, sink *auditSink, id string) audit.Record {
	t.Helper()
	var rec audit.Record
	waitFor(t, "the audit record of decision "+id, 3*time.Second, func() bool {
		for _, r := range sink.Records() {
			if r.DecisionID == id {
				rec = r
				return true
			}
		}
		return false
	})
	return rec
}

// seedMatrix is the seed's role matrix at operation level: table -> role ->
// the operations allowed ("*": all four).
var seedMatrix = map[string]map[string]string{
	"users":               {"user": "select update", "admin": "*", "god": "*", "supergod": "*"},
	"page_views":          {"user": "select", "admin": "select", "god": "*", "supergod": "*"},
	"component_hierarchy": {"god": "*", "supergod": "*"},
	"workflows":           {"god": "*", "supergod": "*"},
	"lua_scripts":         {"god": "*", "supergod": "*"},
	"packages":            {"admin": "select", "god": "*", "supergod": "*"},
}

func matrixAllows(table, role, op string) bool {
	ops := seedMatrix[table][role]
	return ops == "*" || slices.Contains(strings.Fields(ops), op)
}

// matrixStatement is a statement doing op on table that succeeds at the
// database level (unique keys, existing rows, no foreign key in the way) and
// that changes something when it is a write.
func matrixStatement(table, op, login string) (string, []any) {
	switch table + "/" + op {
	case "users/select":
		return "SELECT count(*) FROM users WHERE id = $1", []any{"u_" + login}
	case "users/insert":
		return "INSERT INTO users (id, username, email, role) VALUES ($1, $2, $3, 'user')",
			[]any{"u_new_" + login, "new_" + login, "new_" + login + "@example.com"}
	case "users/update":
		return "UPDATE users SET email = 'changed-' || email WHERE id = $1", []any{"u_" + login}
	case "users/delete":
		return "DELETE FROM users WHERE id = $1", []any{"u_frank"}
	case "page_views/select":
		return "SELECT count(*) FROM page_views WHERE level >= $1", []any{1}
	case "page_views/insert":
		return "INSERT INTO page_views (slug, title, owner_id) VALUES ($1, $2, $3)", []any{"new-" + login, "New", "u_" + login}
	case "page_views/update":
		return "UPDATE page_views SET title = title || $1 WHERE id = $2", []any{"!", 1}
	case "page_views/delete":
		return "DELETE FROM page_views WHERE id = $1", []any{5}
	case "component_hierarchy/select":
		return "SELECT count(*) FROM component_hierarchy WHERE page_id >= $1", []any{1}
	case "component_hierarchy/insert":
		return "INSERT INTO component_hierarchy (page_id, component_type) VALUES ($1, $2)", []any{1, "Text"}
	case "component_hierarchy/update":
		return `UPDATE component_hierarchy SET "order" = "order" + 1 WHERE id = $1`, []any{6}
	case "component_hierarchy/delete":
		return "DELETE FROM component_hierarchy WHERE id = $1", []any{6}
	case "workflows/select":
		return "SELECT count(*) FROM workflows WHERE id >= $1", []any{1}
	case "workflows/insert":
		return "INSERT INTO workflows (name, owner_id) VALUES ($1, $2)", []any{"new-" + login, "u_" + login}
	case "workflows/update":
		return "UPDATE workflows SET is_active = NOT is_active WHERE id = $1", []any{1}
	case "workflows/delete":
		return "DELETE FROM workflows WHERE id = $1", []any{1}
	case "lua_scripts/select":
		return "SELECT count(*) FROM lua_scripts WHERE id >= $1", []any{1}
	case "lua_scripts/insert":
		return "INSERT INTO lua_scripts (name, code) VALUES ($1, $2)", []any{"new-" + login, "return 1"}
	case "lua_scripts/update":
		return "UPDATE lua_scripts SET code = code || $1 WHERE id = $2", []any{" -- changed", 1}
	case "lua_scripts/delete":
		return "DELETE FROM lua_scripts WHERE id = $1", []any{1}
	case "packages/select":
		return "SELECT count(*) FROM packages WHERE id >= $1", []any{1}
	case "packages/insert":
		return "INSERT INTO packages (name, version) VALUES ($1, $2)", []any{"new-" + login, "0.0.1"}
	case "packages/update":
		return "UPDATE packages SET version = $1 WHERE id = $2", []any{"9.9.9", 1}
	case "packages/delete":
		return "DELETE FROM packages WHERE id = $1", []any{1}
	}
	panic("no statement for " + table + "/" + op)
}

// TestPolicyMatrix checks every cell of the seed's role matrix at operation
// level, with the extended protocol (pgx's statement cache) and the simple
// one: an allowed operation succeeds (writes in a transaction rolled back),
// a denied one fails with 42501 from the proxy, and nothing changes.
func TestPolicyMatrix(t *testing.T) {
	t.Parallel()
	p, _, db := demoProxy(t, decision.ModeStrict)
	base := digest(t, db)
	modes := []struct {
		name string
		mode pgx.QueryExecMode
	}{{"extended", pgx.QueryExecModeCacheStatement}, {"simple", pgx.QueryExecModeSimpleProtocol}}
	for _, login := range []string{"alice", "bob", "carol", "dave"} {
		role := testLogins[login]
		t.Run(login, func(t *testing.T) {
			conn := connect(t, p.URL(login))
			for _, m := range modes {
				for _, table := range demoTables {
					for _, op := range []string{"select", "insert", "update", "delete"} {
						allowed := matrixAllows(table, role, op)
						verdict := "denied"
						if allowed {
							verdict = "allowed"
						}
						t.Run(fmt.Sprintf("%s/%s/%s/%s", m.name, table, op, verdict), func(t *testing.T) {
							ctx := ctxT(t, 10*time.Second)
							sql, args := matrixStatement(table, op, login)
							args = append([]any{m.mode}, args...)
							switch {
							case allowed && op == "select":
								var n int
								if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
									t.Fatalf("%s as %s: %v, want success", sql, role, err)
								}
								if n == 0 {
									t.Errorf("%s as %s: count 0, want rows", sql, role)
								}
							case allowed:
								tx, err := conn.Begin(ctx)
								if err != nil {
									t.Fatal(err)
								}
								tag, err := tx.Exec(ctx, sql, args...)
								if err != nil {
									t.Errorf("%s as %s: %v, want success", sql, role, err)
								} else if tag.RowsAffected() != 1 {
									t.Errorf("%s as %s: %q, want 1 row", sql, role, tag)
								}
								if err := tx.Rollback(ctx); err != nil {
									t.Fatal(err)
								}
							case op == "select":
								var n int
								wantDenied(t, conn.QueryRow(ctx, sql, args...).Scan(&n))
							default:
								// Autocommit: a write the proxy let through would stay.
								_, err := conn.Exec(ctx, sql, args...)
								wantDenied(t, err)
							}
							wantUnchanged(t, db, base)
						})
					}
				}
			}
		})
	}
}

// TestPolicyDenialError checks what a denied client sees: the reason, the
// command and table, a decision id equal to the audit record's, and no trace
// of the injected PL/pgSQL.
func TestPolicyDenialError(t *testing.T) {
	t.Parallel()
	p, sink, db := demoProxy(t, decision.ModeStrict)
	base := digest(t, db)
	conn := connect(t, p.URL("alice"))
	for _, c := range []struct {
		name string
		mode pgx.QueryExecMode
	}{{"simple", pgx.QueryExecModeSimpleProtocol}, {"extended", pgx.QueryExecModeCacheStatement}, {"describe-exec", pgx.QueryExecModeDescribeExec}} {
		t.Run(c.name, func(t *testing.T) {
			ctx := ctxT(t, 10*time.Second)
			_, err := conn.Exec(ctx, "DELETE FROM packages WHERE id >= $1", c.mode, 1)
			pe, id := wantDenied(t, err)
			if !strings.Contains(pe.Message, "may not delete") || !strings.Contains(pe.Message, "packages") {
				t.Errorf("message %q does not name the reason (may not delete ... packages)", pe.Message)
			}
			if !strings.Contains(pe.Detail, "DELETE") || !strings.Contains(pe.Detail, "public.packages") {
				t.Errorf("detail %q does not name the command and table", pe.Detail)
			}
			if pe.Severity != "ERROR" {
				t.Errorf("severity %q, want ERROR", pe.Severity)
			}
			rec := recordByDecisionID(t, sink, id)
			if rec.Decision != audit.DecisionDeny || rec.SQLState != "42501" || rec.Success {
				t.Errorf("audit record: decision %q sqlstate %q success %v, want deny 42501 false", rec.Decision, rec.SQLState, rec.Success)
			}
			if rec.Command != "DELETE" || !slices.Equal(rec.Tables, []string{"public.packages"}) || rec.User != "alice" {
				t.Errorf("audit record: command %q tables %v user %q", rec.Command, rec.Tables, rec.User)
			}
			if rec.Reason != pe.Message {
				t.Errorf("audit reason %q != client message %q", rec.Reason, pe.Message)
			}
			// Each execution gets its own decision id, even for a cached plan.
			_, err = conn.Exec(ctx, "DELETE FROM packages WHERE id >= $1", c.mode, 1)
			if _, id2 := wantDenied(t, err); id2 == id {
				t.Errorf("two denials share decision id %s", id)
			}
		})
	}
	wantUnchanged(t, db, base)
}

// outcome summarizes one result for comparing the proxy with PostgreSQL.
func outcome(tag string, err error) string {
	if err != nil {
		return "error"
	}
	return "ok:" + tag
}

// pipelineOutcomes sends sqls (each with one parameter, "1") as one
// pgconn pipeline with a Sync and reads every result.
func pipelineOutcomes(t testing.TB, pc *pgconn.PgConn, sqls []string) (outs []string, codes []string) {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	pl := pc.StartPipeline(ctx)
	for _, s := range sqls {
		pl.SendQueryParams(s, [][]byte{[]byte("1")}, nil, nil, nil)
	}
	if err := pl.Sync(); err != nil {
		t.Fatalf("pipeline sync: %v", err)
	}
	for range 20 {
		res, err := pl.GetResults()
		if err != nil {
			outs = append(outs, "error")
			codes = append(codes, sqlState(err))
			continue
		}
		switch r := res.(type) {
		case *pgconn.ResultReader:
			rr := r.Read()
			outs = append(outs, outcome(rr.CommandTag.String(), rr.Err))
			if rr.Err != nil {
				codes = append(codes, sqlState(rr.Err))
			}
		case *pgconn.PipelineSync:
			outs = append(outs, "sync")
		case nil:
			if err := pl.Close(); err != nil {
				t.Fatalf("pipeline close: %v", err)
			}
			return outs, codes
		default:
			outs = append(outs, fmt.Sprintf("%T", r))
		}
	}
	t.Fatalf("pipeline did not end: %v", outs)
	return nil, nil
}

// batchOutcomes runs sqls (each with one int parameter, 1) as a pgx.Batch
// (in the connection's default mode) and reports each queued query's outcome.
func batchOutcomes(t testing.TB, conn *pgx.Conn, sqls []string) (outs []string, codes []string) {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	b := &pgx.Batch{}
	for _, s := range sqls {
		b.Queue(s, 1)
	}
	br := conn.SendBatch(ctx, b)
	for range sqls {
		tag, err := br.Exec()
		outs = append(outs, outcome(tag.String(), err))
		if err != nil {
			codes = append(codes, sqlState(err))
		}
	}
	if err := br.Close(); err != nil {
		outs = append(outs, "close:error")
	}
	return outs, codes
}

// TestPolicyExtendedProtocol checks denials in the extended protocol: the
// connection stays usable, prepared statements keep working, and a denial in
// a pipeline behaves as a PostgreSQL error in the middle of one.
func TestPolicyExtendedProtocol(t *testing.T) {
	t.Parallel()
	p, _, db := demoProxy(t, decision.ModeStrict)
	base := digest(t, db)

	for _, m := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec} {
		t.Run(m.String(), func(t *testing.T) {
			ctx := ctxT(t, 20*time.Second)
			conn := connect(t, p.URL("alice"))
			count := func() {
				t.Helper()
				var n int
				if err := conn.QueryRow(ctx, "SELECT count(*) FROM page_views WHERE level >= $1", m, 1).Scan(&n); err != nil || n != 5 {
					t.Fatalf("allowed SELECT: n=%d err=%v", n, err)
				}
			}
			count() // prepared before the denial
			for range 2 {
				_, err := conn.Exec(ctx, "DELETE FROM packages WHERE id >= $1", m, 1)
				wantDenied(t, err)
				for range 3 {
					count()
				}
				var title string
				if err := conn.QueryRow(ctx, "SELECT title FROM page_views WHERE slug = $1", m, "home").Scan(&title); err != nil || title != "Home" {
					t.Fatalf("second allowed SELECT: %q %v", title, err)
				}
				// A denied read through Query (Parse + Describe + Sync first).
				rows, err := conn.Query(ctx, "SELECT name FROM workflows WHERE id >= $1", m, 1)
				if err == nil {
					for rows.Next() {
					}
					rows.Close()
					err = rows.Err()
				}
				wantDenied(t, err)
			}
			if st := conn.PgConn().TxStatus(); st != 'I' {
				t.Errorf("transaction status %q after denials, want I", st)
			}
		})
	}

	// The same pipeline against PostgreSQL, with a statement that fails at
	// Parse in place of the denied one, is the reference.
	const missing = "DELETE FROM no_such_table WHERE id >= $1"
	stmts := func(bad string) []string {
		return []string{"SELECT $1::int", bad, "SELECT $1::int + 1"}
	}
	t.Run("pgconn-pipeline", func(t *testing.T) {
		conn := connect(t, p.URL("alice"))
		want, _ := pipelineOutcomes(t, db.PgConn(), stmts(missing))
		got, codes := pipelineOutcomes(t, conn.PgConn(), stmts("DELETE FROM packages WHERE id >= $1"))
		if !slices.Equal(got, want) {
			t.Errorf("pipeline through the proxy: %v; PostgreSQL with an error there: %v", got, want)
		}
		if len(got) == 0 || got[0] != "ok:SELECT 1" {
			t.Errorf("first result %v, want ok:SELECT 1", got)
		}
		if !slices.Equal(codes, []string{"42501"}) {
			t.Errorf("error codes %v, want [42501]", codes)
		}
		// The session is usable: the same pipeline without the denial.
		got, codes = pipelineOutcomes(t, conn.PgConn(), stmts("SELECT $1::int + 2"))
		if want := []string{"ok:SELECT 1", "ok:SELECT 1", "ok:SELECT 1", "sync"}; !slices.Equal(got, want) || codes != nil {
			t.Errorf("pipeline after the denial: %v %v, want %v", got, codes, want)
		}
	})
	for _, m := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		t.Run("batch/"+m.String(), func(t *testing.T) {
			conn := connectMode(t, p.URL("alice"), m)
			want, _ := batchOutcomes(t, connectMode(t, p.DirectDB, m), stmts(missing))
			got, codes := batchOutcomes(t, conn, stmts("DELETE FROM packages WHERE id >= $1"))
			if !slices.Equal(got, want) {
				t.Errorf("batch through the proxy: %v; PostgreSQL with an error there: %v", got, want)
			}
			if len(codes) == 0 || codes[0] != "42501" {
				t.Errorf("error codes %v, want 42501 first", codes)
			}
			got, codes = batchOutcomes(t, conn, stmts("SELECT $1::int + 2"))
			if want := []string{"ok:SELECT 1", "ok:SELECT 1", "ok:SELECT 1"}; !slices.Equal(got, want) || codes != nil {
				t.Errorf("batch after the denial: %v %v, want %v", got, codes, want)
			}
		})
	}
	wantUnchanged(t, db, base)
}

// rawStep is a group of protocol messages sent at once, then the backend
// messages read until one of type until ('E' or 'Z').
type rawStep struct {
	send  []pgproto3.FrontendMessage
	until byte
}

// rawExchange runs steps on a fresh connection to url and returns the types
// of the messages received (asynchronous ones left out).
func rawExchange(t testing.TB, url string, steps []rawStep) []string {
	t.Helper()
	ctx := ctxT(t, 15*time.Second)
	pc, err := pgconn.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	if err := pc.Conn().SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	fe := pc.Frontend()
	var got []string
	for i, st := range steps {
		for _, m := range st.send {
			fe.Send(m)
		}
		if err := fe.Flush(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		for {
			m, err := fe.Receive()
			if err != nil {
				t.Fatalf("step %d: after %v: %v", i, got, err)
			}
			var typ byte
			switch m := m.(type) {
			case *pgproto3.ParameterStatus, *pgproto3.NoticeResponse:
				continue
			case *pgproto3.ErrorResponse:
				typ = 'E'
			case *pgproto3.ReadyForQuery:
				typ = 'Z'
				got = append(got, "Z"+string(m.TxStatus))
			}
			if typ != 'Z' {
				got = append(got, strings.TrimPrefix(fmt.Sprintf("%T", m), "*pgproto3."))
			}
			if typ == st.until {
				break
			}
		}
	}
	return got
}

// TestPolicyExtendedRaw drives the extended protocol by hand: a denied Parse
// answered after a Flush (before the client sent the rest of its messages
// and Sync), then more statements on the same connection. The messages the
// client gets must be PostgreSQL's own for an error at that Parse, and the
// later statements must still be audited.
func TestPolicyExtendedRaw(t *testing.T) {
	t.Parallel()
	p, sink, db := demoProxy(t, decision.ModeStrict)
	base := digest(t, db)
	steps := func(bad string) []rawStep {
		return []rawStep{
			{[]pgproto3.FrontendMessage{&pgproto3.Parse{Query: bad}, &pgproto3.Flush{}}, 'E'},
			{[]pgproto3.FrontendMessage{&pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}}, 'Z'},
			{[]pgproto3.FrontendMessage{&pgproto3.Parse{Name: "s1", Query: bad}, &pgproto3.Describe{ObjectType: 'S', Name: "s1"}, &pgproto3.Sync{}}, 'Z'},
			{[]pgproto3.FrontendMessage{&pgproto3.Parse{Query: "SELECT 4 AS step4"}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}}, 'Z'},
			{[]pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT 5 AS step5"}}, 'Z'},
		}
	}
	want := rawExchange(t, p.DirectDB, steps("DELETE FROM no_such_table"))
	got := rawExchange(t, p.URL("alice"), steps("DELETE FROM packages"))
	if !slices.Equal(got, want) {
		t.Errorf("messages through the proxy:\n  %v\nPostgreSQL with an error at that Parse:\n  %v", got, want)
	}
	for _, step := range []string{"step4", "step5"} {
		waitFor(t, "the audit record of "+step, 3*time.Second, func() bool {
			for _, r := range sink.Records() {
				if strings.Contains(r.Query, step) && r.Success && r.Rows == 1 && r.User == "alice" {
					return true
				}
			}
			return false
		})
	}
	wantUnchanged(t, db, base)
}

// TestPolicyTransactionBlock checks that a denial aborts a transaction block
// as any PostgreSQL error does, and that savepoints recover from it.
func TestPolicyTransactionBlock(t *testing.T) {
	t.Parallel()
	p, _, db := demoProxy(t, decision.ModeStrict)
	email := func() string {
		return directString(t, db, "SELECT email FROM users WHERE id = 'u_alice'")
	}
	for _, c := range []struct {
		name string
		mode pgx.QueryExecMode
	}{{"simple", pgx.QueryExecModeSimpleProtocol}, {"extended", pgx.QueryExecModeCacheStatement}} {
		t.Run(c.name, func(t *testing.T) {
			ctx := ctxT(t, 20*time.Second)
			conn := connect(t, p.URL("alice"))
			base := digest(t, db)
			exec := func(sql string, args ...any) error {
				_, err := conn.Exec(ctx, sql, append([]any{c.mode}, args...)...)
				return err
			}
			count := func() (int, error) {
				var n int
				err := conn.QueryRow(ctx, "SELECT count(*) FROM page_views WHERE level >= $1", c.mode, 1).Scan(&n)
				return n, err
			}
			const update = "UPDATE users SET email = $1 WHERE id = $2"
			const denied = "DELETE FROM packages WHERE id >= $1"

			t.Run("rollback", func(t *testing.T) {
				if err := exec("BEGIN"); err != nil {
					t.Fatal(err)
				}
				if err := exec(update, "alice-tx@example.com", "u_alice"); err != nil {
					t.Fatalf("allowed UPDATE in the block: %v", err)
				}
				wantDenied(t, exec(denied, 1))
				if st := conn.PgConn().TxStatus(); st != 'E' {
					t.Errorf("transaction status %q after the denial, want E (failed block)", st)
				}
				if _, err := count(); sqlState(err) != "25P02" {
					t.Fatalf("statement after the denial: %v, want 25P02", err)
				}
				if err := exec("ROLLBACK"); err != nil {
					t.Fatal(err)
				}
				if n, err := count(); err != nil || n != 5 {
					t.Fatalf("after ROLLBACK: %d %v", n, err)
				}
				wantUnchanged(t, db, base)
			})

			t.Run("savepoint", func(t *testing.T) {
				want := "alice-sp-" + c.name + "@example.com"
				if err := exec("BEGIN"); err != nil {
					t.Fatal(err)
				}
				if err := exec(update, want, "u_alice"); err != nil {
					t.Fatalf("allowed UPDATE in the block: %v", err)
				}
				if err := exec("SAVEPOINT before_denial"); err != nil {
					t.Fatal(err)
				}
				wantDenied(t, exec(denied, 1))
				if _, err := count(); sqlState(err) != "25P02" {
					t.Fatalf("statement after the denial: %v, want 25P02", err)
				}
				if err := exec("ROLLBACK TO SAVEPOINT before_denial"); err != nil {
					t.Fatalf("ROLLBACK TO SAVEPOINT: %v", err)
				}
				if n, err := count(); err != nil || n != 5 {
					t.Fatalf("after ROLLBACK TO SAVEPOINT: %d %v", n, err)
				}
				if err := exec("COMMIT"); err != nil {
					t.Fatalf("COMMIT: %v", err)
				}
				if got := email(); got != want {
					t.Errorf("after COMMIT alice's email is %q, want %q (the work before the savepoint)", got, want)
				}
				if got := directString(t, db, "SELECT count(*)::text FROM packages"); got != "4" {
					t.Errorf("packages has %s rows, want 4", got)
				}
				if _, err := db.Exec(ctx, "UPDATE users SET email = 'alice@example.com' WHERE id = 'u_alice'"); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

// TestPolicyMultiStatement checks a simple Query of several statements with
// a denied one among them: what runs before it is rolled back with the
// implicit transaction, nothing after it runs, as PostgreSQL does with an
// error there.
func TestPolicyMultiStatement(t *testing.T) {
	t.Parallel()
	p, sink, db := demoProxy(t, decision.ModeStrict)
	base := digest(t, db)
	ctx := ctxT(t, 30*time.Second)
	alice := connect(t, p.URL("alice"))
	bob := connect(t, p.URL("bob"))

	// readAll runs sql as one simple Query and summarizes the results.
	readAll := func(pc *pgconn.PgConn, sql string) ([]string, error) {
		res, err := pc.Exec(ctx, sql).ReadAll()
		var outs []string
		for _, r := range res {
			outs = append(outs, outcome(r.CommandTag.String(), r.Err))
		}
		return outs, err
	}

	t.Run("select-delete-select", func(t *testing.T) {
		want, werr := readAll(db.PgConn(), "SELECT 1; DELETE FROM no_such_table; SELECT 2")
		got, err := readAll(alice.PgConn(), "SELECT 1; DELETE FROM packages; SELECT 2")
		_, id := wantDenied(t, err)
		if werr == nil || !slices.Equal(got, want) {
			t.Errorf("results through the proxy %v; PostgreSQL with an error there: %v (%v)", got, want, werr)
		}
		if len(got) == 0 || got[0] != "ok:SELECT 1" {
			t.Errorf("results %v, want SELECT 1 first", got)
		}
		rec := recordByDecisionID(t, sink, id)
		if rec.Command != "DELETE" || rec.Decision != audit.DecisionDeny || rec.SQLState != "42501" {
			t.Errorf("audit record of the denial: %+v", rec)
		}
	})

	t.Run("nothing-after-runs", func(t *testing.T) {
		_, err := readAll(alice.PgConn(), "SELECT 1; DELETE FROM packages; UPDATE users SET email = 'after@example.com' WHERE id = 'u_alice'")
		wantDenied(t, err)
		if got := directString(t, db, "SELECT email FROM users WHERE id = 'u_alice'"); got != "alice@example.com" {
			t.Errorf("the UPDATE after the denied statement ran: email %q", got)
		}
	})

	t.Run("write-before-is-rolled-back", func(t *testing.T) {
		_, err := readAll(bob.PgConn(), "UPDATE users SET email = 'bob-changed@example.com' WHERE id = 'u_bob'; DELETE FROM workflows")
		pe, _ := wantDenied(t, err)
		if !strings.Contains(pe.Message, "workflows") {
			t.Errorf("message %q does not name workflows", pe.Message)
		}
		if got := directString(t, db, "SELECT email FROM users WHERE id = 'u_bob'"); got != "bob@example.com" {
			t.Errorf("the UPDATE before the denied statement was kept: email %q", got)
		}
	})

	t.Run("session-usable", func(t *testing.T) {
		for _, c := range []*pgx.Conn{alice, bob} {
			got, err := readAll(c.PgConn(), "SELECT 1; SELECT count(*) FROM page_views")
			if err != nil || !slices.Equal(got, []string{"ok:SELECT 1", "ok:SELECT 1"}) {
				t.Errorf("after the denials: %v %v", got, err)
			}
			if st := c.PgConn().TxStatus(); st != 'I' {
				t.Errorf("transaction status %q, want I", st)
			}
		}
	})
	wantUnchanged(t, db, base)
}

// TestPolicyDangerous checks that functions and commands reaching outside
// the database are denied to every role but supergod, by the proxy (not
// merely by the backend's own privileges).
func TestPolicyDangerous(t *testing.T) {
	t.Parallel()
	p, _, db := demoProxy(t, decision.ModeStrict)
	base := digest(t, db)
	statements := []string{
		"SELECT pg_read_file('/etc/passwd')",
		"SELECT pg_ls_dir('.')",
		"COPY users TO PROGRAM 'cat'",
		"COPY users TO '/tmp/dbalproxy-users.csv'",
		"SET ROLE postgres",
		"SET SESSION AUTHORIZATION postgres",
		"ALTER SYSTEM SET work_mem = '1MB'",
		"DO $$BEGIN PERFORM 1; END$$",
		"GRANT SELECT ON packages TO PUBLIC",
		"CREATE TABLE x_%s (i int)",
	}
	for _, login := range []string{"alice", "bob", "carol"} {
		t.Run(login, func(t *testing.T) {
			conn := connect(t, p.URL(login))
			for _, s := range statements {
				if strings.Contains(s, "%s") {
					s = fmt.Sprintf(s, login)
				}
				for _, m := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeDescribeExec} {
					t.Run(m.String()+"/"+s, func(t *testing.T) {
						ctx := ctxT(t, 10*time.Second)
						rows, err := conn.Query(ctx, s, m)
						if err == nil {
							for rows.Next() {
							}
							rows.Close()
							err = rows.Err()
						}
						wantDenied(t, err)
						if n, err := conn.Exec(ctx, "SELECT 1"); err != nil {
							t.Fatalf("after the denial: %v %v", n, err)
						}
					})
				}
			}
			if got := directString(t, db, "SELECT to_regclass($1)::text", "x_"+login); got != "<null>" {
				t.Errorf("table x_%s exists after a denied CREATE TABLE", login)
			}
			if got := directString(t, db, "SELECT current_setting('work_mem')"); got == "1MB" {
				t.Errorf("work_mem changed")
			}
		})
	}
	t.Run("dave", func(t *testing.T) {
		ctx := ctxT(t, 20*time.Second)
		conn := connect(t, p.URL("dave"))
		if _, err := conn.Exec(ctx, "CREATE TABLE x_dave (i int)"); err != nil {
			t.Fatalf("supergod's DDL: %v", err)
		}
		if got := directString(t, db, "SELECT to_regclass('x_dave')::text"); got != "x_dave" {
			t.Errorf("to_regclass('x_dave') = %q after supergod's CREATE TABLE", got)
		}
		// The rest reaches the backend, whose own privileges decide (the test
		// login is no superuser): whatever it answers, it is not the proxy's.
		for _, s := range statements[:len(statements)-1] {
			_, err := conn.Exec(ctx, s)
			if pe := asPgErr(err); pe != nil && decisionIDRe.MatchString(pe.Detail) {
				t.Errorf("%s as supergod: denied by the proxy: %s", s, pe.Message)
			}
		}
	})
	wantUnchanged(t, db, base)
}

// TestPolicyUnparsable checks that strict mode answers a statement the
// parser cannot read with 42601 itself, and the session continues.
func TestPolicyUnparsable(t *testing.T) {
	t.Parallel()
	p, sink, db := demoProxy(t, decision.ModeStrict)
	base := digest(t, db)
	conn := connect(t, p.URL("carol"))
	for _, m := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeDescribeExec} {
		t.Run(m.String(), func(t *testing.T) {
			ctx := ctxT(t, 10*time.Second)
			rows, err := conn.Query(ctx, "DELETE FROM packages; SELEC 1 FROM", m)
			if err == nil {
				for rows.Next() {
				}
				rows.Close()
				err = rows.Err()
			}
			// A decision id in the detail: the proxy answered, not the backend.
			_, id := wantProxyError(t, err, "42601")
			rec := recordByDecisionID(t, sink, id)
			if rec.Decision != audit.DecisionDeny || rec.SQLState != "42601" || rec.Success {
				t.Errorf("audit record: %+v", rec)
			}
			var n int
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM packages WHERE id >= $1", m, 1).Scan(&n); err != nil || n != 4 {
				t.Fatalf("after the syntax error: %d %v", n, err)
			}
		})
	}
	wantUnchanged(t, db, base)
}

// TestPolicyModes checks permissive mode (a denied statement runs, audited
// as would_deny) and disabled mode (everything runs, audited as allow).
func TestPolicyModes(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		mode     decision.Mode
		decision string
	}{{decision.ModePermissive, audit.DecisionWouldDeny}, {decision.ModeDisabled, audit.DecisionAllow}} {
		t.Run(string(c.mode), func(t *testing.T) {
			p, sink, db := demoProxy(t, c.mode)
			base := digest(t, db)
			ctx := ctxT(t, 20*time.Second)
			conn := connect(t, p.URL("alice"))
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			tag, err := tx.Exec(ctx, "DELETE FROM packages")
			if err != nil || tag.RowsAffected() != 4 {
				t.Fatalf("alice's DELETE FROM packages in %s mode: %q %v, want DELETE 4", c.mode, tag, err)
			}
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			var rec *audit.Record
			waitFor(t, "the DELETE's audit record", 3*time.Second, func() bool {
				for _, r := range sink.Records() {
					if r.Command == "DELETE" {
						rec = &r
						return true
					}
				}
				return false
			})
			if rec.Decision != c.decision || !rec.Success || rec.Rows != 4 || rec.SQLState != "" {
				t.Errorf("audit record: decision %q success %v rows %d sqlstate %q, want %s true 4 \"\"",
					rec.Decision, rec.Success, rec.Rows, rec.SQLState, c.decision)
			}
			if c.mode == decision.ModePermissive && !strings.Contains(rec.Reason, "may not delete") {
				t.Errorf("would_deny reason %q does not say why strict mode would deny", rec.Reason)
			}
			wantUnchanged(t, db, base)
		})
	}
}

// copyDir copies the regular files of src into a new temporary directory.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// allowUserPackages edits the shipped matrix.rego so that role "user" may
// select and delete packages. It knows the two layouts the file has had:
// permissions[role][table] and matrix[table][role].
func allowUserPackages(src []byte) ([]byte, bool) {
	byRole := regexp.MustCompile(`(permissions\s*:=\s*\{\s*"user"\s*:\s*\{)`)
	if byRole.Match(src) {
		return byRole.ReplaceAll(src, []byte(`$1"packages": {"select", "delete"}, `)), true
	}
	byTable := regexp.MustCompile(`(matrix\s*:=\s*\{[^#]*?"packages"\s*:\s*\{)`)
	if byTable.Match(src) {
		return byTable.ReplaceAll(src, []byte(`$1"user": {"select", "delete"}, `)), true
	}
	return nil, false
}

// TestPolicyReload checks that a reload reaches open sessions at once (plans
// are cached per policy version) and that a broken set is refused while the
// previous one stays in force.
func TestPolicyReload(t *testing.T) {
	t.Parallel()
	dir := copyDir(t, "../policies")
	engine := policyEngine(t, dir, decision.ModeStrict)
	p := startProxy(t, withPolicy(t, engine, nil))
	p.loadDemo(t)
	db := connect(t, p.DirectDB)
	ctx := ctxT(t, 30*time.Second)
	conn := connect(t, p.URL("alice"))
	simple := pgx.QueryExecModeSimpleProtocol

	// deletePackage tries alice's DELETE in a transaction rolled back.
	deletePackage := func(mode pgx.QueryExecMode) error {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		_, err = tx.Exec(ctx, "DELETE FROM packages WHERE id = $1", mode, 1)
		return err
	}
	selectViews := func(mode pgx.QueryExecMode, sql string) error {
		var n int
		return conn.QueryRow(ctx, sql, mode, 1).Scan(&n)
	}
	const views1 = "SELECT count(*) FROM page_views WHERE level >= $1"

	for _, m := range []pgx.QueryExecMode{simple, pgx.QueryExecModeCacheStatement} {
		wantDenied(t, deletePackage(m))
		if err := selectViews(m, views1); err != nil {
			t.Fatalf("alice's SELECT before the reload: %v", err)
		}
	}
	v0 := engine.Version()

	t.Run("loosen", func(t *testing.T) {
		path := filepath.Join(dir, "matrix.rego")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b, ok := allowUserPackages(b)
		if !ok {
			t.Fatalf("matrix.rego has neither permissions[role][table] nor matrix[table][role] to edit")
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := engine.Reload(); err != nil {
			t.Fatalf("Reload: %v", err)
		}
		if engine.Version() == v0 {
			t.Fatalf("policy version unchanged after a reload of different content")
		}
		for _, m := range []pgx.QueryExecMode{simple, pgx.QueryExecModeCacheStatement} {
			if err := deletePackage(m); err != nil {
				t.Errorf("%v: alice's DELETE FROM packages after the rule allows it: %v", m, err)
			}
		}
	})
	t.Run("tighten", func(t *testing.T) {
		rule := `package dbal

violations contains [3, 0, 0, "reload_test", "reload test: page_views is closed"] if {
	some t in input.statement.tables
	t.name == "page_views"
}
`
		if err := os.WriteFile(filepath.Join(dir, "zz_reload.rego"), []byte(rule), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := engine.Reload(); err != nil {
			t.Fatalf("Reload: %v", err)
		}
		// A text never prepared on this connection, and the simple protocol.
		const views2 = "SELECT count(*) FROM page_views WHERE id >= $1"
		for _, m := range []pgx.QueryExecMode{simple, pgx.QueryExecModeDescribeExec} {
			pe, _ := wantDenied(t, selectViews(m, views1))
			if pe != nil && !strings.Contains(pe.Message, "reload test") {
				t.Errorf("denial %q is not the new rule's", pe.Message)
			}
		}
		wantDenied(t, selectViews(pgx.QueryExecModeCacheStatement, views2))
	})
	v2 := engine.Version()

	t.Run("broken-set-refused", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(dir, "broken.rego"), []byte("package dbal\n\ndecision := {{{ this is not rego\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := engine.Reload(); err == nil {
			t.Fatal("Reload of a set with a syntax error returned nil")
		}
		if got := engine.Version(); got != v2 {
			t.Errorf("version %s after a failed reload, want %s (the previous good set)", got, v2)
		}
		wantDenied(t, selectViews(simple, views1))
		if err := deletePackage(simple); err != nil {
			t.Errorf("alice's DELETE after a failed reload: %v, want the previous set's allow", err)
		}
		if err := conn.QueryRow(ctx, "SELECT 1").Scan(new(int)); err != nil {
			t.Errorf("SELECT 1 after a failed reload: %v", err)
		}
	})
	if got := directString(t, db, "SELECT count(*)::text FROM packages"); got != "4" {
		t.Errorf("packages has %s rows, want 4", got)
	}
}

// TestPolicyReloadPreparedStatement checks that a statement prepared under
// one policy set is decided again under a newer one: revoking a permission
// must also stop a client that prepared the statement before the reload.
func TestPolicyReloadPreparedStatement(t *testing.T) {
	t.Parallel()
	dir := copyDir(t, "../policies")
	engine := policyEngine(t, dir, decision.ModeStrict)
	p := startProxy(t, withPolicy(t, engine, nil))
	p.loadDemo(t)
	ctx := ctxT(t, 30*time.Second)
	conn := connect(t, p.URL("alice"))
	const views = "SELECT count(*) FROM page_views WHERE level >= $1"
	var n int
	if err := conn.QueryRow(ctx, views, 1).Scan(&n); err != nil {
		t.Fatalf("before the reload: %v", err)
	}
	rule := `package dbal

violations contains [3, 0, 0, "reload_test", "reload test: page_views is closed"] if {
	some t in input.statement.tables
	t.name == "page_views"
}
`
	if err := os.WriteFile(filepath.Join(dir, "zz_reload.rego"), []byte(rule), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := engine.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	// pgx reuses its prepared statement: only Bind and Execute are sent.
	err := conn.QueryRow(ctx, views, 1).Scan(&n)
	if err == nil {
		t.Fatalf("a statement prepared before the reload still runs after the policy denies it (count %d)", n)
	}
	wantDenied(t, err)
}

// TestPolicyEvaluationErrors checks that a policy failing at evaluation (a
// division by zero, conflicting values of a complete rule) or returning a
// decision of the wrong shape denies the statement, and that the proxy keeps
// serving.
func TestPolicyEvaluationErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rules := `package dbal

default decision := {"allow": true, "reason": "test: allowed"}

# A division by zero (built-in errors are strict): an evaluation error.
decision := {"allow": x > 0, "reason": "never reached"} if {
	input.statement.command == "INSERT"
	x := 1 / count(input.statement.flags)
}

# Two values for a complete rule: an evaluation error.
decision := {"allow": true, "reason": "one"} if input.statement.command == "DELETE"

decision := {"allow": false, "reason": "two"} if input.statement.command == "DELETE"

# The wrong shape: allow is not a boolean.
decision := {"allow": "yes", "reason": "wrong shape"} if input.statement.command == "UPDATE"
`
	if err := os.WriteFile(filepath.Join(dir, "errors.rego"), []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	sink := &auditSink{}
	p := startProxy(t, withPolicy(t, policyEngine(t, dir, decision.ModeStrict), sink))
	p.loadDemo(t)
	db := connect(t, p.DirectDB)
	base := digest(t, db)
	conn := connect(t, p.URL("carol"))
	for _, c := range []struct{ name, sql string }{
		{"division-by-zero", "INSERT INTO packages (name, version) VALUES ('evil', '1')"},
		{"conflict", "DELETE FROM packages"},
		{"wrong-shape", "UPDATE packages SET version = 'x'"},
	} {
		for _, m := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeDescribeExec} {
			t.Run(c.name+"/"+m.String(), func(t *testing.T) {
				ctx := ctxT(t, 10*time.Second)
				rows, err := conn.Query(ctx, c.sql, m)
				if err == nil {
					rows.Close()
					err = rows.Err()
				}
				_, id := wantDenied(t, err)
				if rec := recordByDecisionID(t, sink, id); rec.Decision != audit.DecisionDeny {
					t.Errorf("audit decision %q, want deny", rec.Decision)
				}
				var n int
				if err := conn.QueryRow(ctx, "SELECT count(*) FROM packages WHERE id >= $1", m, 1).Scan(&n); err != nil || n != 4 {
					t.Fatalf("same connection after the failed decision: %d %v", n, err)
				}
			})
		}
	}
	t.Run("new-connection", func(t *testing.T) {
		ctx := ctxT(t, 10*time.Second)
		other := connect(t, p.URL("bob"))
		var n int
		if err := other.QueryRow(ctx, "SELECT count(*) FROM workflows").Scan(&n); err != nil || n != 4 {
			t.Fatalf("another connection: %d %v", n, err)
		}
	})
	wantUnchanged(t, db, base)
}

// TestPolicyReloadRewritesPreparedStatement checks that a prepared
// statement whose rewrite changes with a new policy version runs with the
// new filter: the proxy prepares the new text on the backend under the
// client's statement name.
func TestPolicyReloadRewritesPreparedStatement(t *testing.T) {
	dir := copyDir(t, "../policies")
	engine := policyEngine(t, dir, decision.ModeStrict)
	p := startProxy(t, withPolicy(t, engine, nil))
	p.loadDemo(t)
	ctx := ctxT(t, 30*time.Second)
	conn := connect(t, p.URL("alice"))
	const q = "SELECT count(*) FROM users WHERE created_at > $1"
	var n int
	if err := conn.QueryRow(ctx, q, time.Unix(0, 0)).Scan(&n); err != nil || n != 1 {
		t.Fatalf("before the reload: %d rows visible, %v; want 1 (own row)", n, err)
	}
	rego, err := os.ReadFile(filepath.Join(dir, "rows.rego"))
	if err != nil {
		t.Fatal(err)
	}
	widened := strings.Replace(string(rego), `input.row.id == input.session.claims.user_id`, `input.row.role == "user"`, 1)
	if widened == string(rego) {
		t.Fatal("the shipped policy's own-row filter moved; update this test")
	}
	if err := os.WriteFile(filepath.Join(dir, "rows.rego"), []byte(widened), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := engine.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	for range 2 {
		if err := conn.QueryRow(ctx, q, time.Unix(0, 0)).Scan(&n); err != nil || n != 3 {
			t.Fatalf("after the reload: %d rows visible, %v; want 3 (every role user)", n, err)
		}
	}
}
