package wire_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestPolicySeesBackendCapabilities checks that policies get the backend's
// version and settings as input.backend: a rule that allows statements only
// on a server of at least the running major version, and denies a feature
// flagged for a newer one.
func TestPolicySeesBackendCapabilities(t *testing.T) {
	dir := t.TempDir()
	rego := `package dbal

default decision := {"allow": false, "reason": "unknown backend"}

decision := {"allow": true, "reason": sprintf("backend %s", [input.backend.version])} if {
	input.backend.version_num >= 100000
	input.backend.settings.server_encoding == "UTF8"
	not merge_returning_unsupported
}

decision := {"allow": false, "reason": "MERGE needs PostgreSQL 15"} if merge_returning_unsupported

merge_returning_unsupported if {
	input.statement.command == "MERGE"
	input.backend.version_num < 150000
}
`
	if err := os.WriteFile(filepath.Join(dir, "caps.rego"), []byte(rego), 0o644); err != nil {
		t.Fatal(err)
	}
	sink := &auditSink{}
	p := startProxy(t, withPolicy(t, policyEngine(t, dir, decision.ModeStrict), sink))
	ctx := ctxT(t, 10*time.Second)
	conn, err := pgx.Connect(ctx, p.URL("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		var pe *pgconn.PgError
		errors.As(err, &pe)
		t.Fatalf("statement denied although the backend qualifies: %v", err)
	}
	waitFor(t, "the audit record", 2*time.Second, func() bool {
		for _, r := range sink.Records() {
			if r.Event == "statement" && strings.HasPrefix(r.Reason, "backend "+p.Cluster.Version()) {
				return true
			}
		}
		return false
	})
}
