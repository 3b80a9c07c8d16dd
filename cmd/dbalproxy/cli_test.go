package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/dbalproxy/dbalproxy/testenv"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestPolicyTestCommand(t *testing.T) {
	code, out, errs := runCLI(t, "policy", "test", "../../policies")
	if code != 0 || !strings.Contains(out, " passed, 0 failed") {
		t.Fatalf("policy test: code %d\n%s\n%s", code, out, errs)
	}
}

func TestExplainCommand(t *testing.T) {
	code, out, errs := runCLI(t, "explain", "--policies", "../../policies", "--login", "alice", "DELETE FROM packages")
	if code != 0 || !strings.Contains(out, "DENIED (SQLSTATE 42501)") || !strings.Contains(out, "statement 1: DELETE") || !strings.Contains(out, "table:       packages [delete]") {
		t.Fatalf("explain deny: code %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = runCLI(t, "explain", "--policies", "../../policies", "--role", "god", "--claims", `{"user_id":"u_x"}`, "SELECT * FROM workflows")
	if code != 0 || !strings.Contains(out, "ALLOWED") {
		t.Fatalf("explain allow: code %d\n%s\n%s", code, out, errs)
	}
	if code, _, _ := runCLI(t, "explain", "--login", "nobody", "SELECT 1"); code == 0 {
		t.Fatal("explain with an unknown login succeeded")
	}
}

func TestUnknownCommand(t *testing.T) {
	if code, _, errs := runCLI(t, "frobnicate"); code != 2 || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Fatalf("code %d, %q", code, errs)
	}
}

// explain --backend resolves calls in a database's catalog; without it
// they are not resolved and the shipped policies deny them.
func TestExplainBackend(t *testing.T) {
	c := testenv.Shared(t)
	db := testenv.NewDatabase(t)
	sql := "SELECT lower('x'), (1).pg_terminate_backend"
	code, out, errs := runCLI(t, "explain", "--policies", "../../policies", "--login", "alice", "--backend", c.AppURL(db), sql)
	if code != 0 || !strings.Contains(out, "function:    pg_catalog.lower") || !strings.Contains(out, "may not call pg_catalog.pg_terminate_backend(pid integer") {
		t.Fatalf("explain --backend: code %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = runCLI(t, "explain", "--policies", "../../policies", "--login", "alice", "SELECT lower('x')")
	if code != 0 || !strings.Contains(out, "functions: not resolved") || !strings.Contains(out, "could not look it up") {
		t.Fatalf("explain without --backend: code %d\n%s\n%s", code, out, errs)
	}
}
