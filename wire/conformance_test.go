package wire_test

// The conformance suite of the transparent proxy: every scenario is written
// once as a function that turns a connection string into a transcript
// (values, types, command tags, transaction states, every field of every
// error), runs straight against PostgreSQL and through the proxy, and the two
// transcripts must be identical. The remaining tests cover what has no direct
// counterpart: cancel isolation, authentication, many clients, parameter
// status, the backend pool's limits and reset, and goroutine leaks.

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"database/sql/driver"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/testenv"
	"github.com/dbalproxy/dbalproxy/wire"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgtype"
	"go.uber.org/goleak"
)

// scenario is one conformance scenario: run produces a transcript that must be
// the same straight to PostgreSQL and through the proxy.
type scenario struct {
	name string
	run  func(t *testing.T, connString string) string
}

func conformanceScenarios() []scenario {
	return []scenario{
		{"query/simple_protocol", scenarioQueries(pgx.QueryExecModeSimpleProtocol)},
		{"query/exec", scenarioQueries(pgx.QueryExecModeExec)},
		{"query/describe_exec", scenarioQueries(pgx.QueryExecModeDescribeExec)},
		{"query/cache_statement", scenarioQueries(pgx.QueryExecModeCacheStatement)},
		{"statement_cache", scenarioStatementCache},
		{"transactions", scenarioTransactions},
		{"multi_statement", scenarioMultiStatement},
		{"errors/simple_protocol", scenarioErrors(pgx.QueryExecModeSimpleProtocol)},
		{"errors/cache_statement", scenarioErrors(pgx.QueryExecModeCacheStatement)},
		{"notices", scenarioNotices},
		{"copy", scenarioCopy},
		{"types/simple_protocol", scenarioTypes(pgx.QueryExecModeSimpleProtocol)},
		{"types/cache_statement", scenarioTypes(pgx.QueryExecModeCacheStatement)},
		{"large_result/simple_protocol", scenarioLargeResult(pgx.QueryExecModeSimpleProtocol)},
		{"large_result/cache_statement", scenarioLargeResult(pgx.QueryExecModeCacheStatement)},
		{"listen_notify", scenarioListenNotify},
		{"cancel", scenarioCancel},
	}
}

// TestConformance runs every scenario directly and through the proxy and
// compares the transcripts.
func TestConformance(t *testing.T) {
	p := startProxy(t)
	for _, sc := range conformanceScenarios() {
		t.Run(sc.name, func(t *testing.T) {
			if sc.name == "listen_notify" && txPoolingSuite() {
				t.Skip("compares pg_backend_pid() across transactions (see TestTxConformance)")
			}
			direct := sc.run(t, p.DirectDB)
			if t.Failed() {
				t.Fatalf("scenario fails straight against PostgreSQL; transcript:\n%s", direct)
			}
			proxied := sc.run(t, p.URL("alice"))
			if testing.Verbose() && os.Getenv("CONFORMANCE_TRANSCRIPTS") != "" {
				t.Logf("transcript:\n%s", proxied)
			}
			compareTranscripts(t, direct, proxied)
		})
	}
}

// compareTranscripts fails the test with the differing lines.
func compareTranscripts(t *testing.T, direct, proxied string) {
	t.Helper()
	if direct == proxied {
		return
	}
	dl, pl := strings.Split(direct, "\n"), strings.Split(proxied, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(dl), len(pl)) && shown < 20; i++ {
		var d, x string
		if i < len(dl) {
			d = dl[i]
		}
		if i < len(pl) {
			x = pl[i]
		}
		if d != x {
			fmt.Fprintf(&b, "line %d\n  direct: %s\n  proxy:  %s\n", i+1, d, x)
			shown++
		}
	}
	t.Errorf("transcripts differ (direct %d lines, proxy %d lines):\n%s", len(dl), len(pl), b.String())
}

// transcript collects one line per observation.
type transcript struct {
	mu sync.Mutex
	b  strings.Builder
}

func (tr *transcript) f(format string, args ...any) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	fmt.Fprintf(&tr.b, format, args...)
	tr.b.WriteByte('\n')
}

func (tr *transcript) String() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.b.String()
}

// rows records a result set: each row's values with their Go types, then
// the fields, the command tag and the error.
func (tr *transcript) rows(rows pgx.Rows, err error) {
	if err != nil {
		tr.f("  query error: %s", errLine(err))
		return
	}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			tr.f("  values error: %s", errLine(err))
			continue
		}
		tr.f("  row %s", fmtVals(vals))
	}
	rows.Close()
	tr.f("  fields %s", fmtFields(rows.FieldDescriptions()))
	tr.f("  tag %q err %s", rows.CommandTag().String(), errLine(rows.Err()))
}

// exec runs a statement and records its tag, error and transaction status.
func (tr *transcript) exec(ctx context.Context, conn *pgx.Conn, sql string, args ...any) error {
	tag, err := conn.Exec(ctx, sql, args...)
	tr.f("exec %q -> tag %q err %s tx %c", sql, tag.String(), errLine(err), conn.PgConn().TxStatus())
	return err
}

func fmtFields(fds []pgconn.FieldDescription) string {
	parts := make([]string, len(fds))
	for i, fd := range fds {
		parts[i] = fmt.Sprintf("%s:oid=%d:fmt=%d:mod=%d:len=%d", fd.Name, fd.DataTypeOID, fd.Format, fd.TypeModifier, fd.DataTypeSize)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func fmtVals(vals []any) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = fmtVal(v)
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// fmtVal renders a value with its type; large values are hashed.
func fmtVal(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case []byte:
		if len(x) > 64 {
			return fmt.Sprintf("[]byte(len=%d sha256=%s)", len(x), shortHash(x))
		}
		return fmt.Sprintf("[]byte(%x)", x)
	case string:
		if len(x) > 200 {
			return fmt.Sprintf("string(len=%d sha256=%s)", len(x), shortHash([]byte(x)))
		}
		return fmt.Sprintf("string(%q)", x)
	case time.Time:
		return "time(" + x.Format(time.RFC3339Nano) + " " + x.Location().String() + ")"
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = fmtVal(e)
		}
		return "[" + strings.Join(parts, " ") + "]"
	case map[string]any:
		b, err := json.Marshal(x) // keys sorted
		if err != nil {
			return fmt.Sprintf("map(error %v)", err)
		}
		return "map(" + string(b) + ")"
	case driver.Valuer:
		dv, err := x.Value()
		if err != nil {
			return fmt.Sprintf("%T(error %v)", v, err)
		}
		return fmt.Sprintf("%T(%s)", v, fmtVal(dv))
	}
	return fmt.Sprintf("%T(%v)", v, v)
}

func shortHash(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:8])
}

// errLine renders an error; a PgError with every field that matters.
func errLine(err error) string {
	if err == nil {
		return "none"
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		schema := pe.SchemaName
		if strings.HasPrefix(schema, "pg_temp_") {
			schema = "pg_temp_N" // each session has its own
		}
		return fmt.Sprintf("pgerror{severity=%s/%s code=%s message=%q detail=%q hint=%q position=%d internal_position=%d internal_query=%q where=%q schema=%q table=%q column=%q datatype=%q constraint=%q file=%s line=%d routine=%s}",
			pe.Severity, pe.SeverityUnlocalized, pe.Code, pe.Message, pe.Detail, pe.Hint, pe.Position, pe.InternalPosition,
			pe.InternalQuery, pe.Where, schema, pe.TableName, pe.ColumnName, pe.DataTypeName, pe.ConstraintName,
			pe.File, pe.Line, pe.Routine)
	}
	return fmt.Sprintf("error(%T: %v)", err, err)
}

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// openConn connects with pgx; adjust may change the configuration first. The
// connection is closed at the end of the test.
func openConn(t testing.TB, connString string, adjust func(*pgx.ConnConfig)) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		t.Fatal(err)
	}
	if adjust != nil {
		adjust(cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = conn.Close(ctx)
	})
	return conn
}

func withMode(mode pgx.QueryExecMode) func(*pgx.ConnConfig) {
	return func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = mode }
}

func mustExec(t testing.TB, ctx context.Context, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// scenarioQueries: queries and statements in one of pgx's query modes.
func scenarioQueries(mode pgx.QueryExecMode) func(*testing.T, string) string {
	return func(t *testing.T, cs string) string {
		ctx := ctxT(t, time.Minute)
		conn := openConn(t, cs, withMode(mode))
		var tr transcript
		queries := []struct {
			sql  string
			args []any
		}{
			{"SELECT 1::int4 AS a, 'x'::text AS b, NULL::int8 AS c, true AS d, 1.5::float8 AS e, 'abc'::varchar(10) AS f", nil},
			{"SELECT $1::int4 + 1 AS n, $2::text AS s, $3::bool AS b, $4::float8 AS f", []any{41, "hé'llo\\ \"q\"", true, 2.25}},
			{"SELECT $1::text IS NULL AS isnull, $2::int8 AS big", []any{nil, int64(1) << 62}},
			{"SELECT g, g * 2 AS dbl, repeat('z', g) AS zs FROM generate_series(1, $1::int) g", []any{5}},
			{"SELECT '2024-01-02'::date AS d, '12:34:56.789'::time AS tm, interval '1 day 2 hours 3.5 seconds' AS iv, '\\x0102ff'::bytea AS by, 'a1b2c3d4-0000-4000-8000-000000000001'::uuid AS u, '2024-02-29 12:00:00'::timestamp AS ts", nil},
			{"SELECT 1 WHERE false", nil},
			{"SELECT", nil},
		}
		for _, q := range queries {
			tr.f("query %q args %s", q.sql, fmtVals(q.args))
			rows, err := conn.Query(ctx, q.sql, q.args...)
			tr.rows(rows, err)
		}
		_ = tr.exec(ctx, conn, "CREATE TEMP TABLE qm (id int PRIMARY KEY, v text)")
		_ = tr.exec(ctx, conn, "INSERT INTO qm VALUES ($1, $2), ($3, $4)", 1, "one", 2, nil)
		_ = tr.exec(ctx, conn, "INSERT INTO qm SELECT g, 'g' || g FROM generate_series(3, 10) g")
		_ = tr.exec(ctx, conn, "UPDATE qm SET v = upper(v) WHERE id > $1", 5)
		_ = tr.exec(ctx, conn, "DELETE FROM qm WHERE id % 2 = 0")
		tr.f("query returning")
		rows, err := conn.Query(ctx, "UPDATE qm SET v = v || '!' WHERE id < $1 RETURNING id, v", 6)
		tr.rows(rows, err)
		var n int
		var s string
		err = conn.QueryRow(ctx, "SELECT count(*), string_agg(coalesce(v, '∅'), ',' ORDER BY id) FROM qm").Scan(&n, &s)
		tr.f("final %d %q %s", n, s, errLine(err))
		if n != 5 || s != "one!,g3!,g5!,G7,G9" {
			t.Errorf("final table: %d %q", n, s)
		}
		return tr.String()
	}
}

// scenarioStatementCache: pgx's statement cache, named statements, a cached
// statement invalidated by a schema change, and a pipelined batch.
func scenarioStatementCache(t *testing.T, cs string) string {
	ctx := ctxT(t, time.Minute)
	conn := openConn(t, cs, nil) // QueryExecModeCacheStatement is the default
	var tr transcript
	mustExec(t, ctx, conn, "CREATE TEMP TABLE sc_t (id int PRIMARY KEY, v text)")
	h := sha256.New()
	sum := 0
	for i := range 90 {
		switch i % 3 {
		case 0:
			var a int
			var b string
			if err := conn.QueryRow(ctx, "SELECT $1::int * 2, $2::text || '!'", i, fmt.Sprint("v", i)).Scan(&a, &b); err != nil {
				t.Fatal(err)
			}
			sum += a
			fmt.Fprintf(h, "%d|%s;", a, b)
		case 1:
			var a int64
			var b string
			if err := conn.QueryRow(ctx, "SELECT $1::int8 + 1000, upper($2::text)", i, fmt.Sprint("w", i)).Scan(&a, &b); err != nil {
				t.Fatal(err)
			}
			sum += int(a)
			fmt.Fprintf(h, "%d|%s;", a, b)
		case 2:
			tag, err := conn.Exec(ctx, "INSERT INTO sc_t VALUES ($1, $2)", i, fmt.Sprint("x", i))
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(h, "%s;", tag)
		}
	}
	tr.f("loop sum %d hash %x", sum, h.Sum(nil)[:8])
	var prepared int
	err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_statements").Scan(&prepared)
	tr.f("prepared statements on the backend %d %s", prepared, errLine(err))
	if prepared < 4 {
		t.Errorf("only %d prepared statements on the backend: the statement cache is not used", prepared)
	}
	sd, err := conn.Prepare(ctx, "named_add", "SELECT $1::int + 100 AS r")
	if err != nil {
		t.Fatal(err)
	}
	tr.f("prepare named_add params %v fields %s", sd.ParamOIDs, fmtFields(sd.Fields))
	var r int
	err = conn.QueryRow(ctx, "named_add", 5).Scan(&r)
	tr.f("named_add(5) = %d %s", r, errLine(err))
	if r != 105 {
		t.Errorf("named_add(5) = %d", r)
	}
	err = conn.Deallocate(ctx, "named_add")
	tr.f("deallocate %s", errLine(err))
	err = conn.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_statements WHERE name = 'named_add'").Scan(&prepared)
	tr.f("named_add left %d %s", prepared, errLine(err))

	// A cached statement whose result type changes: PostgreSQL says 0A000,
	// pgx drops it from its cache, and the next try prepares it again.
	for i := range 3 {
		if i == 1 {
			mustExec(t, ctx, conn, "ALTER TABLE sc_t ADD COLUMN extra int DEFAULT 7")
		}
		tr.f("select * attempt %d", i)
		rows, err := conn.Query(ctx, "SELECT * FROM sc_t ORDER BY id LIMIT 2")
		tr.rows(rows, err)
	}

	// A batch is pipelined: Parse/Describe for each new query, then
	// Bind/Execute for all, one Sync.
	b := &pgx.Batch{}
	b.Queue("SELECT $1::int AS one", 1)
	b.Queue("INSERT INTO sc_t (id, v) VALUES ($1, $2)", 1000, "batch")
	b.Queue("SELECT count(*) FROM sc_t WHERE id >= $1", 1000)
	b.Queue("SELECT $1::text AS again", "x")
	br := conn.SendBatch(ctx, b)
	for i := range b.Len() {
		rows, err := br.Query()
		tr.f("batch item %d", i)
		tr.rows(rows, err)
	}
	tr.f("batch close %s", errLine(br.Close()))

	// A failing batch: the rest of the pipeline is skipped until Sync.
	b = &pgx.Batch{}
	b.Queue("INSERT INTO sc_t (id, v) VALUES ($1, $2)", 2000, "batch2")
	b.Queue("SELECT 1 / $1::int", 0)
	b.Queue("SELECT $1::int AS never", 3)
	br = conn.SendBatch(ctx, b)
	for i := range b.Len() {
		tag, err := br.Exec()
		tr.f("failing batch item %d tag %q err %s", i, tag.String(), errLine(err))
	}
	tr.f("failing batch close %s", errLine(br.Close()))
	var kept int
	err = conn.QueryRow(ctx, "SELECT count(*) FROM sc_t WHERE id = 2000").Scan(&kept)
	tr.f("row of failed batch kept %d %s", kept, errLine(err))
	if kept != 0 {
		t.Errorf("the failed batch's implicit transaction was not rolled back")
	}
	return tr.String()
}

// scenarioTransactions: commit, rollback, savepoints, failed transactions,
// and the transaction status after each step.
func scenarioTransactions(t *testing.T, cs string) string {
	ctx := ctxT(t, time.Minute)
	conn := openConn(t, cs, nil)
	var tr transcript
	status := func(what string) { tr.f("%s: tx %c", what, conn.PgConn().TxStatus()) }
	mustExec(t, ctx, conn, "CREATE TEMP TABLE tx_t (id int PRIMARY KEY)")
	status("start")

	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	status("pgx begin")
	_, err = tx.Exec(ctx, "INSERT INTO tx_t VALUES (1)")
	tr.f("insert 1 %s", errLine(err))
	tr.f("commit %s", errLine(tx.Commit(ctx)))
	status("after commit")

	tx, _ = conn.Begin(ctx)
	_, err = tx.Exec(ctx, "INSERT INTO tx_t VALUES (2)")
	tr.f("insert 2 %s", errLine(err))
	tr.f("rollback %s", errLine(tx.Rollback(ctx)))
	status("after rollback")

	// Savepoints in SQL.
	for _, s := range []string{
		"BEGIN", "INSERT INTO tx_t VALUES (3)", "SAVEPOINT s1", "INSERT INTO tx_t VALUES (4)",
		"ROLLBACK TO SAVEPOINT s1", "INSERT INTO tx_t VALUES (5)", "SAVEPOINT s2", "RELEASE SAVEPOINT s2", "RELEASE SAVEPOINT s1", "COMMIT",
	} {
		_ = tr.exec(ctx, conn, s)
	}
	// A failed transaction: aborted until ROLLBACK; COMMIT answers ROLLBACK.
	for _, s := range []string{
		"BEGIN", "INSERT INTO tx_t VALUES (6)", "INSERT INTO tx_t VALUES (6)", "SELECT 1", "COMMIT",
	} {
		_ = tr.exec(ctx, conn, s)
	}
	// Recover from an error with ROLLBACK TO SAVEPOINT.
	for _, s := range []string{
		"BEGIN", "SAVEPOINT a", "INSERT INTO tx_t VALUES (1)", "ROLLBACK TO SAVEPOINT a", "INSERT INTO tx_t VALUES (7)", "COMMIT",
	} {
		_ = tr.exec(ctx, conn, s)
	}
	// pgx nested transactions are savepoints.
	tx, _ = conn.Begin(ctx)
	_, _ = tx.Exec(ctx, "INSERT INTO tx_t VALUES (8)")
	nested, err := tx.Begin(ctx)
	tr.f("nested begin %s", errLine(err))
	_, _ = nested.Exec(ctx, "INSERT INTO tx_t VALUES (9)")
	tr.f("nested rollback %s", errLine(nested.Rollback(ctx)))
	status("after nested rollback")
	nested, _ = tx.Begin(ctx)
	_, _ = nested.Exec(ctx, "INSERT INTO tx_t VALUES (10)")
	tr.f("nested commit %s", errLine(nested.Commit(ctx)))
	tr.f("outer commit %s", errLine(tx.Commit(ctx)))
	status("after outer commit")
	// Access modes and isolation levels.
	for _, s := range []string{
		"BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY", "SHOW transaction_isolation", "INSERT INTO tx_t VALUES (11)", "ROLLBACK",
		"START TRANSACTION ISOLATION LEVEL REPEATABLE READ", "SHOW transaction_isolation", "COMMIT", "COMMIT",
	} {
		_ = tr.exec(ctx, conn, s)
	}
	// A transaction in one simple Query.
	res, err := conn.PgConn().Exec(ctx, "BEGIN; INSERT INTO tx_t VALUES (12); SAVEPOINT x; INSERT INTO tx_t VALUES (13); ROLLBACK TO x; COMMIT").ReadAll()
	tr.f("simple tx: %s err %s", fmtResults(res), errLine(err))
	status("after simple tx")

	var ids []int32
	err = conn.QueryRow(ctx, "SELECT array_agg(id ORDER BY id) FROM tx_t").Scan(&ids)
	tr.f("ids %v %s", ids, errLine(err))
	if fmt.Sprint(ids) != "[1 3 5 7 8 10 12]" {
		t.Errorf("ids = %v, want [1 3 5 7 8 10 12]", ids)
	}
	if c := conn.PgConn().TxStatus(); c != 'I' {
		t.Errorf("final tx status %c", c)
	}
	return tr.String()
}

// fmtResults renders pgconn results of a simple Query.
func fmtResults(res []*pgconn.Result) string {
	var b strings.Builder
	for i, r := range res {
		fmt.Fprintf(&b, "\n  result %d tag %q fields %s err %s", i, r.CommandTag.String(), fmtFields(r.FieldDescriptions), errLine(r.Err))
		for _, row := range r.Rows {
			cells := make([]string, len(row))
			for j, c := range row {
				if c == nil {
					cells[j] = "NULL"
				} else {
					cells[j] = fmt.Sprintf("%q", c)
				}
			}
			fmt.Fprintf(&b, "\n    row (%s)", strings.Join(cells, ", "))
		}
	}
	return b.String()
}

// scenarioMultiStatement: several statements in one simple Query, the
// implicit transaction, and failures in the middle.
func scenarioMultiStatement(t *testing.T, cs string) string {
	ctx := ctxT(t, time.Minute)
	conn := openConn(t, cs, nil)
	pc := conn.PgConn()
	var tr transcript
	run := func(sql string) error {
		res, err := pc.Exec(ctx, sql).ReadAll()
		tr.f("multi %q: %s\n  err %s tx %c", sql, fmtResults(res), errLine(err), pc.TxStatus())
		return err
	}
	count := func() string {
		res, err := pc.Exec(ctx, "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM ms").ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		s := string(res[0].Rows[0][0])
		tr.f("ms ids now %q", s)
		return s
	}
	_ = run("SELECT 1 AS one; SELECT 'a' AS a, NULL AS n; VALUES (1, 'x'), (2, 'y'); SELECT 1 WHERE false; SHOW server_version_num")
	_ = run("CREATE TEMP TABLE ms (id int PRIMARY KEY); INSERT INTO ms VALUES (100); DELETE FROM ms")
	// The second statement fails: the INSERT before it is rolled back with
	// the implicit transaction, the one after it never runs.
	err := run("INSERT INTO ms VALUES (1); SELECT 1/0; INSERT INTO ms VALUES (2)")
	if pgCode(err) != "22012" {
		t.Errorf("1/0: got %v, want 22012", err)
	}
	if s := count(); s != "" {
		t.Errorf("INSERT before the failing statement was kept: ids %q", s)
	}
	// A syntax error anywhere: nothing runs.
	err = run("INSERT INTO ms VALUES (3); SELEC 2")
	if pgCode(err) != "42601" {
		t.Errorf("syntax error: got %v, want 42601", err)
	}
	// Explicit transaction control inside a multi-statement Query.
	_ = run("BEGIN; INSERT INTO ms VALUES (4); COMMIT; INSERT INTO ms VALUES (5); SELECT 1/0")
	if s := count(); s != "4" {
		t.Errorf("ids %q, want 4", s)
	}
	// A unique violation in the middle of a multi-statement Query.
	_ = run("INSERT INTO ms VALUES (6); INSERT INTO ms VALUES (4); INSERT INTO ms VALUES (7)")
	// Left open by the Query: the session stays in the transaction.
	_ = run("BEGIN; INSERT INTO ms VALUES (8)")
	_ = run("SELECT 1/0")
	_ = run("ROLLBACK")
	// Empty queries.
	_ = run("")
	_ = run(";")
	_ = run("SELECT 1;;SELECT 2;")
	if s := count(); s != "4" {
		t.Errorf("ids %q, want 4", s)
	}
	return tr.String()
}

// scenarioErrors: errors with every field, and the session usable after each.
func scenarioErrors(mode pgx.QueryExecMode) func(*testing.T, string) string {
	return func(t *testing.T, cs string) string {
		ctx := ctxT(t, time.Minute)
		conn := openConn(t, cs, withMode(mode))
		var tr transcript
		table := "err_t_" + strings.ReplaceAll(mode.String(), " ", "_")
		mustExec(t, ctx, conn, "DROP TABLE IF EXISTS "+table)
		mustExec(t, ctx, conn, "CREATE TABLE "+table+" (id int CONSTRAINT "+table+"_pkey PRIMARY KEY, v text NOT NULL CHECK (length(v) < 10))")
		mustExec(t, ctx, conn, "INSERT INTO "+table+" VALUES (1, 'one')")
		cases := []struct {
			sql      string
			code     string
			position int32
		}{
			{"INSERT INTO " + table + " VALUES (1, 'dup')", "23505", 0},
			{"INSERT INTO " + table + " VALUES (2, NULL)", "23502", 0},
			{"INSERT INTO " + table + " VALUES (3, 'far too long')", "23514", 0},
			{"SELEC 1", "42601", 1},
			{"SELECT * FROM " + table + " WHERE", "42601", int32(len("SELECT * FROM "+table+" WHERE")) + 1},
			{"SELECT * FROM no_such_table", "42P01", 15},
			{"SELECT nosuchcol FROM " + table, "42703", 8},
			{"SELECT 1/0", "22012", 0},
			{"SELECT 'abc'::int", "22P02", 8},
			{"SELECT no_such_function(1)", "42883", 8},
			{"DO $$BEGIN RAISE EXCEPTION 'boom %', 42 USING DETAIL = 'some detail', HINT = 'some hint', ERRCODE = 'P0001'; END$$", "P0001", 0},
			{"DO $$BEGIN PERFORM nosuch FROM " + table + "; END$$", "42703", 0},
			{"SELECT pg_catalog.set_config('no space', 'x', false)", "42704", 0},
		}
		for _, c := range cases {
			_, err := conn.Exec(ctx, c.sql)
			tr.f("exec %q\n  err %s tx %c", c.sql, errLine(err), conn.PgConn().TxStatus())
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != c.code || pe.Position != c.position {
				t.Errorf("%s: got %v (position %d), want %s at %d", c.sql, err, func() int32 {
					if pe != nil {
						return pe.Position
					}
					return -1
				}(), c.code, c.position)
			}
			var one int
			err = conn.QueryRow(ctx, "SELECT 1").Scan(&one)
			tr.f("  then SELECT 1 = %d %s", one, errLine(err))
			if err != nil || one != 1 {
				t.Errorf("session unusable after %q: %v", c.sql, err)
			}
		}
		// An error in the middle of a result: the rows before it arrive.
		tr.f("query with an error mid-stream")
		rows, err := conn.Query(ctx, "SELECT 10 / (3 - g) FROM generate_series(1, 5) g")
		tr.rows(rows, err)
		var n int
		err = conn.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n)
		tr.f("rows %d %s", n, errLine(err))
		return tr.String()
	}
}

// scenarioNotices: notices and warnings are relayed with their fields.
func scenarioNotices(t *testing.T, cs string) string {
	ctx := ctxT(t, time.Minute)
	var tr transcript
	conn := openConn(t, cs, func(c *pgx.ConnConfig) {
		c.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
			tr.f("  notice %s", errLine((*pgconn.PgError)(n)))
		}
	})
	_ = tr.exec(ctx, conn, "DO $$BEGIN RAISE NOTICE 'hello %', 42; RAISE WARNING 'careful' USING HINT = 'h'; RAISE INFO 'info'; END$$")
	_ = tr.exec(ctx, conn, "DROP TABLE IF EXISTS surely_no_such_table_here")
	_ = tr.exec(ctx, conn, "SET client_min_messages = warning")
	_ = tr.exec(ctx, conn, "DO $$BEGIN RAISE NOTICE 'filtered'; RAISE WARNING 'kept'; END$$")
	n := strings.Count(tr.String(), "notice ")
	if n != 5 {
		t.Errorf("%d notices, want 5", n)
	}
	return tr.String()
}

// errReader fails after returning some data: pgconn answers CopyFail.
type errReader struct {
	data []byte
	err  error
}

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// scenarioCopy: COPY FROM STDIN and TO STDOUT, text, csv and binary, large
// messages, errors and CopyFail.
func scenarioCopy(t *testing.T, cs string) string {
	ctx := ctxT(t, 2*time.Minute)
	conn := openConn(t, cs, nil)
	pc := conn.PgConn()
	var tr transcript
	mustExec(t, ctx, conn, "CREATE TEMP TABLE copy_t (id int PRIMARY KEY, t text, n numeric, b bytea)")

	small := "1\thello\t1.5\t\\\\x00ff\n2\t\\N\t\\N\t\\N\n3\ttab\\there, newline\\nü 😀\t-0.000\t\\\\x\n"
	tag, err := pc.CopyFrom(ctx, strings.NewReader(small), "COPY copy_t FROM STDIN")
	tr.f("copy from small: tag %q err %s", tag.String(), errLine(err))
	// Lines longer than the proxy's 32 KiB buffer, sent in 64 KiB CopyData.
	var big bytes.Buffer
	for i := 10; i < 3010; i++ {
		fmt.Fprintf(&big, "%d\t%s\t%d.%04d\t\\\\x%04x\n", i, strings.Repeat(string(rune('a'+i%26)), 100+i%300), i, i, i)
	}
	fmt.Fprintf(&big, "9999\t%s\t0\t\\N\n", strings.Repeat("L", 100000))
	tag, err = pc.CopyFrom(ctx, bytes.NewReader(big.Bytes()), "COPY copy_t FROM STDIN")
	tr.f("copy from big (%d bytes): tag %q err %s", big.Len(), tag.String(), errLine(err))
	if tag.RowsAffected() != 3001 {
		t.Errorf("copy from big: %d rows, %v", tag.RowsAffected(), err)
	}

	for _, q := range []string{
		"COPY copy_t TO STDOUT",
		"COPY (SELECT * FROM copy_t ORDER BY id) TO STDOUT",
		"COPY (SELECT * FROM copy_t WHERE id < 10 ORDER BY id) TO STDOUT (FORMAT csv, HEADER)",
		"COPY (SELECT * FROM copy_t ORDER BY id) TO STDOUT (FORMAT binary)",
	} {
		var out bytes.Buffer
		tag, err := pc.CopyTo(ctx, &out, q)
		tr.f("%s: tag %q err %s bytes %d sha256 %s", q, tag.String(), errLine(err), out.Len(), shortHash(out.Bytes()))
		if strings.Contains(q, "csv") {
			tr.f("  csv:\n%s", out.String())
		}
	}
	// Round trip: what COPY TO wrote, COPY FROM reads back identically.
	var out bytes.Buffer
	if _, err := pc.CopyTo(ctx, &out, "COPY (SELECT * FROM copy_t ORDER BY id) TO STDOUT (FORMAT binary)"); err != nil {
		t.Fatal(err)
	}
	mustExec(t, ctx, conn, "CREATE TEMP TABLE copy_t2 (LIKE copy_t)")
	tag, err = pc.CopyFrom(ctx, bytes.NewReader(out.Bytes()), "COPY copy_t2 FROM STDIN (FORMAT binary)")
	tr.f("binary round trip: tag %q err %s", tag.String(), errLine(err))
	var same bool
	err = conn.QueryRow(ctx, "SELECT NOT EXISTS (SELECT * FROM copy_t EXCEPT SELECT * FROM copy_t2) AND (SELECT count(*) FROM copy_t) = (SELECT count(*) FROM copy_t2)").Scan(&same)
	tr.f("round trip identical %v %s", same, errLine(err))
	if !same {
		t.Errorf("binary COPY round trip differs")
	}

	// Bad data: 22P02 with the COPY context, then the session goes on.
	tag, err = pc.CopyFrom(ctx, strings.NewReader("5000\tok\t1\t\\N\nabc\tbad\t1\t\\N\n"), "COPY copy_t FROM STDIN")
	tr.f("copy bad data: tag %q err %s", tag.String(), errLine(err))
	if pgCode(err) != "22P02" {
		t.Errorf("bad COPY data: %v", err)
	}
	// The client aborts with CopyFail.
	tag, err = pc.CopyFrom(ctx, &errReader{data: []byte("6000\tx\t1\t\\N\n"), err: errors.New("client gave up")}, "COPY copy_t FROM STDIN")
	tr.f("copy fail: tag %q err %s", tag.String(), errLine(err))
	if pgCode(err) != "57014" {
		t.Errorf("CopyFail: %v", err)
	}
	var n int
	err = conn.QueryRow(ctx, "SELECT count(*) FROM copy_t WHERE id >= 5000 AND id < 9999").Scan(&n)
	tr.f("rows of failed copies %d %s", n, errLine(err))
	if n != 0 {
		t.Errorf("%d rows of failed COPYs kept", n)
	}

	// pgx.CopyFrom: 10,000 rows in the binary format.
	mustExec(t, ctx, conn, "CREATE TEMP TABLE copy_big (id int8, name text, amount numeric, ts timestamptz, tags text[])")
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	copied, err := conn.CopyFrom(ctx, pgx.Identifier{"copy_big"}, []string{"id", "name", "amount", "ts", "tags"},
		pgx.CopyFromSlice(10000, func(i int) ([]any, error) {
			var name any = fmt.Sprintf("name-%05d-ü", i)
			if i%10 == 0 {
				name = nil
			}
			return []any{int64(i), name, float64(i) / 4, base.Add(time.Duration(i) * time.Minute), []string{"a", fmt.Sprint(i % 7)}}, nil
		}))
	tr.f("pgx.CopyFrom %d %s", copied, errLine(err))
	if copied != 10000 || err != nil {
		t.Errorf("pgx.CopyFrom: %d rows, %v", copied, err)
	}
	var cnt, names int64
	var sum, digest string
	err = conn.QueryRow(ctx, "SELECT count(*), count(name), sum(amount)::text, md5(string_agg(concat_ws('|', id, name, amount, ts, tags), ',' ORDER BY id)) FROM copy_big").Scan(&cnt, &names, &sum, &digest)
	tr.f("copy_big count %d names %d sum %s md5 %s %s", cnt, names, sum, digest, errLine(err))
	if cnt != 10000 || names != 9000 || sum != "12498750.00" {
		t.Errorf("copy_big: count %d names %d sum %s", cnt, names, sum)
	}
	for _, q := range []string{"COPY (SELECT * FROM copy_big ORDER BY id) TO STDOUT", "COPY (SELECT * FROM copy_big ORDER BY id) TO STDOUT (FORMAT binary)"} {
		var out bytes.Buffer
		tag, err := pc.CopyTo(ctx, &out, q)
		tr.f("%s: tag %q err %s bytes %d sha256 %s", q, tag.String(), errLine(err), out.Len(), shortHash(out.Bytes()))
	}
	return tr.String()
}

// scenarioTypes: round trips of values as parameters and as results.
func scenarioTypes(mode pgx.QueryExecMode) func(*testing.T, string) string {
	return func(t *testing.T, cs string) string {
		ctx := ctxT(t, 2*time.Minute)
		conn := openConn(t, cs, withMode(mode))
		var tr transcript

		// bytea: all 256 byte values, and 1 MiB.
		all := make([]byte, 256)
		for i := range all {
			all[i] = byte(i)
		}
		mib := make([]byte, 1<<20)
		rng := rand.New(rand.NewPCG(1, 2))
		for i := 0; i < len(mib); i += 8 {
			binary.LittleEndian.PutUint64(mib[i:], rng.Uint64())
		}
		for _, in := range [][]byte{all, mib, {}} {
			var out []byte
			var md string
			var n int
			err := conn.QueryRow(ctx, "SELECT $1::bytea, md5($1::bytea), octet_length($1::bytea)", in).Scan(&out, &md, &n)
			want := md5.Sum(in)
			tr.f("bytea len %d: back len %d md5 %s equal %v %s", len(in), len(out), md, bytes.Equal(in, out), errLine(err))
			if !bytes.Equal(in, out) || md != hex.EncodeToString(want[:]) || n != len(in) {
				t.Errorf("bytea of %d bytes: round trip differs (back %d bytes, server md5 %s, %v)", len(in), len(out), md, err)
			}
		}
		var allHex bool
		err := conn.QueryRow(ctx, "SELECT $1::bytea = decode($2, 'hex')", all, hex.EncodeToString(all)).Scan(&allHex)
		tr.f("bytea server-side equal %v %s", allHex, errLine(err))
		if !allHex {
			t.Errorf("the server saw different bytes")
		}
		var big []byte
		err = conn.QueryRow(ctx, "SELECT decode(repeat('00ff7f80', 300000), 'hex')").Scan(&big)
		tr.f("bytea 1.2MB result len %d sha256 %s %s", len(big), shortHash(big), errLine(err))
		if len(big) != 1200000 {
			t.Errorf("large bytea result: %d bytes", len(big))
		}

		// jsonb.
		tr.f("jsonb")
		var doc any = map[string]any{"k": []any{1, "two", nil, map[string]any{"deep": true}}, "ü": "✓"}
		if mode == pgx.QueryExecModeSimpleProtocol {
			// The simple protocol has no parameter types to encode a map for.
			b, _ := json.Marshal(doc)
			doc = string(b)
		}
		rows, err := conn.Query(ctx, "SELECT $1::jsonb, $1::jsonb::text, '{\"b\": 1, \"a\": [1, 2.50, null, \"ü😀\", {\"x\": {}}]}'::jsonb, 'null'::jsonb, '[]'::json", doc)
		tr.rows(rows, err)

		// numeric with huge precision.
		huge := "123456789012345678901234567890123456789.000000000000000000000000000000000000000001"
		var num pgtype.Numeric
		if err := num.Scan(huge); err != nil {
			t.Fatal(err)
		}
		var numText string
		var numBack pgtype.Numeric
		err = conn.QueryRow(ctx, "SELECT $1::numeric::text, $1::numeric", num).Scan(&numText, &numBack)
		back, _ := numBack.Value()
		tr.f("numeric %s -> text %s value %v %s", huge, numText, back, errLine(err))
		if numText != huge {
			t.Errorf("numeric round trip: %s", numText)
		}
		tr.f("numeric results")
		rows, err = conn.Query(ctx, "SELECT 'NaN'::numeric, '-0.000'::numeric, power(10::numeric, 200) + 0.5, 1::numeric / 3, '1e-300'::numeric, 'Infinity'::numeric, 12.345::numeric(5,2)")
		tr.rows(rows, err)

		// timestamptz.
		ts := time.Date(2024, 2, 29, 23, 59, 59, 123456000, time.FixedZone("x", 5*3600+1800))
		var tsBack time.Time
		var tsText string
		err = conn.QueryRow(ctx, "SELECT $1::timestamptz, ($1::timestamptz AT TIME ZONE 'UTC')::text", ts).Scan(&tsBack, &tsText)
		tr.f("timestamptz %s -> %s %s %s", ts.Format(time.RFC3339Nano), tsBack.UTC().Format(time.RFC3339Nano), tsText, errLine(err))
		if !tsBack.Equal(ts) || tsText != "2024-02-29 18:29:59.123456" {
			t.Errorf("timestamptz round trip: %s, %s", tsBack, tsText)
		}
		tr.f("time results")
		rows, err = conn.Query(ctx, "SELECT 'infinity'::timestamptz, '-infinity'::timestamp, '1999-12-31 23:59:59.999999+14'::timestamptz, '4713-01-01 BC'::date, '24:00:00'::time, '1 year 2 months -3 days 04:05:06.7'::interval")
		tr.rows(rows, err)

		// Arrays, with NULLs.
		a, c := "a", "b c"
		var ints []*int32
		var texts []*string
		err = conn.QueryRow(ctx, "SELECT $1::int[], $2::text[]", []*int32{ptr[int32](1), nil, ptr[int32](3)}, []*string{&a, nil, &c}).Scan(&ints, &texts)
		tr.f("arrays %s %s %s", fmtPtrs(ints), fmtPtrs(texts), errLine(err))
		if fmtPtrs(ints) != "[1 NULL 3]" || fmtPtrs(texts) != `["a" NULL "b c"]` {
			t.Errorf("array round trip: %s %s", fmtPtrs(ints), fmtPtrs(texts))
		}
		tr.f("array results")
		rows, err = conn.Query(ctx, `SELECT '{1,NULL,3}'::int[], ARRAY['a', NULL, 'b c', '"q"', 'ü', '', 'NULL']::text[], '{{1,2},{3,4}}'::int[], '{}'::int8[], '[0:1]={7,8}'::int[]`)
		tr.rows(rows, err)

		// Unicode text.
		for _, s := range []string{"😀 👩‍👩‍👧 🇫🇷", "漢字かなカナ 한국어", "e\u0301 vs \u00e9, Å\u030a", "zero\u200bwidth \u202eRTL", "tab\tnewline\n'quote' \\backslash"} {
			var back string
			var chars, octets int
			err := conn.QueryRow(ctx, "SELECT $1::text, length($1::text), octet_length($1::text)", s).Scan(&back, &chars, &octets)
			tr.f("text %q -> %q chars %d octets %d %s", s, back, chars, octets, errLine(err))
			if back != s || octets != len(s) {
				t.Errorf("text round trip: %q -> %q", s, back)
			}
		}
		tr.f("unicode results")
		rows, err = conn.Query(ctx, "SELECT 'Ünïcödé ✓ 😀 漢字' AS \"列 😀\", upper('straße'), chr(128512), length('👩‍👩‍👧')")
		tr.rows(rows, err)

		// NULLs of many types, as results and as parameters.
		tr.f("nulls")
		rows, err = conn.Query(ctx, "SELECT NULL::int, NULL::text, NULL::bytea, NULL::jsonb, NULL::int[], NULL::numeric, NULL::timestamptz, $1::text, $2::int8", nil, nil)
		tr.rows(rows, err)
		var np *string
		err = conn.QueryRow(ctx, "SELECT $1::text", nil).Scan(&np)
		tr.f("null param back nil %v %s", np == nil, errLine(err))
		if np != nil || err != nil {
			t.Errorf("NULL round trip: %v %v", np, err)
		}
		return tr.String()
	}
}

func ptr[T any](v T) *T { return &v }

func fmtPtrs[T any](xs []*T) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		if x == nil {
			parts[i] = "NULL"
		} else if s, ok := any(*x).(string); ok {
			parts[i] = fmt.Sprintf("%q", s)
		} else {
			parts[i] = fmt.Sprint(*x)
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// scenarioLargeResult: 100,000 rows streamed, counted and checksummed.
func scenarioLargeResult(mode pgx.QueryExecMode) func(*testing.T, string) string {
	return func(t *testing.T, cs string) string {
		ctx := ctxT(t, 2*time.Minute)
		conn := openConn(t, cs, withMode(mode))
		rows, err := conn.Query(ctx, "SELECT g, md5(g::text) FROM generate_series(1, $1::int) g", 100000)
		if err != nil {
			t.Fatal(err)
		}
		got, want := sha256.New(), sha256.New()
		n := 0
		for rows.Next() {
			var id int
			var m string
			if err := rows.Scan(&id, &m); err != nil {
				t.Fatal(err)
			}
			n++
			fmt.Fprintf(got, "%d:%s\n", id, m)
			sum := md5.Sum([]byte(fmt.Sprint(n)))
			fmt.Fprintf(want, "%d:%x\n", n, sum)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if n != 100000 || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
			t.Errorf("%d rows, checksum %x, want 100000 rows and %x", n, got.Sum(nil), want.Sum(nil))
		}
		return fmt.Sprintf("rows %d checksum %x tag %q\n", n, got.Sum(nil), rows.CommandTag().String())
	}
}

// scenarioListenNotify: notifications from another session arrive while the
// listener is idle, with channel and payload intact.
func scenarioListenNotify(t *testing.T, cs string) string {
	ctx := ctxT(t, time.Minute)
	listener := openConn(t, cs, nil)
	notifier := openConn(t, cs, nil)
	var tr transcript
	var notifierPID uint32
	if err := notifier.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&notifierPID); err != nil {
		t.Fatal(err)
	}
	mustExec(t, ctx, listener, "LISTEN conformance_chan")
	mustExec(t, ctx, listener, `LISTEN "Other Chan"`)
	wait := func(what string, d time.Duration) *pgconn.Notification {
		wctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		n, err := listener.WaitForNotification(wctx)
		if err != nil {
			tr.f("%s: no notification (%v)", what, errors.Is(err, context.DeadlineExceeded))
			return nil
		}
		tr.f("%s: channel %q payload %q from notifier %v", what, n.Channel, n.Payload, n.PID == notifierPID)
		return n
	}
	mustExec(t, ctx, notifier, "NOTIFY conformance_chan, 'hello'")
	if n := wait("plain", 5*time.Second); n == nil || n.Channel != "conformance_chan" || n.Payload != "hello" {
		t.Errorf("plain notification: %+v", n)
	}
	mustExec(t, ctx, notifier, "SELECT pg_notify($1, $2)", "Other Chan", "ü 😀 "+strings.Repeat("p", 7000))
	if n := wait("pg_notify", 5*time.Second); n == nil || n.Channel != "Other Chan" || !strings.HasPrefix(n.Payload, "ü 😀 ppp") {
		t.Errorf("pg_notify notification: %+v", n)
	}
	// Inside a transaction: delivered only at commit.
	mustExec(t, ctx, notifier, "BEGIN")
	mustExec(t, ctx, notifier, "NOTIFY conformance_chan, 'in tx'")
	if n := wait("before commit", 300*time.Millisecond); n != nil {
		t.Errorf("notification before commit: %+v", n)
	}
	mustExec(t, ctx, notifier, "COMMIT")
	if n := wait("after commit", 5*time.Second); n == nil || n.Payload != "in tx" {
		t.Errorf("notification after commit: %+v", n)
	}
	// Rolled back: never delivered.
	mustExec(t, ctx, notifier, "BEGIN")
	mustExec(t, ctx, notifier, "NOTIFY conformance_chan, 'rolled back'")
	mustExec(t, ctx, notifier, "ROLLBACK")
	// Its own notification arrives while the listener runs a query.
	mustExec(t, ctx, listener, "NOTIFY conformance_chan, 'self'")
	if n := wait("self", 5*time.Second); n == nil || n.Payload != "self" {
		t.Errorf("self notification: %+v", n)
	}
	mustExec(t, ctx, listener, "UNLISTEN *")
	mustExec(t, ctx, notifier, "NOTIFY conformance_chan, 'after unlisten'")
	if n := wait("after unlisten", 300*time.Millisecond); n != nil {
		t.Errorf("notification after UNLISTEN: %+v", n)
	}
	return tr.String()
}

// withCancelRequest makes pgx send a CancelRequest when a query's context
// is cancelled (its default only sets a deadline on the socket).
func withCancelRequest(c *pgx.ConnConfig) {
	c.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 5 * time.Second}
	}
}

// scenarioCancel: a context cancelled after 200 ms cancels pg_sleep(30) with
// 57014 in well under a second, and the connection remains usable.
func scenarioCancel(t *testing.T, cs string) string {
	var tr transcript
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		conn := openConn(t, cs, func(c *pgx.ConnConfig) { withCancelRequest(c); c.DefaultQueryExecMode = mode })
		for _, inTx := range []bool{false, true} {
			ctx := ctxT(t, 30*time.Second)
			if inTx {
				mustExec(t, ctx, conn, "BEGIN")
			}
			qctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			start := time.Now()
			_, err := conn.Exec(qctx, "SELECT pg_sleep(30)")
			elapsed := time.Since(start)
			cancel()
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "57014" {
				t.Errorf("%s: cancelled pg_sleep: got %v, want 57014", mode, err)
			} else {
				tr.f("%s in tx %v: %s %q tx %c", mode, inTx, pe.Code, pe.Message, conn.PgConn().TxStatus())
			}
			if elapsed > time.Second {
				t.Errorf("%s: cancel took %s", mode, elapsed)
			}
			if inTx {
				_ = tr.exec(ctx, conn, "ROLLBACK")
			}
			var one int
			err = conn.QueryRow(ctx, "SELECT 1").Scan(&one)
			tr.f("  then SELECT 1 = %d %s closed %v", one, errLine(err), conn.IsClosed())
			if err != nil || one != 1 {
				t.Errorf("%s: connection unusable after cancel: %v", mode, err)
			}
		}
	}
	return tr.String()
}

// sendCancel sends a raw CancelRequest with the given key to addr.
func sendCancel(t *testing.T, addr string, pid uint32, secret []byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, 12, 16)
	binary.BigEndian.PutUint32(msg[0:], uint32(12+len(secret)))
	binary.BigEndian.PutUint32(msg[4:], 80877102)
	binary.BigEndian.PutUint32(msg[8:], pid)
	msg = append(msg, secret...)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	// The server closes the connection when it is done with the request.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.Copy(io.Discard, c)
}

// TestConformanceCancelIsolation: a cancel reaches only its own client.
func TestConformanceCancelIsolation(t *testing.T) {
	p := startProxy(t)
	ctx := ctxT(t, time.Minute)
	a := openConn(t, p.URL("alice"), nil)
	b := openConn(t, p.URL("bob"), nil)

	// In session pooling the cancel key's pid is the client's one backend's
	// (its secret is the proxy's own); in transaction pooling no backend is
	// the client's, and the pid is the proxy's own too.
	var backendPID uint32
	if err := a.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backendPID); err != nil {
		t.Fatal(err)
	}
	if got := a.PgConn().PID(); (got == backendPID) == txPoolingSuite() {
		t.Errorf("cancel key pid %d, backend pid %d (transaction pooling: %v)", got, backendPID, txPoolingSuite())
	}

	type result struct {
		err     error
		elapsed time.Duration
	}
	run := func(conn *pgx.Conn) <-chan result {
		ch := make(chan result, 1)
		go func() {
			start := time.Now()
			_, err := conn.Exec(ctx, "SELECT pg_sleep(2)")
			ch <- result{err, time.Since(start)}
		}()
		return ch
	}
	ra, rb := run(a), run(b)
	time.Sleep(300 * time.Millisecond)
	// A request with an unknown key and one with a's pid but a wrong secret.
	sendCancel(t, p.Addr, 12345, []byte{1, 2, 3, 4})
	wrong := append([]byte(nil), a.PgConn().SecretKey()...)
	wrong[0] ^= 0xff
	sendCancel(t, p.Addr, a.PgConn().PID(), wrong)
	time.Sleep(200 * time.Millisecond)
	if err := a.PgConn().CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	resA, resB := <-ra, <-rb
	if pgCode(resA.err) != "57014" || resA.elapsed > 1500*time.Millisecond {
		t.Errorf("cancelled client: %v after %s, want 57014 well before 2s", resA.err, resA.elapsed)
	}
	if resB.err != nil || resB.elapsed < 1900*time.Millisecond {
		t.Errorf("other client: %v after %s, want success after 2s", resB.err, resB.elapsed)
	}
	// A cancel while nothing runs does nothing, and then both still work.
	if err := b.PgConn().CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	for _, c := range []*pgx.Conn{a, b} {
		var n int
		if err := c.QueryRow(ctx, "SELECT 1 FROM pg_sleep(0.3)").Scan(&n); err != nil {
			t.Errorf("after cancel: %v", err)
		}
	}
}

// TestConformanceStaleCancelKey: the cancel key of a client that has gone
// does not cancel the next client of the same backend connection.
func TestConformanceStaleCancelKey(t *testing.T) {
	p := startProxy(t, func(_ *wire.Config, pc *pool.Config) { pc.MaxConns = 1 })
	ctx := ctxT(t, time.Minute)
	first := openConn(t, p.URL("alice"), nil)
	var pid1 uint32
	if err := first.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid1); err != nil {
		t.Fatal(err)
	}
	key, secret := first.PgConn().PID(), append([]byte(nil), first.PgConn().SecretKey()...)
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	second := openConn(t, p.URL("bob"), nil)
	var pid2 uint32
	if err := second.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid2); err != nil {
		t.Fatal(err)
	}
	if pid1 != pid2 {
		t.Fatalf("backend not reused (%d, %d): the test needs the same backend", pid1, pid2)
	}
	done := make(chan error, 1)
	go func() {
		_, err := second.Exec(ctx, "SELECT pg_sleep(1)")
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	sendCancel(t, p.Addr, key, secret)
	if err := <-done; err != nil {
		t.Errorf("second client's statement: %v (cancelled by the first client's stale key?)", err)
	}
}

// TestConformanceAuthFailures: wrong passwords and unknown logins get the
// same FATAL 28P01, in PostgreSQL's words.
func TestConformanceAuthFailures(t *testing.T) {
	p := startProxy(t)
	ctx := ctxT(t, 30*time.Second)
	connectErr := func(cs string) *pgconn.PgError {
		t.Helper()
		conn, err := pgx.Connect(ctx, cs)
		if err == nil {
			conn.Close(ctx)
			t.Fatalf("login with %s succeeded", cs)
		}
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			t.Fatalf("login error is not a server error: %v", err)
		}
		return pe
	}
	u, err := url.Parse(p.DirectDB)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), "wrong")
	direct := connectErr(u.String())
	for _, c := range []struct{ login, password string }{
		{"alice", "wrong"}, {"alice", ""}, {"bob", "alice"}, {"mallory", "mallory"}, {"Alice", "alice"},
	} {
		pe := connectErr(p.URLWithPassword(c.login, c.password))
		want := fmt.Sprintf("password authentication failed for user %q", c.login)
		if pe.Code != "28P01" || pe.Message != want || pe.Severity != "FATAL" {
			t.Errorf("%s/%q: got %s %s %q, want FATAL 28P01 %q", c.login, c.password, pe.Severity, pe.Code, pe.Message, want)
		}
		// The same shape as PostgreSQL's own answer.
		directShape := strings.Replace(direct.Message, u.User.Username(), c.login, 1)
		if pe.Code != direct.Code || pe.Severity != direct.Severity || pe.Message != directShape || pe.Detail != direct.Detail || pe.Hint != direct.Hint {
			t.Errorf("%s: proxy %s %s %q detail %q, PostgreSQL %s %s %q detail %q", c.login, pe.Severity, pe.Code, pe.Message, pe.Detail,
				direct.Severity, direct.Code, direct.Message, direct.Detail)
		}
	}
	// And a correct login still works.
	conn := openConn(t, p.URL("alice"), nil)
	if err := conn.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestConformanceConcurrentClients: 200 clients at once, each with a few
// queries; then every client connection is gone.
func TestConformanceConcurrentClients(t *testing.T) {
	clients := 200
	if n, err := strconv.Atoi(os.Getenv("CONFORMANCE_CLIENTS")); err == nil && n > 0 {
		clients = n // for diagnosis
	}
	p := startProxy(t, func(w *wire.Config, pc *pool.Config) {
		pc.MaxConns = 250
		// 400 SCRAM exchanges (client and backend side) on a small machine
		// under -race: startup latency is not what this test measures.
		w.StartupTimeout = 90 * time.Second
		pc.DialTimeout = 90 * time.Second
	})
	ctx := ctxT(t, 2*time.Minute)
	logins := []string{"alice", "bob", "carol", "dave"}
	var connected, wg sync.WaitGroup
	connected.Add(clients)
	release := make(chan struct{})
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.Connect(ctx, p.URL(logins[i%len(logins)]))
			if err != nil {
				errs <- fmt.Errorf("client %d: connect: %w", i, err)
				connected.Done()
				return
			}
			connected.Done()
			defer conn.Close(ctx)
			<-release
			ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			var n int
			var s string
			if err := conn.QueryRow(ctx, "SELECT $1::int * 2, $2::text", i, fmt.Sprint("c", i)).Scan(&n, &s); err != nil || n != 2*i || s != fmt.Sprint("c", i) {
				errs <- fmt.Errorf("client %d: query: %d %q %v", i, n, s, err)
				return
			}
			res, err := conn.PgConn().Exec(ctx, fmt.Sprintf("BEGIN; SELECT %d; COMMIT", i)).ReadAll()
			if err != nil || len(res) != 3 || string(res[1].Rows[0][0]) != fmt.Sprint(i) {
				errs <- fmt.Errorf("client %d: multi-statement: %v", i, err)
				return
			}
			var sum int64
			if err := conn.QueryRow(ctx, "SELECT sum(g) FROM generate_series(1, 1000) g").Scan(&sum); err != nil || sum != 500500 {
				errs <- fmt.Errorf("client %d: sum %d %v", i, sum, err)
			}
		}()
	}
	connected.Wait()
	if n := p.Server.ClientConns(); n != clients-len(errs) {
		t.Errorf("ClientConns = %d with %d clients connected", n, clients-len(errs))
	}
	close(release)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Errorf("clients still busy 10s after their first query")
		diagnose(t, p)
		<-finished
	}
	close(errs)
	failed := 0
	for err := range errs {
		if failed < 5 {
			t.Error(err)
		}
		failed++
	}
	if failed > 0 {
		t.Errorf("%d of %d clients failed", failed, clients)
	}
	waitFor(t, "ClientConns to drop to 0", 10*time.Second, func() bool { return p.Server.ClientConns() == 0 })
	st := p.Pool.Stats()
	if st.Open > 250 || st.Idle != st.Open {
		t.Errorf("pool after the clients left: %+v", st)
	}
}

// diagnose logs what the proxy and the server are doing, after a failure;
// with CONFORMANCE_DUMP set it also writes every goroutine's stack to
// $CONFORMANCE_DUMP.
func diagnose(t *testing.T, p *proxy) {
	t.Helper()
	t.Logf("pool %+v, client conns %d", p.Pool.Stats(), p.Server.ClientConns())
	ctx := ctxT(t, 10*time.Second)
	if conn, err := pgx.Connect(ctx, p.DirectDB); err == nil {
		defer conn.Close(ctx)
		rows, err := conn.Query(ctx, `SELECT coalesce(state, ''), coalesce(wait_event_type, ''), coalesce(wait_event, ''), left(query, 60), count(*)
			FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() GROUP BY 1, 2, 3, 4 ORDER BY 5 DESC`)
		if err == nil {
			for rows.Next() {
				vals, _ := rows.Values()
				t.Logf("  backend %v", vals)
			}
			rows.Close()
		}
	}
	if f := os.Getenv("CONFORMANCE_DUMP"); f != "" {
		buf := make([]byte, 64<<20)
		buf = buf[:runtime.Stack(buf, true)]
		if err := os.WriteFile(f, buf, 0o644); err == nil {
			t.Logf("goroutines written to %s", f)
		}
	}
}

// TestConformanceParameterStatus: the server's ParameterStatus values reach
// the client as PostgreSQL sends them, except session_authorization, which
// is the login; startup parameters take effect on the backend.
func TestConformanceParameterStatus(t *testing.T) {
	p := startProxy(t)
	ctx := ctxT(t, 30*time.Second)
	direct := openConn(t, p.DirectDB, nil)
	proxied := openConn(t, p.URL("alice"), nil)
	for _, name := range []string{"server_version", "server_encoding", "client_encoding", "DateStyle", "IntervalStyle", "TimeZone", "integer_datetimes", "standard_conforming_strings"} {
		d, x := direct.PgConn().ParameterStatus(name), proxied.PgConn().ParameterStatus(name)
		if d != x || d == "" {
			t.Errorf("ParameterStatus(%s): direct %q, proxy %q", name, d, x)
		}
	}
	if got := proxied.PgConn().ParameterStatus("session_authorization"); got != "alice" {
		t.Errorf("session_authorization through the proxy = %q, want alice", got)
	}
	if got := proxied.PgConn().ParameterStatus("is_superuser"); got != "off" {
		t.Errorf("is_superuser through the proxy = %q, want off", got)
	}
	// A change during the session is reported as the server reports it.
	for _, c := range []*pgx.Conn{direct, proxied} {
		mustExec(t, ctx, c, "SET TimeZone = 'Asia/Tokyo'")
		mustExec(t, ctx, c, "SET DateStyle = 'German, DMY'")
		if tz, ds := c.PgConn().ParameterStatus("TimeZone"), c.PgConn().ParameterStatus("DateStyle"); tz != "Asia/Tokyo" || ds != "German, DMY" {
			t.Errorf("after SET: TimeZone %q DateStyle %q", tz, ds)
		}
	}
	// Startup parameters: application_name and options.
	show := func(cs string) string {
		u, err := url.Parse(cs)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		q.Set("application_name", "conformance-app 1")
		q.Set("options", `-c search_path=foo,\ public -c statement_timeout=4321 --work-mem=5MB -c lock_timeout=1s`)
		u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20") // pgconn does not read + as a space
		conn, err := pgx.Connect(ctx, u.String())
		if err != nil {
			t.Fatalf("connect with startup options: %v", err)
		}
		defer conn.Close(ctx)
		var app, sp, st, wm, lt string
		if err := conn.QueryRow(ctx, "SELECT current_setting('application_name'), current_setting('search_path'), current_setting('statement_timeout'), current_setting('work_mem'), current_setting('lock_timeout')").Scan(&app, &sp, &st, &wm, &lt); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("application_name=%q (status %q) search_path=%q statement_timeout=%q work_mem=%q lock_timeout=%q",
			app, conn.PgConn().ParameterStatus("application_name"), sp, st, wm, lt)
	}
	d, x := show(p.DirectDB), show(p.URL("alice"))
	if d != x {
		t.Errorf("startup parameters:\n  direct: %s\n  proxy:  %s", d, x)
	}
	if !strings.Contains(x, `application_name="conformance-app 1"`) || !strings.Contains(x, `search_path="foo, public"`) {
		t.Errorf("startup parameters through the proxy: %s", x)
	}
}

// TestConformancePoolLimit: with every backend taken, a new client waits
// AcquireTimeout and gets 53300; once a client leaves, a new one gets in.
func TestConformancePoolLimit(t *testing.T) {
	if txPoolingSuite() {
		t.Skip("session pooling: one backend connection per client")
	}
	p := startProxy(t, func(_ *wire.Config, pc *pool.Config) {
		pc.MaxConns = 2
		pc.AcquireTimeout = 300 * time.Millisecond
	})
	ctx := ctxT(t, 30*time.Second)
	c1 := openConn(t, p.URL("alice"), nil)
	c2 := openConn(t, p.URL("bob"), nil)
	start := time.Now()
	c3, err := pgx.Connect(ctx, p.URL("carol"))
	elapsed := time.Since(start)
	if err == nil {
		c3.Close(ctx)
		t.Fatal("a third client got a backend with MaxConns 2")
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "53300" || pe.Severity != "FATAL" {
		t.Fatalf("third client: %v, want FATAL 53300", err)
	}
	if elapsed < 250*time.Millisecond || elapsed > 3*time.Second {
		t.Errorf("third client refused after %s, want about the 300ms AcquireTimeout", elapsed)
	}
	for _, c := range []*pgx.Conn{c1, c2} {
		if err := c.Ping(ctx); err != nil {
			t.Errorf("held client after the refusal: %v", err)
		}
	}
	if err := c1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	var c4 *pgx.Conn
	waitFor(t, "a new client to connect after one left", 5*time.Second, func() bool {
		c4, err = pgx.Connect(ctx, p.URL("dave"))
		return err == nil
	})
	defer c4.Close(ctx)
	var n int
	if err := c4.QueryRow(ctx, "SELECT 42").Scan(&n); err != nil || n != 42 {
		t.Errorf("new client: %d %v", n, err)
	}
	if st := p.Pool.Stats(); st.Timeouts != 1 || st.Open != 2 {
		t.Errorf("pool stats %+v, want 1 timeout and 2 open", st)
	}
}

// TestConformancePoolReset: nothing of a session survives into the next
// session on the same backend connection.
func TestConformancePoolReset(t *testing.T) {
	p := startProxy(t, func(_ *wire.Config, pc *pool.Config) { pc.MaxConns = 1 })
	ctx := ctxT(t, 30*time.Second)
	direct := openConn(t, p.DirectDB, nil)
	mustExec(t, ctx, direct, "CREATE TABLE reset_rows (id int)")
	var defWorkMem, defTZ string
	if err := direct.QueryRow(ctx, "SELECT current_setting('work_mem'), current_setting('TimeZone')").Scan(&defWorkMem, &defTZ); err != nil {
		t.Fatal(err)
	}

	c1 := openConn(t, p.URL("alice"), nil)
	var pid1 uint32
	if err := c1.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid1); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"SET work_mem = '77MB'", "SET TimeZone = 'Asia/Tokyo'", "CREATE TEMP TABLE reset_tmp (id int)",
		"PREPARE reset_ps AS SELECT 1", "LISTEN reset_chan", "SELECT pg_advisory_lock(4242)",
		// (A client that leaves inside a transaction takes its backend
		// with it: TestDisconnectInTransactionEndsBackend.)
		"SELECT set_config('myapp.tenant', 'acme', false)", "BEGIN", "INSERT INTO reset_rows VALUES (1)", "ROLLBACK",
	} {
		mustExec(t, ctx, c1, s)
	}
	if err := c1.Close(ctx); err != nil {
		t.Fatal(err)
	}

	c2 := openConn(t, p.URL("bob"), nil)
	var pid2 uint32
	var workMem, tz, tenant string
	var tmp *string
	var prepared, channels, advisory, rows int
	err := c2.QueryRow(ctx, `SELECT pg_backend_pid(), current_setting('work_mem'), current_setting('TimeZone'),
		to_regclass('reset_tmp')::text, (SELECT count(*) FROM pg_prepared_statements WHERE name = 'reset_ps'),
		(SELECT count(*) FROM pg_listening_channels()),
		(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()),
		coalesce(current_setting('myapp.tenant', true), ''), (SELECT count(*) FROM reset_rows)`).
		Scan(&pid2, &workMem, &tz, &tmp, &prepared, &channels, &advisory, &tenant, &rows)
	if err != nil {
		t.Fatal(err)
	}
	if pid1 != pid2 {
		t.Fatalf("backend not reused (%d, %d): the test needs the same backend", pid1, pid2)
	}
	if workMem != defWorkMem || tz != defTZ || tmp != nil || prepared != 0 || channels != 0 || advisory != 0 || tenant != "" || rows != 0 {
		t.Errorf("state leaked into the next session: work_mem %q (default %q) TimeZone %q (default %q) temp table %v prepared %d channels %d advisory locks %d myapp.tenant %q uncommitted rows %d",
			workMem, defWorkMem, tz, defTZ, tmp, prepared, channels, advisory, tenant, rows)
	}
	if got := c2.PgConn().ParameterStatus("TimeZone"); got != defTZ {
		t.Errorf("the next client was told TimeZone %q, want %q", got, defTZ)
	}
	if got := c2.PgConn().ParameterStatus("session_authorization"); got != "bob" {
		t.Errorf("the next client was told session_authorization %q, want bob", got)
	}
}

// TestConformanceDisconnectReleasesLocks: a client that vanishes in the
// middle of a transaction, or of a statement, leaves nothing behind.
func TestConformanceDisconnectReleasesLocks(t *testing.T) {
	p := startProxy(t)
	ctx := ctxT(t, 30*time.Second)
	direct := openConn(t, p.DirectDB, nil)
	mustExec(t, ctx, direct, "CREATE TABLE lock_t (id int PRIMARY KEY, v text)")
	mustExec(t, ctx, direct, "INSERT INTO lock_t VALUES (1, 'x')")

	tryLock := func(c *pgx.Conn) error {
		tx, err := c.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		_, err = tx.Exec(ctx, "SELECT v FROM lock_t WHERE id = 1 FOR UPDATE NOWAIT")
		return err
	}
	c1 := openConn(t, p.URL("alice"), nil)
	mustExec(t, ctx, c1, "BEGIN")
	mustExec(t, ctx, c1, "SELECT v FROM lock_t WHERE id = 1 FOR UPDATE")
	c2 := openConn(t, p.URL("bob"), nil)
	if err := tryLock(c2); pgCode(err) != "55P03" {
		t.Fatalf("row lock not held by the first client: %v", err)
	}
	// Vanish without Terminate.
	if err := c1.PgConn().Conn().Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the row lock to be released", 5*time.Second, func() bool { return tryLock(c2) == nil })
	idleInTx := func() int {
		var n int
		if err := direct.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitFor(t, "no idle in transaction session", 5*time.Second, func() bool { return idleInTx() == 0 })

	// Vanish while a statement runs: the proxy cancels it.
	c3 := openConn(t, p.URL("carol"), nil)
	done := make(chan error, 1)
	go func() {
		_, err := c3.Exec(ctx, "SELECT pg_sleep(30) /* vanishing */")
		done <- err
	}()
	running := func() int {
		var n int
		if err := direct.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30) /* vanishing */%' AND state = 'active' AND pid <> pg_backend_pid()").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitFor(t, "the statement to run", 5*time.Second, func() bool { return running() == 1 })
	_ = c3.PgConn().Conn().Close()
	<-done
	waitFor(t, "the abandoned statement to stop", 5*time.Second, func() bool { return running() == 0 })
	waitFor(t, "ClientConns to drop to 1 (the second client)", 5*time.Second, func() bool { return p.Server.ClientConns() == 1 })
}

// TestConformanceNoGoroutineLeak: after a proxy that served every kind of
// session is closed, no goroutine of it is left.
func TestConformanceNoGoroutineLeak(t *testing.T) {
	testenv.Shared(t) // the shared cluster's goroutines are not ours
	opts := []goleak.Option{goleak.IgnoreCurrent()}
	var open *pgx.Conn
	t.Run("sessions", func(t *testing.T) {
		p := startProxy(t)
		for _, sc := range conformanceScenarios() {
			switch sc.name {
			case "query/cache_statement", "multi_statement", "copy", "listen_notify", "cancel":
				sc.run(t, p.URL("alice"))
			}
		}
		// A client that vanishes in the middle of a statement.
		c := openConn(t, p.URL("bob"), nil)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = c.Exec(context.Background(), "SELECT pg_sleep(30)")
		}()
		time.Sleep(200 * time.Millisecond)
		_ = c.PgConn().Conn().Close()
		<-done
		// And one still connected when the proxy closes.
		var err error
		open, err = pgx.Connect(ctxT(t, 10*time.Second), p.URL("carol"))
		if err != nil {
			t.Fatal(err)
		}
	})
	if open != nil {
		_ = open.Close(context.Background())
	}
	goleak.VerifyNone(t, opts...)
}
