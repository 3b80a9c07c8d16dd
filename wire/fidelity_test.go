package wire_test

// Fidelity: what a client sees through the proxy is what PostgreSQL would
// show (issue 12).

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/testenv"
	"github.com/dbalproxy/dbalproxy/wire"
	"github.com/jackc/pgx/v5"
)

// TestSyntaxErrorFields checks that the proxy's own syntax error carries
// PostgreSQL's fields: its message without a made-up suffix, the Position
// (so psql shows LINE 1 and a caret), and no source location of the DO
// block that raised it; the session goes on as PostgreSQL's would.
func TestSyntaxErrorFields(t *testing.T) {
	t.Parallel()
	p, _, _ := demoProxy(t, decision.ModeStrict)
	conn := connect(t, p.URL("carol"))
	ctx := ctxT(t, 20*time.Second)
	_, err := conn.Exec(ctx, "SELECT 1; SELEC 1")
	pe, _ := wantProxyError(t, err, "42601")
	if pe.Message != `syntax error at or near "SELEC"` || pe.Position != 11 {
		t.Errorf("got %q at %d, want PostgreSQL's message at position 11", pe.Message, pe.Position)
	}
	// Direct PostgreSQL gives the same message and position.
	direct := connect(t, p.DirectDB)
	_, derr := direct.Exec(ctx, "SELECT 1; SELEC 1")
	if de := asPgErr(derr); de == nil || de.Message != pe.Message || de.Position != pe.Position {
		t.Errorf("direct PostgreSQL: %v", derr)
	}
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("after the syntax error: %v", err)
	}

	_, stderr, _ := runClient(t, p, p.proxyTarget("carol"), t.TempDir(), "psql", "-X", "-c", "select 1 frm x")
	for _, want := range []string{`ERROR:  syntax error at or near "x"`, "LINE 1: select 1 frm x", "                     ^"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("psql's output lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "at character") {
		t.Errorf("psql's output has the old suffix:\n%s", stderr)
	}
}

// TestBackendPID checks that in session pooling the process id a client
// gets in BackendKeyData is its backend's: pg_backend_pid() agrees, its
// own notifications name it as sender, pg_terminate_backend of that pid
// from elsewhere ends it, and a cancel with the key still goes through the
// proxy (the secret is the proxy's own).
func TestBackendPID(t *testing.T) {
	if txPoolingSuite() {
		t.Skip("transaction pooling hands out the proxy's own pid (see the README)")
	}
	t.Parallel()
	p := startProxy(t)
	ctx := ctxT(t, 30*time.Second)
	a := openConn(t, p.URL("dave"), nil)
	var pid uint32
	if err := a.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if got := a.PgConn().PID(); got != pid {
		t.Fatalf("BackendKeyData pid %d, pg_backend_pid() %d", got, pid)
	}
	mustExec(t, ctx, a, "LISTEN fidelity_self")
	mustExec(t, ctx, a, "NOTIFY fidelity_self, 'x'")
	n, err := a.WaitForNotification(ctx)
	if err != nil || n.PID != pid {
		t.Fatalf("own notification: %+v %v, want sender %d", n, err, pid)
	}
	// The secret is not the backend's: a cancel sent straight to the
	// server with the client's key does nothing.
	direct := openConn(t, p.DirectDB, nil)
	done := make(chan error, 1)
	go func() { _, err := a.Exec(ctx, "SELECT pg_sleep(2)"); done <- err }()
	time.Sleep(300 * time.Millisecond)
	sendCancel(t, net.JoinHostPort(p.Cluster.Host(), fmt.Sprint(p.Cluster.Port())), a.PgConn().PID(), a.PgConn().SecretKey())
	time.Sleep(200 * time.Millisecond)
	if err := a.PgConn().CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; pgCode(err) != "57014" {
		t.Fatalf("cancel through the proxy: %v, want 57014", err)
	}
	var ok bool
	if err := direct.QueryRow(ctx, "SELECT pg_terminate_backend($1)", a.PgConn().PID()).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend(%d): %v %v", a.PgConn().PID(), ok, err)
	}
	waitFor(t, "the terminated session's next statement to fail", 5*time.Second, func() bool {
		_, err := a.Exec(ctx, "SELECT 1")
		return err != nil
	})
}

// TestFastPathFunctionCall checks that psql's \lo_import and \lo_export,
// which libpq runs as fast-path FunctionCalls (lo_creat, lo_open, lowrite,
// loread, lo_close), are decided like the same calls written in SQL: a
// login whose policy allows the functions gets them through, with audit
// records naming them; one whose policy does not gets 42501 with a
// decision id, and its session goes on.
func TestFastPathFunctionCall(t *testing.T) {
	t.Parallel()
	p, sink, _ := demoProxy(t, decision.ModeStrict)
	dir := t.TempDir()
	payload := strings.Repeat("large object payload ☃\n", 5000)
	if err := os.WriteFile(filepath.Join(dir, "in.txt"), []byte(payload), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := runClient(t, p, p.proxyTarget("dave"), dir, "psql", "-X", "-v", "ON_ERROR_STOP=1", "-At",
		"-c", `\lo_import in.txt`, "-c", `\lo_export :LASTOID out.txt`)
	if err != nil {
		t.Fatalf("psql as supergod: %v\n%s%s", err, out, stderr)
	}
	got, err := os.ReadFile(filepath.Join(dir, "out.txt"))
	if err != nil || string(got) != payload {
		t.Fatalf("the exported large object differs from the imported file (%d bytes, %v)", len(got), err)
	}
	seen := map[string]bool{}
	for _, r := range sink.Records() {
		if r.Command == "FUNCTION CALL" && r.Decision == "allow" && r.Success && r.User == "dave" {
			for _, f := range r.Functions {
				seen[f] = true
			}
		}
	}
	for _, f := range []string{"pg_catalog.lo_creat", "pg_catalog.lo_open", "pg_catalog.lowrite", "pg_catalog.loread", "pg_catalog.lo_close"} {
		if !seen[f] {
			t.Errorf("no audit record of an allowed fast-path call of %s (saw %v)", f, seen)
		}
	}

	// god may not call lo_creat (volatile, not on the reviewed list).
	out, stderr, err = runClient(t, p, p.proxyTarget("carol"), dir, "psql", "-X", "-At", "-v", "VERBOSITY=verbose",
		"-c", `\lo_import in.txt`, "-c", "SELECT 'still here'")
	if err == nil && !strings.Contains(stderr, "42501") {
		t.Fatalf("psql as god: want a denial, got\n%s%s", out, stderr)
	}
	if !strings.Contains(stderr, "ERROR:  42501") || !decisionIDRe.MatchString(stderr) || !strings.Contains(stderr, "lo_") {
		t.Errorf("psql as god: want 42501 naming the function with a decision id, got\n%s", stderr)
	}
	if !strings.Contains(out, "still here") {
		t.Errorf("the session did not go on after the denial:\n%s%s", out, stderr)
	}
	denied := false
	for _, r := range sink.Records() {
		if r.Command == "FUNCTION CALL" && r.Decision == "deny" && r.User == "carol" && r.DecisionID != "" {
			denied = true
		}
	}
	if !denied {
		t.Error("no audit record of the denied fast-path call")
	}
}

// TestCatalogAwareWrites checks INSERTs into a checked table (users: an
// admin may write only user and admin rows) that the proxy completes from
// the catalog: without a column list (the columns come from the catalog,
// as many as the source gives), and leaving the checked column to its
// default (the default is evaluated and checked). A schema change through
// the proxy is seen by the next statement.
func TestCatalogAwareWrites(t *testing.T) {
	t.Parallel()
	p, _, db := demoProxy(t, decision.ModeStrict)
	ctx := ctxT(t, 30*time.Second)
	bob := connect(t, p.URL("bob"))   // admin
	dave := connect(t, p.URL("dave")) // supergod
	count := func(where string) int {
		var n int
		if err := db.QueryRow(ctx, "SELECT count(*) FROM users WHERE "+where).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := count("true")

	// No column list: the source's * is the table's own columns.
	if tag, err := bob.Exec(ctx, "INSERT INTO users SELECT * FROM users WHERE false"); err != nil || tag.String() != "INSERT 0 0" {
		t.Fatalf("INSERT ... SELECT * without a column list: %v %v", tag, err)
	}
	if _, err := bob.Exec(ctx, `INSERT INTO users SELECT id || '_c', username || '_c', 'c_' || email, role FROM users WHERE role = 'user'`); err != nil {
		t.Fatalf("INSERT ... SELECT of four columns without a column list: %v", err)
	}
	if n := count("id LIKE '%\\_c' AND role = 'user'"); n == 0 {
		t.Fatal("the copied user rows are not there")
	}
	_, err := bob.Exec(ctx, `INSERT INTO users VALUES ('cw1', 'cw1', 'cw1@example.com', 'god')`)
	wantDenied(t, err)
	if _, err := bob.Exec(ctx, `INSERT INTO users VALUES ('cw2', 'cw2', 'cw2@example.com', 'admin')`); err != nil {
		t.Fatalf("INSERT VALUES of an admin row without a column list: %v", err)
	}
	// Only as many columns as the source gives: created_at keeps its default.
	if n := count("id = 'cw2' AND created_at > now() - interval '1 hour'"); n != 1 {
		t.Fatalf("the row without a column list: %d rows with a default created_at", n)
	}

	// The checked column left to its default: none yet (NULL fails the
	// check, as with row-level security's WITH CHECK).
	_, err = bob.Exec(ctx, `INSERT INTO users (id, username, email) VALUES ('cw3', 'cw3', 'cw3@example.com')`)
	wantDenied(t, err)
	// A default set through the proxy is seen at once.
	if _, err := dave.Exec(ctx, `ALTER TABLE users ALTER COLUMN role SET DEFAULT 'user'`); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Exec(ctx, `INSERT INTO users (id, username, email) VALUES ('cw3', 'cw3', 'cw3@example.com')`); err != nil {
		t.Fatalf("INSERT leaving role to its default 'user': %v", err)
	}
	if n := count("id = 'cw3' AND role = 'user'"); n != 1 {
		t.Fatalf("the row with the default role: %d", n)
	}
	// In a transaction, the change counts once it commits.
	tx, err := dave.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `ALTER TABLE users ALTER COLUMN role SET DEFAULT 'god'`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = bob.Exec(ctx, `INSERT INTO users (id, username, email) VALUES ('cw4', 'cw4', 'cw4@example.com')`)
	wantDenied(t, err)
	_, err = bob.Exec(ctx, `INSERT INTO users DEFAULT VALUES`)
	wantDenied(t, err)
	if n := count("role = 'god' AND id LIKE 'cw%'"); n != 0 {
		t.Fatalf("an admin wrote %d god rows", n)
	}
	// A source whose columns the proxy cannot count is still refused.
	_, err = bob.Exec(ctx, `INSERT INTO users SELECT * FROM (SELECT * FROM users) s WHERE false`)
	wantDenied(t, err)
	if n := count("true"); n <= before {
		t.Fatalf("rows: %d, before %d", n, before)
	}
}

// TestCatalogAwareWritesVolatileDefault checks that a default the proxy
// adds to a checked INSERT runs once a row, as PostgreSQL's would: a
// sequence advances by the number of rows.
func TestCatalogAwareWritesVolatileDefault(t *testing.T) {
	t.Parallel()
	p, _, db := demoProxy(t, decision.ModeStrict)
	ctx := ctxT(t, 30*time.Second)
	dave := connect(t, p.URL("dave"))
	bob := connect(t, p.URL("bob"))
	// A default that is a sequence's next value, on the checked column.
	for _, sql := range []string{
		`CREATE SEQUENCE role_seq`,
		`ALTER TABLE users ALTER COLUMN role SET DEFAULT CASE WHEN nextval('role_seq') > 0 THEN 'user' END`,
	} {
		if _, err := dave.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := bob.Exec(ctx, `INSERT INTO users (id, username, email) VALUES ('v1', 'v1', 'v1@x'), ('v2', 'v2', 'v2@x'), ('v3', 'v3', 'v3@x')`); err != nil {
		t.Fatalf("INSERT with a volatile default on the checked column: %v", err)
	}
	var last int
	if err := db.QueryRow(ctx, "SELECT last_value FROM role_seq").Scan(&last); err != nil || last != 3 {
		t.Fatalf("the sequence is at %d (%v), want 3: the default ran more than once a row", last, err)
	}
}

// TestPerLoginBackendRole checks a login mapped to its own backend role:
// its sessions run as that role (current_user, session_user), so the
// database's own grants and row-level security apply as well, while a login
// on the shared pool runs as the proxy's role; the client is told its
// login as session_authorization either way.
func TestPerLoginBackendRole(t *testing.T) {
	t.Parallel()
	c := testenv.Shared(t)
	role := fmt.Sprintf("fid_role_%d", time.Now().UnixNano()%1e9)
	var own *pool.Pool
	p := startProxy(t, func(w *wire.Config, pc *pool.Config) {
		var err error
		own, err = pool.New(pool.Config{ConnString: pc.ConnString, User: role, Password: "pw_" + role, MaxConns: 5})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(own.Close)
		w.Logins.(wire.Logins)["alice"].Backends = own
		w.Decider = nil // the database's own rules only, in this test
	})
	ctx := ctxT(t, 30*time.Second)
	super := connect(t, c.SuperURL(p.DB))
	for _, sql := range []string{
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD 'pw_%s'", role, role),
		"CREATE TABLE notes (owner text NOT NULL DEFAULT current_user, body text)",
		"ALTER TABLE notes OWNER TO " + testenv.AppUserName,
		fmt.Sprintf("INSERT INTO notes VALUES ('%s', 'mine'), ('someone', 'theirs')", role),
		"ALTER TABLE notes ENABLE ROW LEVEL SECURITY",
		"CREATE POLICY own ON notes USING (owner = current_user)",
		fmt.Sprintf("GRANT SELECT, INSERT ON notes TO %s", role),
		"CREATE TABLE secrets (x int)",
	} {
		if _, err := super.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		own.Close()
		_, _ = super.Exec(cctx, "DROP TABLE notes, secrets")
		_, _ = super.Exec(cctx, "DROP ROLE "+role)
	})
	alice := connect(t, p.URL("alice"))
	var cur, sess string
	if err := alice.QueryRow(ctx, "SELECT current_user, session_user").Scan(&cur, &sess); err != nil || cur != role || sess != role {
		t.Fatalf("alice runs as %q/%q (%v), want %s", cur, sess, err, role)
	}
	if got := alice.PgConn().ParameterStatus("session_authorization"); got != "alice" {
		t.Errorf("session_authorization reported as %q, want the login", got)
	}
	var bodies []string
	rows, err := alice.Query(ctx, "SELECT body FROM notes ORDER BY body")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var b string
		_ = rows.Scan(&b)
		bodies = append(bodies, b)
	}
	if rows.Err() != nil || strings.Join(bodies, ",") != "mine" {
		t.Fatalf("row-level security of the database: %v %v", bodies, rows.Err())
	}
	_, err = alice.Exec(ctx, "SELECT * FROM secrets")
	if pe := asPgErr(err); pe == nil || pe.Code != "42501" || !strings.Contains(pe.Message, "permission denied") {
		t.Fatalf("a table the role has no grant on: %v", err)
	}
	// bob is on the shared pool: the proxy's own role.
	bob := connect(t, p.URL("bob"))
	if err := bob.QueryRow(ctx, "SELECT current_user").Scan(&cur); err != nil || cur != testenv.AppUserName {
		t.Fatalf("bob runs as %q (%v), want the proxy's role", cur, err)
	}
	if own.Stats().Dials == 0 {
		t.Error("alice's session did not use its own pool")
	}
}

// TestDisconnectInTransactionEndsBackend checks that in session pooling a
// client that goes away inside a transaction takes its backend with it (as
// PostgreSQL's own process ends, and PgBouncer closes a server that was not
// idle): the next client gets another backend and another process id,
// while one that leaves idle hands its backend on.
func TestDisconnectInTransactionEndsBackend(t *testing.T) {
	if txPoolingSuite() {
		t.Skip("transaction pooling hands out the proxy's own pid")
	}
	t.Parallel()
	p := startProxy(t, func(_ *wire.Config, pc *pool.Config) { pc.MaxConns = 1 })
	ctx := ctxT(t, 30*time.Second)
	pidOf := func(leave func(*pgx.Conn)) uint32 {
		c := openConn(t, p.URL("dave"), nil)
		pid := c.PgConn().PID()
		leave(c)
		return pid
	}
	idle := pidOf(func(c *pgx.Conn) { _ = c.Close(ctx) })
	direct := openConn(t, p.DirectDB, nil)
	mustExec(t, ctx, direct, "CREATE TABLE disconnect_rows (id int)")
	again := pidOf(func(c *pgx.Conn) {
		mustExec(t, ctx, c, "BEGIN")
		mustExec(t, ctx, c, "INSERT INTO disconnect_rows VALUES (1)")
		_ = c.Close(ctx)
	})
	if again != idle {
		t.Fatalf("an idle client's backend was not reused: %d then %d", idle, again)
	}
	waitFor(t, "a new backend after a disconnect inside a transaction", 5*time.Second, func() bool {
		return pidOf(func(c *pgx.Conn) { _ = c.Close(ctx) }) != again
	})
	var n int
	if err := direct.QueryRow(ctx, "SELECT count(*) FROM disconnect_rows").Scan(&n); err != nil || n != 0 {
		t.Fatalf("the gone client's uncommitted row: %d %v", n, err)
	}
}

// TestStartupReadOnlyDoesNotLeak checks that a client's startup parameter
// default_transaction_read_only (which PostgreSQL reports) stays with that
// client: in transaction pooling the next client of the same backend
// connection writes as usual (found by pgx's own test suite).
func TestStartupReadOnlyDoesNotLeak(t *testing.T) {
	t.Parallel()
	p := startProxy(t, func(_ *wire.Config, pc *pool.Config) {
		if txPoolingSuite() {
			pc.MaxConns = 1 // both clients on one backend connection
		}
	})
	ctx := ctxT(t, 30*time.Second)
	ro := openConn(t, p.URL("dave"), func(c *pgx.ConnConfig) { c.RuntimeParams["default_transaction_read_only"] = "on" })
	_, err := ro.Exec(ctx, "CREATE TABLE ro_leak (x int)")
	if pgCode(err) != "25006" {
		t.Fatalf("read-only client: %v, want 25006", err)
	}
	rw := openConn(t, p.URL("dave"), nil)
	for i := 0; i < 3; i++ {
		if _, err := ro.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		if _, err := rw.Exec(ctx, "CREATE TABLE IF NOT EXISTS ro_leak (x int)"); err != nil {
			t.Fatalf("the other client got the read-only setting: %v", err)
		}
	}
	_, err = ro.Exec(ctx, "INSERT INTO ro_leak VALUES (1)")
	if pgCode(err) != "25006" {
		t.Fatalf("read-only client after the other's transactions: %v, want 25006", err)
	}
}
