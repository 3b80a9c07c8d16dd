package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// lowerRowRule is a row rule the proxy refuses at load: SQL cannot carry
// lower() applied to a column exactly.
const lowerRowRule = `package dbal

row_columns["public.packages"] := {"name"}

rows["public.packages"].select if lower(input.row.name) == input.session.claims.user_id
`

// policiesWith copies the shipped policies to a temporary directory and adds
// the given files.
func policiesWith(t *testing.T, files map[string]string) string {
	t.Helper()
	policies, err := filepath.Abs("../../policies")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	copyDir(t, policies, dir)
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// policy test refuses what the proxy refuses at load, and so does serve
// --check.
func TestPolicyTestRunsLoadValidation(t *testing.T) {
	dir := policiesWith(t, map[string]string{"lower.rego": lowerRowRule})
	const want = `rows["public.packages"].select cannot be turned into SQL: lower() is applied to a row value`
	code, out, errs := runCLI(t, "policy", "test", dir)
	if code == 0 || !strings.Contains(errs, want) {
		t.Fatalf("policy test: code %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	cfg := writeConfig(t, fmt.Sprintf("backend: {url: 'postgres://u:pw@127.0.0.1:5432/app'}\nlogins:\n  - {name: a, password: pw, role: user}\npolicy: {dir: %q}\n", dir))
	code, out, errs = runCLI(t, "serve", "--check", "--config", cfg)
	if code == 0 || !strings.Contains(errs, want) {
		t.Fatalf("serve --check: code %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
}

// --coverage prints each file's coverage; with --json, OPA's report.
func TestPolicyTestCoverage(t *testing.T) {
	code, out, errs := runCLI(t, "policy", "test", "--coverage", "../../policies")
	if code != 0 {
		t.Fatalf("code %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"coverage:", "dbal.rego", "rows.rego", "% total"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "dbal_test.rego") {
		t.Errorf("test files are not covered files:\n%s", out)
	}
	code, out, errs = runCLI(t, "policy", "test", "--coverage", "--json", "../../policies")
	if code != 0 {
		t.Fatalf("code %d\n%s\n%s", code, out, errs)
	}
	var rep struct {
		Files    map[string]json.RawMessage `json:"files"`
		Coverage float64                    `json:"coverage"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if rep.Coverage <= 0 || rep.Files["rows.rego"] == nil {
		t.Fatalf("report: %+v", rep)
	}
}

// print() output of a test goes to policy test's output, as opa test shows
// it (with -v, and for failing tests).
func TestPolicyTestPrint(t *testing.T) {
	dir := policiesWith(t, map[string]string{"print_test.rego": "package dbal\n\ntest_prints if {\n\tprint(\"hello from\", \"rego\")\n}\n"})
	code, out, errs := runCLI(t, "policy", "test", "-v", dir)
	if code != 0 || !strings.Contains(out, "hello from rego") {
		t.Fatalf("code %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
}
