package policy

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// print() in the policies goes to the engine's log with its file:line, and
// a print() in a row rule changes nothing in the SQL the rule becomes.
func TestPrintGoesToLog(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"decision.rego": "package dbal\n\ndecision := {\"allow\": true} if {\n\tprint(\"deciding for\", input.session.role)\n}\n",
		"rows.rego": "package dbal\n\nrow_columns[\"public.t\"] := {\"owner\"}\n\n" +
			"rows[\"public.t\"].select if {\n\tprint(\"row rule for\", input.session.claims.user_id)\n\tinput.row.owner == input.session.claims.user_id\n}\n",
	})
	var buf lockedBuffer
	e, err := New(Options{Dir: dir, Logger: zerolog.New(&buf)})
	if err != nil {
		t.Fatal(err)
	}
	d := decideOK(t, e, onTable("user", alice, "public", "t", "select"))
	out := buf.String()
	if !strings.Contains(out, `"print":"deciding for user"`) || !strings.Contains(out, `"at":"decision.rego:4"`) || !strings.Contains(out, `"level":"info"`) {
		t.Fatalf("print() output not logged:\n%s", out)
	}
	f := d.Filters["public.t"]
	if f.SQL != `"owner" = $1` || len(f.Args) != 1 || f.Args[0] != "u_alice" {
		t.Fatalf("row rule with print(): %+v", d.Filters)
	}

	// policy test shows print() output, as opa test does, and accepts the set.
	writeFiles(t, dir, map[string]string{"p_test.rego": "package dbal\n\ntest_p if {\n\tprint(\"in a test\")\n}\n"})
	var w bytes.Buffer
	rep, err := Test(context.Background(), dir, &w, TestOptions{Verbose: true})
	if err != nil || rep.Passed != 1 || !strings.Contains(w.String(), "in a test") {
		t.Fatalf("Test: %+v, %v\n%s", rep, err, w.String())
	}
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
