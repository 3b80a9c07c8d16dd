package wire_test

// Fidelity: what a client sees through the proxy is what PostgreSQL would
// show (issue 12).

import (
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
