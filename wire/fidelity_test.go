package wire_test

// Fidelity: what a client sees through the proxy is what PostgreSQL would
// show (issue 12).

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/policy"
)

// TestSyntaxErrorFields checks that the proxy's own syntax error carries
// PostgreSQL's fields: its message without a made-up suffix, the Position
// (so psql shows LINE 1 and a caret), and no source location of the DO
// block that raised it; the session goes on as PostgreSQL's would.
func TestSyntaxErrorFields(t *testing.T) {
	t.Parallel()
	p, _, _ := demoProxy(t, policy.ModeStrict)
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
	p, sink, _ := demoProxy(t, policy.ModeStrict)
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
