package wire_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/testenv"
	"github.com/dbalproxy/dbalproxy/wire"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

// txPoolingSuite reports whether the suite runs in transaction pooling
// (DBALPROXY_TEST_POOL_MODE=transaction; see startProxy).
func txPoolingSuite() bool { return os.Getenv("DBALPROXY_TEST_POOL_MODE") == "transaction" }

// withTxPooling runs the proxy in transaction pooling with at most n
// backend connections.
func withTxPooling(n int) proxyOption {
	return func(w *wire.Config, p *pool.Config) {
		w.TransactionPooling = true
		p.MaxConns = n
	}
}

func withTrust() proxyOption {
	return func(w *wire.Config, _ *pool.Config) { w.AuthMethod = wire.AuthTrust }
}

// TestTxConformance runs the conformance scenarios through a proxy in
// transaction pooling: each must give the transcript PostgreSQL gives.
func TestTxConformance(t *testing.T) {
	p := startProxy(t, withTxPooling(2))
	for _, sc := range conformanceScenarios() {
		if sc.name == "listen_notify" {
			// It compares a notification's sender with pg_backend_pid() of
			// an earlier transaction: in transaction pooling that is
			// whichever backend served it (see the README).
			continue
		}
		t.Run(sc.name, func(t *testing.T) {
			direct := sc.run(t, p.DirectDB)
			if t.Failed() {
				t.Fatalf("scenario fails straight against PostgreSQL; transcript:\n%s", direct)
			}
			compareTranscripts(t, direct, sc.run(t, p.URL("alice")))
		})
	}
}

// TestTxPgxStatementCache: many pgx clients with the default statement cache
// share few backend connections over many transactions, with the shipped
// policies: alice's and bob's rewrites of the same text differ, and neither
// ever gets the other's rows.
func TestTxPgxStatementCache(t *testing.T) {
	p := startProxy(t, withTxPooling(3), withPolicy(t, policyEngine(t, "", decision.ModeStrict), nil))
	p.loadDemo(t)
	ctx := ctxT(t, 90*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 16; i++ {
		login := []string{"alice", "bob"}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.Connect(ctx, p.URL(login))
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close(context.Background())
			for j := 0; j < 30; j++ {
				var n int
				if err := conn.QueryRow(ctx, "SELECT count(*) FROM users WHERE id <> $1", "nobody").Scan(&n); err != nil {
					errs <- fmt.Errorf("%s: count: %w", login, err)
					return
				}
				if login == "alice" && n != 1 || login == "bob" && n < 2 {
					errs <- fmt.Errorf("%s sees %d users", login, n)
					return
				}
				var x int
				if err := conn.QueryRow(ctx, "SELECT $1::int + $2::int", j, 1).Scan(&x); err != nil || x != j+1 {
					errs <- fmt.Errorf("%s: sum: %v %d", login, err, x)
					return
				}
				if j%5 == 0 {
					tx, err := conn.Begin(ctx)
					if err != nil {
						errs <- err
						return
					}
					var id string
					if err := tx.QueryRow(ctx, "SELECT id FROM users WHERE id = $1", "u_"+login).Scan(&id); err != nil {
						errs <- fmt.Errorf("%s in tx: %w", login, err)
						return
					}
					if err := tx.Commit(ctx); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := p.Pool.Stats(); st.Open > 3 || st.Dials > 3 {
		t.Fatalf("pool stats %+v: want at most 3 backend connections", st)
	}
}

// TestTxPrismaLike follows Prisma's query engine: named statements s0, s1,
// ... prepared once per client connection and reused over many
// transactions, by many clients on two backend connections.
func TestTxPrismaLike(t *testing.T) {
	p := startProxy(t, withTxPooling(2))
	ctx := ctxT(t, 60*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgconn.Connect(ctx, p.URL("alice"))
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close(context.Background())
			texts := []string{"SELECT $1::int * 2", "SELECT $1::text || 'x'", fmt.Sprintf("SELECT %d + $1::int", i)}
			for k, q := range texts {
				if _, err := conn.Prepare(ctx, fmt.Sprintf("s%d", k), q, nil); err != nil {
					errs <- fmt.Errorf("prepare s%d: %w", k, err)
					return
				}
			}
			for j := 0; j < 40; j++ {
				if j%4 == 0 {
					if err := conn.Exec(ctx, "BEGIN").Close(); err != nil {
						errs <- err
						return
					}
				}
				v := fmt.Sprint(j)
				r := conn.ExecPrepared(ctx, "s0", [][]byte{[]byte(v)}, nil, nil).Read()
				if r.Err != nil || len(r.Rows) != 1 || string(r.Rows[0][0]) != fmt.Sprint(2*j) {
					errs <- fmt.Errorf("s0(%d): %v %q", j, r.Err, r.Rows)
					return
				}
				r = conn.ExecPrepared(ctx, "s2", [][]byte{[]byte(v)}, nil, nil).Read()
				if r.Err != nil || string(r.Rows[0][0]) != fmt.Sprint(i+j) {
					errs <- fmt.Errorf("s2(%d): %v %q", j, r.Err, r.Rows)
					return
				}
				if j%4 == 3 {
					if err := conn.Exec(ctx, "COMMIT").Close(); err != nil {
						errs <- err
						return
					}
				}
			}
			// A second Parse of a name in use is refused, as PostgreSQL
			// refuses it.
			_, err = conn.Prepare(ctx, "s1", "SELECT $1::text || 'x'", nil)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "42P05" {
				errs <- fmt.Errorf("duplicate Parse of s1: %v (PostgreSQL says 42P05 already exists)", err)
				return
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := p.Pool.Stats(); st.Dials > 2 {
		t.Fatalf("pool stats %+v", st)
	}
}

// TestTxForeignStatementName: a client cannot reach a statement the proxy
// prepared on a backend for another client, by protocol or by SQL.
func TestTxForeignStatementName(t *testing.T) {
	p := startProxy(t, withTxPooling(1))
	ctx := ctxT(t, 30*time.Second)
	a, err := pgconn.Connect(ctx, p.URL("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	if _, err := a.Prepare(ctx, "mine", "SELECT 'secret of alice'", nil); err != nil {
		t.Fatal(err)
	}
	if r := a.ExecPrepared(ctx, "mine", nil, nil, nil).Read(); r.Err != nil {
		t.Fatal(r.Err)
	}
	b, err := pgconn.Connect(ctx, p.URL("bob"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	res, err := b.Exec(ctx, "SELECT name FROM pg_prepared_statements WHERE name LIKE 'dbal%'").ReadAll()
	if err != nil || len(res) != 1 || len(res[0].Rows) == 0 {
		t.Fatalf("listing backend statements: %v %v", err, res)
	}
	name := string(res[0].Rows[0][0])
	var pe *pgconn.PgError
	if r := b.ExecPrepared(ctx, name, nil, nil, nil).Read(); !errors.As(r.Err, &pe) || pe.Code != "26000" {
		t.Fatalf("Bind of another client's backend statement: %v %q", r.Err, r.Rows)
	}
	if _, err := b.Exec(ctx, "EXECUTE "+name).ReadAll(); !errors.As(err, &pe) || pe.Code != "26000" {
		t.Fatalf("EXECUTE of another client's backend statement: %v", err)
	}
}

// TestTxNoSettingLeak: a SET, a SET LOCAL, a set_config and startup
// parameters of one client are never seen by another sharing the backend.
func TestTxNoSettingLeak(t *testing.T) {
	p := startProxy(t, withTxPooling(2))
	ctx := ctxT(t, 60*time.Second)
	show := func(c *pgx.Conn, name string) string {
		t.Helper()
		var v string
		if err := c.QueryRow(ctx, "SELECT current_setting('"+name+"')").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	plain, err := pgx.Connect(ctx, p.URL("bob"))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close(context.Background())
	defWorkMem, defPath, defApp := show(plain, "work_mem"), show(plain, "search_path"), show(plain, "application_name")

	// Startup parameters travel with their client, on one backend.
	cfg, err := pgx.ParseConfig(p.URL("carol"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["search_path"] = "carol_schema, public"
	cfg.RuntimeParams["application_name"] = "carols_app"
	carol, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer carol.Close(context.Background())
	for i := 0; i < 5; i++ {
		if got := show(carol, "search_path"); got != "carol_schema, public" {
			t.Fatalf("carol's search_path = %q", got)
		}
		if got := show(carol, "application_name"); got != "carols_app" {
			t.Fatalf("carol's application_name = %q", got)
		}
		if got := show(plain, "search_path"); got != defPath {
			t.Fatalf("carol's search_path leaked: %q", got)
		}
		if got := show(plain, "application_name"); got != defApp {
			t.Fatalf("carol's application_name leaked: %q", got)
		}
	}

	// SET LOCAL and set_config(..., true) end with their transaction.
	tx, err := carol.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SET LOCAL work_mem = '9MB'"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT set_config('work_mem', '11MB', true)"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := show(plain, "work_mem"); got != defWorkMem {
		t.Fatalf("SET LOCAL leaked: %q", got)
	}

	// A session SET pins its client: it keeps it, nobody else sees it.
	setter, err := pgx.Connect(ctx, p.URL("dave"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := setter.Exec(ctx, "SET work_mem = '7MB'"); err != nil {
		t.Fatal(err)
	}
	if _, err := setter.Exec(ctx, "SELECT set_config('statement_timeout', '12345', false)"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if got := show(setter, "work_mem"); got != "7MB" {
			t.Fatalf("setter's own SET lost: %q", got)
		}
		if got := show(plain, "work_mem"); got != defWorkMem {
			t.Fatalf("SET leaked to another client: %q", got)
		}
		if got := show(carol, "statement_timeout"); got != "0" {
			t.Fatalf("set_config leaked to another client: %q", got)
		}
	}
	setter.Close(ctx)
	// Its backend was reset when it left.
	waitFor(t, "the pinned backend to come back", 5*time.Second, func() bool { return p.Pool.Stats().Idle == 2 })
	for i := 0; i < 4; i++ {
		if got := show(plain, "work_mem"); got != defWorkMem {
			t.Fatalf("SET survived its client: %q", got)
		}
	}
}

// TestTxPinnedSessionState: temp tables, advisory locks, LISTEN, WITH HOLD
// cursors and SQL-level PREPARE keep working for their client, which keeps
// its backend; other clients do not see them.
func TestTxPinnedSessionState(t *testing.T) {
	p := startProxy(t, withTxPooling(2))
	ctx := ctxT(t, 60*time.Second)
	for _, step := range [][]string{
		{"CREATE TEMP TABLE scratch (i int)", "INSERT INTO scratch VALUES (1)", "SELECT count(*) FROM scratch"},
		{"SELECT pg_advisory_lock(42)", "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"},
		{"PREPARE q(int) AS SELECT $1 + 1", "EXECUTE q(1)"},
		{"BEGIN", "DECLARE c CURSOR WITH HOLD FOR SELECT 1", "COMMIT", "FETCH c"},
	} {
		c, err := pgconn.Connect(ctx, p.URL("dave"))
		if err != nil {
			t.Fatal(err)
		}
		other, err := pgconn.Connect(ctx, p.URL("bob"))
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range step {
			if _, err := c.Exec(ctx, q).ReadAll(); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			// Another client runs in between, on the other backend.
			if _, err := other.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := other.Exec(ctx, "SELECT * FROM scratch").ReadAll(); err == nil {
			t.Fatal("another client sees a temp table")
		}
		c.Close(ctx)
		other.Close(ctx)
	}
}

// TestTxDeallocateAndDiscard: DEALLOCATE, DEALLOCATE ALL and DISCARD ALL
// from the client behave as PostgreSQL's own, in transaction pooling.
func TestTxDeallocateAndDiscard(t *testing.T) {
	p := startProxy(t, withTxPooling(1))
	ctx := ctxT(t, 30*time.Second)
	run := func(url string) string {
		var tr transcript
		c, err := pgconn.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		prep := func(name string) {
			_, err := c.Prepare(ctx, name, "SELECT 1 AS "+name, nil)
			tr.f("prepare %s: %v", name, errLine(err))
		}
		exec := func(name string) {
			r := c.ExecPrepared(ctx, name, nil, nil, nil).Read()
			tr.f("exec %s: %v %q", name, errLine(r.Err), r.Rows)
		}
		sql := func(q string) {
			_, err := c.Exec(ctx, q).ReadAll()
			tr.f("%s: %v", q, errLine(err))
		}
		prep("a")
		prep("b")
		exec("a")
		sql("DEALLOCATE a")
		exec("a")
		exec("b")
		prep("a")
		exec("a")
		sql("DEALLOCATE ALL")
		exec("a")
		exec("b")
		prep("b")
		exec("b")
		sql("DISCARD ALL")
		exec("b")
		prep("b")
		exec("b")
		return tr.String()
	}
	compareTranscripts(t, run(p.DirectDB), run(p.URL("alice")))
}

// TestTxPipelineError: an error in the middle of a pipeline makes
// PostgreSQL skip to Sync, so statements parsed after it do not exist; the
// proxy's bookkeeping follows, and those parsed before it still work.
func TestTxPipelineError(t *testing.T) {
	p := startProxy(t, withTxPooling(1))
	ctx := ctxT(t, 30*time.Second)
	run := func(url string) string {
		var tr transcript
		c, err := pgconn.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		b := &pgconn.Batch{}
		b.ExecParams("SELECT 1", nil, nil, nil, nil)
		rr := c.ExecBatch(ctx, b)
		_, _ = rr.ReadAll()
		pl := c.StartPipeline(ctx)
		pl.SendPrepare("before", "SELECT 1 AS x", nil)
		pl.SendQueryParams("SELECT 1/0", nil, nil, nil, nil)
		pl.SendPrepare("after", "SELECT 2 AS y", nil)
		_ = pl.Sync()
		for i := 0; i < 4; i++ {
			res, err := pl.GetResults()
			if err != nil {
				tr.f("result %d: error %s", i, errLine(err))
				continue
			}
			switch r := res.(type) {
			case *pgconn.StatementDescription:
				tr.f("result %d: statement %s", i, r.Name)
			case *pgconn.ResultReader:
				_, err := r.Close()
				tr.f("result %d: rows %s", i, errLine(err))
			case *pgconn.PipelineSync:
				tr.f("result %d: sync", i)
			case nil:
				tr.f("result %d: none", i)
			}
		}
		_ = pl.Close()
		for _, name := range []string{"before", "after"} {
			r := c.ExecPrepared(ctx, name, nil, nil, nil).Read()
			tr.f("exec %s: %s %q", name, errLine(r.Err), r.Rows)
		}
		return tr.String()
	}
	direct := run(p.DirectDB)
	proxied := run(p.URL("alice"))
	compareTranscripts(t, direct, proxied)
	if !strings.Contains(proxied, "exec after: pgerror{severity=ERROR/ERROR code=26000") {
		t.Fatalf("the skipped statement exists through the proxy:\n%s", proxied)
	}
}

// TestTxResultTypeChange: DDL that changes a prepared statement's result
// type gives the client PostgreSQL's own error once, as PostgreSQL does;
// after the client prepares again it works, on every backend connection.
func TestTxResultTypeChange(t *testing.T) {
	p := startProxy(t, withTxPooling(2))
	ctx := ctxT(t, 30*time.Second)
	admin, err := pgconn.Connect(ctx, p.DirectDB)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "CREATE TABLE rt (a int); INSERT INTO rt VALUES (1)").ReadAll(); err != nil {
		t.Fatal(err)
	}
	run := func(url string) string {
		var tr transcript
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		q := func() {
			rows, err := c.Query(ctx, "SELECT * FROM rt WHERE a = $1", 1)
			if err == nil {
				var n int
				for rows.Next() {
					n = len(rows.RawValues())
				}
				err = rows.Err()
				tr.f("query: %d columns, %s", n, errLine(err))
				return
			}
			tr.f("query: %s", errLine(err))
		}
		q()
		if _, err := admin.Exec(ctx, "ALTER TABLE rt ADD COLUMN b int").ReadAll(); err != nil {
			t.Fatal(err)
		}
		q()
		q()
		q()
		if _, err := admin.Exec(ctx, "ALTER TABLE rt DROP COLUMN b").ReadAll(); err != nil {
			t.Fatal(err)
		}
		return tr.String()
	}
	direct := run(p.DirectDB)
	// Warm both backends with the statement, then change it.
	var conns []*pgx.Conn
	for i := 0; i < 2; i++ {
		c, err := pgx.Connect(ctx, p.URL("alice"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		conns = append(conns, c)
	}
	proxied := run(p.URL("alice"))
	compareTranscripts(t, direct, proxied)
	// A client that prepares after the change never sees the error.
	if _, err := admin.Exec(ctx, "ALTER TABLE rt ADD COLUMN c int").ReadAll(); err != nil {
		t.Fatal(err)
	}
	fresh, err := pgx.Connect(ctx, p.URL("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close(context.Background())
	for i := 0; i < 6; i++ {
		if _, err := fresh.Exec(ctx, "SELECT * FROM rt WHERE a = $1", 1); err != nil && i > 0 {
			t.Fatalf("a statement prepared after the change failed: %v", err)
		}
	}
}

// TestTxThousandClients: 1,000 client connections, open at once, served by
// 20 backend connections.
func TestTxThousandClients(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	p := startProxy(t, withTxPooling(20), withTrust())
	ctx := ctxT(t, 90*time.Second)
	const clients = 1000
	conns := make([]*pgconn.PgConn, clients)
	var wg sync.WaitGroup
	var failed atomic.Int64
	sem := make(chan struct{}, 50)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := pgconn.Connect(ctx, p.URL("alice"))
			if err != nil {
				t.Error(err)
				failed.Add(1)
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d connections failed", failed.Load())
	}
	if n := p.Server.ClientConns(); n != clients {
		t.Fatalf("%d client connections open, want %d", n, clients)
	}
	start := time.Now()
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 3; j++ {
				want := fmt.Sprint(i*10 + j)
				r := c.ExecParams(ctx, "SELECT $1::int", [][]byte{[]byte(want)}, nil, nil, nil).Read()
				if r.Err != nil || len(r.Rows) != 1 || string(r.Rows[0][0]) != want {
					t.Errorf("client %d: %v %q", i, r.Err, r.Rows)
					return
				}
			}
			if _, err := c.Exec(ctx, "BEGIN; SELECT pg_sleep(0.001); COMMIT").ReadAll(); err != nil {
				t.Errorf("client %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	t.Logf("3000 statements and 1000 transactions from 1000 clients in %s", time.Since(start).Round(time.Millisecond))
	if st := p.Pool.Stats(); st.Open > 20 {
		t.Fatalf("%d backend connections open, want at most 20", st.Open)
	}
	for _, c := range conns {
		c.Close(ctx)
	}
}

// TestTxCancelStress: policy timeouts and client cancels fire while
// transactions end and backends change hands; no statement of another
// client is ever cancelled.
func TestTxCancelStress(t *testing.T) {
	dir := t.TempDir()
	rego := `package dbal

decision := {"allow": true, "reason": "slow", "timeout_ms": 60} if contains(input.statement.text, "slow")
decision := {"allow": true, "reason": "fast", "timeout_ms": 5000} if not contains(input.statement.text, "slow")
`
	if err := os.WriteFile(filepath.Join(dir, "t.rego"), []byte(rego), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, withTxPooling(2), withPolicy(t, policyEngine(t, dir, decision.ModeStrict), nil))
	ctx := ctxT(t, 60*time.Second)
	var wg sync.WaitGroup
	var innocentCancelled, slowCancelled atomic.Int64
	deadline := time.Now().Add(6 * time.Second)
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := pgconn.Connect(ctx, p.URL("alice"))
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close(context.Background())
			for j := 0; time.Now().Before(deadline); j++ {
				switch {
				case i%3 == 0:
					// Times out by policy (60 ms) as its transaction ends.
					_, err := c.Exec(ctx, "SELECT pg_sleep(0.2) AS slow").ReadAll()
					if err != nil {
						slowCancelled.Add(1)
					}
				case i%3 == 1:
					// Cancels itself at random moments, often just after the
					// statement ended.
					qctx, cancel := context.WithTimeout(ctx, time.Duration(1+j%7)*time.Millisecond)
					_, _ = c.Exec(qctx, "SELECT pg_sleep(0.005)").ReadAll()
					cancel()
					if c.IsClosed() {
						c, err = pgconn.Connect(ctx, p.URL("alice"))
						if err != nil {
							t.Error(err)
							return
						}
					}
				default:
					// Innocent: short statements that must never be cancelled.
					_, err := c.Exec(ctx, "SELECT pg_sleep(0.003)").ReadAll()
					var pe *pgconn.PgError
					if errors.As(err, &pe) && pe.Code == "57014" {
						innocentCancelled.Add(1)
					} else if err != nil {
						t.Errorf("innocent statement: %v", err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if n := innocentCancelled.Load(); n > 0 {
		t.Fatalf("%d statements of other clients were cancelled", n)
	}
	if slowCancelled.Load() == 0 {
		t.Fatal("no policy timeout fired")
	}
}

// TestTxBackendRestart: the database restarts in the middle of a run.
// Clients between transactions do not notice; clients in one get the
// server's FATAL; new work succeeds once it is back.
func TestTxBackendRestart(t *testing.T) {
	c, err := testenvStart(t)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxyOn(t, c, withTxPooling(3))
	ctx := ctxT(t, 60*time.Second)
	idle, err := pgconn.Connect(ctx, p.URL("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close(context.Background())
	if _, err := idle.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
		t.Fatal(err)
	}
	inTx, err := pgconn.Connect(ctx, p.URL("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer inTx.Close(context.Background())
	if _, err := inTx.Exec(ctx, "BEGIN; SELECT 1").ReadAll(); err != nil {
		t.Fatal(err)
	}
	// A load runs through the restart: each worker's statements fail only
	// with the server's shutdown codes or a lost connection while it is
	// down, and succeed again afterwards.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var okAfter atomic.Int64
	restarted := make(chan struct{})
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var conn *pgconn.PgConn
			defer func() {
				if conn != nil {
					conn.Close(context.Background())
				}
			}()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if conn == nil || conn.IsClosed() {
					var err error
					if conn, err = pgconn.Connect(ctx, p.URL("bob")); err != nil {
						conn = nil
						time.Sleep(20 * time.Millisecond)
						continue
					}
				}
				_, err := conn.Exec(ctx, "SELECT 1").ReadAll()
				var pe *pgconn.PgError
				switch {
				case err == nil:
					select {
					case <-restarted:
						okAfter.Add(1)
					default:
					}
				case errors.As(err, &pe) && pe.Code != "57P01" && pe.Code != "08006" && pe.Code != "57P03":
					t.Errorf("worker: unexpected error %v", err)
					return
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	if err := c.Restart(ctx, nil); err != nil {
		t.Fatal(err)
	}
	close(restarted)
	// The idle client's next statement runs on a new backend.
	for i := 0; i < 3; i++ {
		if _, err := idle.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
			t.Fatalf("idle client noticed the restart: %v", err)
		}
	}
	_, err = inTx.Exec(ctx, "SELECT 1").ReadAll()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57P01" {
		t.Fatalf("client in a transaction: %v, want the server's own FATAL 57P01", err)
	}
	fresh, err := pgconn.Connect(ctx, p.URL("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close(context.Background())
	if _, err := fresh.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the load to run again after the restart", 10*time.Second, func() bool { return okAfter.Load() > 30 })
	close(stop)
	wg.Wait()
}

// testenvStart starts a cluster of the test's own, which it may restart.
func testenvStart(t *testing.T) (*testenv.Cluster, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := testenv.Start(ctx, testenv.Options{})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = c.Stop() })
	return c, nil
}

// startProxyOn is startProxy in front of a new database of cluster c.
func startProxyOn(t *testing.T, c *testenv.Cluster, opts ...proxyOption) *proxy {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	db := "txrestart"
	if err := c.CreateDatabase(ctx, db); err != nil {
		t.Fatal(err)
	}
	logins := wire.Logins{}
	for name, role := range testLogins {
		sc, err := wire.NewSCRAMCredentials(name)
		if err != nil {
			t.Fatal(err)
		}
		logins[name] = &wire.Login{Name: name, Role: role, Claims: map[string]any{"user_id": "u_" + name}, SCRAM: sc}
	}
	pcfg := pool.Config{ConnString: c.AppURL(db), MaxConns: 20, AcquireTimeout: 5 * time.Second}
	wcfg := wire.Config{Logins: logins, DefaultDatabase: db, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)}
	for _, o := range opts {
		o(&wcfg, &pcfg)
	}
	pl, err := pool.New(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	wcfg.Backends = pl
	srv, err := wire.NewServer(wcfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
		pl.Close()
	})
	return &proxy{Addr: ln.Addr().String(), DB: db, DirectDB: c.AppURL(db), Server: srv, Pool: pl, Cluster: c}
}

// TestTxMessagesAfterAnError: a client that reads an error before it sends
// the rest of its batch: the backend skips those messages too, and the
// proxy's bookkeeping of requests and statements follows.
func TestTxMessagesAfterAnError(t *testing.T) {
	p := startProxy(t, withTxPooling(1))
	ctx := ctxT(t, 30*time.Second)
	run := func(url string) string {
		var tr transcript
		c, err := pgconn.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		hc, err := c.Hijack()
		if err != nil {
			t.Fatal(err)
		}
		defer hc.Conn.Close()
		fe := hc.Frontend
		_ = hc.Conn.SetDeadline(time.Now().Add(10 * time.Second))
		readUntil := func(stop func(pgproto3.BackendMessage) bool) {
			for {
				m, err := fe.Receive()
				if err != nil {
					tr.f("receive: %v", err)
					return
				}
				switch m := m.(type) {
				case *pgproto3.ErrorResponse:
					tr.f("error %s %s", m.Code, m.Message)
				case *pgproto3.DataRow:
					tr.f("row %q", m.Values)
				case *pgproto3.ReadyForQuery:
					tr.f("ready %c", m.TxStatus)
				default:
					tr.f("%T", m)
				}
				if stop(m) {
					return
				}
			}
		}
		isErr := func(m pgproto3.BackendMessage) bool { _, ok := m.(*pgproto3.ErrorResponse); return ok }
		isReady := func(m pgproto3.BackendMessage) bool { _, ok := m.(*pgproto3.ReadyForQuery); return ok }
		fe.Send(&pgproto3.Parse{Name: "early", Query: "SELECT 1"})
		fe.Send(&pgproto3.Parse{Query: "SELECT 1/0"})
		fe.Send(&pgproto3.Bind{})
		fe.Send(&pgproto3.Execute{})
		fe.Send(&pgproto3.Flush{})
		_ = fe.Flush()
		readUntil(isErr)
		fe.Send(&pgproto3.Parse{Name: "late", Query: "SELECT 3"})
		fe.Send(&pgproto3.Bind{PreparedStatement: "early"})
		fe.Send(&pgproto3.Execute{})
		fe.Send(&pgproto3.Sync{})
		_ = fe.Flush()
		readUntil(isReady)
		for _, name := range []string{"early", "late"} {
			fe.Send(&pgproto3.Bind{PreparedStatement: name})
			fe.Send(&pgproto3.Execute{})
			fe.Send(&pgproto3.Sync{})
			_ = fe.Flush()
			readUntil(isReady)
		}
		fe.Send(&pgproto3.Query{String: "SELECT 4"})
		_ = fe.Flush()
		readUntil(isReady)
		return tr.String()
	}
	direct := run(p.DirectDB)
	proxied := run(p.URL("alice"))
	compareTranscripts(t, direct, proxied)
	if !strings.Contains(proxied, "row [\"4\"]") {
		t.Fatalf("the session is out of step after skipped messages:\n%s", proxied)
	}
}

// TestTxNoGoroutineLeak: leases, pumps and pinned sessions leave no
// goroutine behind once the proxy is closed.
func TestTxNoGoroutineLeak(t *testing.T) {
	testenv.Shared(t)
	opts := []goleak.Option{goleak.IgnoreCurrent()}
	var open *pgx.Conn
	t.Run("sessions", func(t *testing.T) {
		// The scenarios' connections stay open until the subtest ends, and
		// some of them pin their backend.
		p := startProxy(t, withTxPooling(10))
		for _, sc := range conformanceScenarios() {
			switch sc.name {
			case "query/cache_statement", "multi_statement", "copy", "listen_notify", "cancel":
				sc.run(t, p.URL("alice"))
			}
		}
		c := openConn(t, p.URL("bob"), nil)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = c.Exec(context.Background(), "SELECT pg_sleep(30)")
		}()
		time.Sleep(200 * time.Millisecond)
		_ = c.PgConn().Conn().Close()
		<-done
		var err error
		open, err = pgx.Connect(ctxT(t, 10*time.Second), p.URL("carol"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := open.Exec(ctxT(t, 10*time.Second), "BEGIN"); err != nil {
			t.Fatal(err)
		}
	})
	if open != nil {
		_ = open.Close(context.Background())
	}
	goleak.VerifyNone(t, opts...)
}

// TestTxDescribeAlone: a Describe of a statement on its own, in a later
// transaction on a backend that has never seen the statement.
func TestTxDescribeAlone(t *testing.T) {
	p := startProxy(t, withTxPooling(2))
	ctx := ctxT(t, 30*time.Second)
	a, err := pgconn.Connect(ctx, p.URL("alice"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Prepare(ctx, "s1", "SELECT $1::int AS n, 'x'::text AS t", nil); err != nil {
		t.Fatal(err)
	}
	// Another client now holds the backend that prepared s1.
	b, err := pgconn.Connect(ctx, p.URL("bob"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	if _, err := b.Exec(ctx, "BEGIN").ReadAll(); err != nil {
		t.Fatal(err)
	}
	hc, err := a.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Conn.Close()
	_ = hc.Conn.SetDeadline(time.Now().Add(10 * time.Second))
	fe := hc.Frontend
	var got []string
	describe := func(name string) {
		fe.Send(&pgproto3.Describe{ObjectType: 'S', Name: name})
		fe.Send(&pgproto3.Sync{})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := fe.Receive()
			if err != nil {
				t.Fatal(err)
			}
			switch m := m.(type) {
			case *pgproto3.ParameterDescription:
				got = append(got, fmt.Sprint("params ", m.ParameterOIDs))
			case *pgproto3.RowDescription:
				var names []string
				for _, f := range m.Fields {
					names = append(names, string(f.Name))
				}
				got = append(got, fmt.Sprint("row ", names))
			case *pgproto3.ErrorResponse:
				got = append(got, "error "+m.Code)
			case *pgproto3.ReadyForQuery:
				return
			default:
				got = append(got, fmt.Sprintf("%T", m))
			}
		}
	}
	describe("s1")
	describe("nope")
	want := "params [23]|row [n t]|error 26000"
	if strings.Join(got, "|") != want {
		t.Fatalf("got %q, want %q", strings.Join(got, "|"), want)
	}
	if st := p.Pool.Stats(); st.Open != 2 {
		t.Fatalf("the Describe did not run on a second backend: %+v", st)
	}
}

// TestTxBackendStatementBound: past the bound of statements kept on one
// backend connection the least recently used is closed, and prepared again
// when a client uses it.
func TestTxBackendStatementBound(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	p := startProxy(t, withTxPooling(1))
	ctx := ctxT(t, 60*time.Second)
	c, err := pgconn.Connect(ctx, p.URL("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	const n = 1100
	for i := 0; i < n; i++ {
		if _, err := c.Prepare(ctx, fmt.Sprintf("q%d", i), fmt.Sprintf("SELECT %d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	res, err := c.Exec(ctx, "SELECT count(*) FROM pg_prepared_statements").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := string(res[0].Rows[0][0]); got != "1000" {
		t.Fatalf("%s statements prepared on the backend, want the bound of 1000", got)
	}
	for _, i := range []int{0, 1, n - 1} {
		r := c.ExecPrepared(ctx, fmt.Sprintf("q%d", i), nil, nil, nil).Read()
		if r.Err != nil || string(r.Rows[0][0]) != fmt.Sprint(i) {
			t.Fatalf("q%d: %v %q", i, r.Err, r.Rows)
		}
	}
}

// TestTxDisconnectInTransaction: a client that leaves inside a transaction
// has it rolled back; its backend is kept (no reset, no new connection).
func TestTxDisconnectInTransaction(t *testing.T) {
	p := startProxy(t, withTxPooling(1))
	ctx := ctxT(t, 30*time.Second)
	a, err := pgconn.Connect(ctx, p.URL("alice"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Exec(ctx, "CREATE TABLE dt (i int)").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Exec(ctx, "BEGIN; INSERT INTO dt VALUES (1); SELECT pg_advisory_xact_lock(7)").ReadAll(); err != nil {
		t.Fatal(err)
	}
	a.Close(ctx)
	b, err := pgconn.Connect(ctx, p.URL("bob"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	res, err := b.Exec(ctx, "SELECT count(*) FROM dt; SELECT pg_try_advisory_xact_lock(7)").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if string(res[0].Rows[0][0]) != "0" || string(res[1].Rows[0][0]) != "t" {
		t.Fatalf("the transaction outlived its client: %q %q", res[0].Rows, res[1].Rows)
	}
	if st := p.Pool.Stats(); st.Dials != 1 || st.Resets != 0 || st.Destroyed != 0 {
		t.Fatalf("pool stats %+v: want the one backend kept without a reset", st)
	}
}

// TestTxResultTypeChangeTwoClients: two clients prepared the same statement
// before DDL changed its result type. Each gets PostgreSQL's error until it
// prepares the statement again, even when the other's error already made
// the proxy prepare fresh copies: rows of the new shape never reach a
// client that holds the old description.
func TestTxResultTypeChangeTwoClients(t *testing.T) {
	p := startProxy(t, withTxPooling(2))
	ctx := ctxT(t, 30*time.Second)
	admin, err := pgconn.Connect(ctx, p.DirectDB)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	run := func(url string) string {
		var tr transcript
		if _, err := admin.Exec(ctx, "DROP TABLE IF EXISTS rt2; CREATE TABLE rt2 (a int); INSERT INTO rt2 VALUES (1)").ReadAll(); err != nil {
			t.Fatal(err)
		}
		var cs []*pgconn.PgConn
		for i := 0; i < 2; i++ {
			c, err := pgconn.Connect(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(context.Background())
			if _, err := c.Prepare(ctx, "s", "SELECT * FROM rt2", nil); err != nil {
				t.Fatal(err)
			}
			cs = append(cs, c)
		}
		if _, err := admin.Exec(ctx, "ALTER TABLE rt2 ADD COLUMN b int").ReadAll(); err != nil {
			t.Fatal(err)
		}
		exec := func(i int) {
			r := cs[i].ExecPrepared(ctx, "s", nil, nil, nil).Read()
			code := "ok"
			var pe *pgconn.PgError
			if errors.As(r.Err, &pe) {
				code = pe.Code + " " + pe.Message
			} else if r.Err != nil {
				code = r.Err.Error()
			}
			width := 0
			if len(r.Rows) > 0 {
				width = len(r.Rows[0])
			}
			tr.f("client %d: %s, %d columns", i, code, width)
		}
		exec(0)
		exec(1)
		exec(0)
		for i := 0; i < 2; i++ {
			if err := cs[i].Deallocate(ctx, "s"); err != nil {
				t.Fatal(err)
			}
			if _, err := cs[i].Prepare(ctx, "s", "SELECT * FROM rt2", nil); err != nil {
				t.Fatal(err)
			}
		}
		exec(0)
		exec(1)
		return tr.String()
	}
	compareTranscripts(t, run(p.DirectDB), run(p.URL("alice")))
}

// TestTxAcquireTimeout: a client that starts a transaction while every
// backend is held gets FATAL 53300 after pool.acquire_timeout; the holder
// is not disturbed.
func TestTxAcquireTimeout(t *testing.T) {
	p := startProxy(t, withTxPooling(1), func(_ *wire.Config, pc *pool.Config) { pc.AcquireTimeout = 300 * time.Millisecond })
	ctx := ctxT(t, 30*time.Second)
	a, err := pgconn.Connect(ctx, p.URL("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	b, err := pgconn.Connect(ctx, p.URL("bob"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	if _, err := a.Exec(ctx, "BEGIN").ReadAll(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = b.Exec(ctx, "SELECT 1").ReadAll()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "53300" || pe.Severity != "FATAL" {
		t.Fatalf("waiting client: %v, want FATAL 53300", err)
	}
	if el := time.Since(start); el < 250*time.Millisecond || el > 3*time.Second {
		t.Fatalf("refused after %s", el)
	}
	if _, err := a.Exec(ctx, "SELECT 1; COMMIT").ReadAll(); err != nil {
		t.Fatalf("the holder: %v", err)
	}
}

// TestTxPrincipalsDoNotShareStatements: the same client text prepared by
// two principals whose filters differ becomes two backend statements, each
// with its own rewrite.
func TestTxPrincipalsDoNotShareStatements(t *testing.T) {
	p := startProxy(t, withTxPooling(1), withPolicy(t, policyEngine(t, "", decision.ModeStrict), nil))
	p.loadDemo(t)
	ctx := ctxT(t, 30*time.Second)
	counts := map[string]string{}
	for _, login := range []string{"alice", "bob"} {
		c, err := pgconn.Connect(ctx, p.URL(login))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Prepare(ctx, "s0", "SELECT count(*) FROM users WHERE id <> $1", nil); err != nil {
			t.Fatal(err)
		}
		r := c.ExecPrepared(ctx, "s0", [][]byte{[]byte("nobody")}, nil, nil).Read()
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		counts[login] = string(r.Rows[0][0])
		c.Close(ctx)
	}
	if counts["alice"] != "1" || counts["bob"] == "1" {
		t.Fatalf("counts %v: alice must see only her own row, bob all", counts)
	}
	admin, err := pgconn.Connect(ctx, p.URL("dave"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	res, err := admin.Exec(ctx, "SELECT statement FROM pg_prepared_statements WHERE name LIKE 'dbal_%' AND statement LIKE '%count(*)%'").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(res[0].Rows); n != 2 {
		t.Fatalf("%d backend statements for the two principals' text, want 2: %q", n, res[0].Rows)
	}
}

// TestTxLargeBind: a Bind larger than the read buffer is renamed whole.
func TestTxLargeBind(t *testing.T) {
	p := startProxy(t, withTxPooling(1))
	ctx := ctxT(t, 30*time.Second)
	c, err := pgx.Connect(ctx, p.URL("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	big := strings.Repeat("x", 200_000)
	for i := 0; i < 3; i++ {
		var n int
		if err := c.QueryRow(ctx, "SELECT length($1::text) + $2::int", big, i).Scan(&n); err != nil || n != len(big)+i {
			t.Fatalf("large Bind: %d %v", n, err)
		}
	}
}

// TestTxDeniedStatementPrefix: statements that run before a denied one in
// the same query string count for pinning: a session advisory lock taken
// there stays with its client.
func TestTxDeniedStatementPrefix(t *testing.T) {
	// admin may take session advisory locks here.
	dir := shippedPoliciesWith(t, `"admin": {"pg_catalog.pg_advisory_lock"},`)
	p := startProxy(t, withTxPooling(2), withPolicy(t, policyEngine(t, dir, decision.ModeStrict), nil))
	p.loadDemo(t)
	ctx := ctxT(t, 30*time.Second)
	a, err := pgconn.Connect(ctx, p.URL("bob"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	_, err = a.Exec(ctx, "SELECT pg_advisory_lock(99); DELETE FROM packages").ReadAll()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" {
		t.Fatalf("denied statement: %v", err)
	}
	// The lock is still held by a's backend, which a keeps.
	res, err := a.Exec(ctx, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 99 AND pid = pg_backend_pid()").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := string(res[0].Rows[0][0]); got != "1" {
		t.Fatalf("the client lost its advisory lock's backend: %s", got)
	}
	b, err := pgconn.Connect(ctx, p.URL("bob"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	for i := 0; i < 3; i++ {
		res, err := b.Exec(ctx, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 99 AND pid = pg_backend_pid()").ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if got := string(res[0].Rows[0][0]); got != "0" {
			t.Fatal("another client got the backend holding the lock")
		}
	}
}
