package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestServeCheck(t *testing.T) {
	policies, err := filepath.Abs("../../policies")
	if err != nil {
		t.Fatal(err)
	}
	good := fmt.Sprintf(`
listen: 127.0.0.1:7000
backend: {url: "postgres://u:pw@127.0.0.1:5432/app"}
policy: {dir: %q}
admin: {listen: 127.0.0.1:9432}
logins:
  - {name: alice, password: pw, role: user, max_conns: 3}
`, policies)
	code, out, errs := runCLI(t, "serve", "--check", "--config", writeConfig(t, good))
	if code != 0 || out != "ok\n" {
		t.Fatalf("good config: code %d, stdout %q, stderr %q", code, out, errs)
	}

	// Several problems at once: each gets its own line.
	bad := strings.NewReplacer(
		"listen: 127.0.0.1:7000", "listen: 127.0.0.1:7000\nfrobnicate: 1",
		"role: user,", "",
		"max_conns: 3", "max_conns: -5",
		"admin: {listen: 127.0.0.1:9432}", "admin: {listen: nowhere}\npool: {max_conns: 0}",
	).Replace(good)
	code, out, errs = runCLI(t, "serve", "--check", "--config", writeConfig(t, bad))
	if code == 0 || out != "" {
		t.Fatalf("bad config: code %d, stdout %q", code, out)
	}
	for _, want := range []string{
		"dbalproxy: config: frobnicate: unknown key",
		"dbalproxy: config: pool.max_conns: must be at least 1",
		`dbalproxy: config: admin.listen: "nowhere" is not host:port`,
		"dbalproxy: config: logins[0].role: is required",
		"dbalproxy: config: logins[0].max_conns: must be -1",
	} {
		if !strings.Contains(errs, want+"") {
			t.Errorf("missing problem line %q in:\n%s", want, errs)
		}
	}
	if n := strings.Count(errs, "\n"); n != 5 {
		t.Errorf("%d lines for 5 problems:\n%s", n, errs)
	}

	// Policies are compiled and their tests run.
	dir := t.TempDir()
	copyDir(t, policies, dir)
	if err := os.WriteFile(filepath.Join(dir, "fail_test.rego"), []byte("package dbal\n\ntest_always_fails if { false }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	withFailingTest := strings.Replace(good, policies, dir, 1)
	code, _, errs = runCLI(t, "serve", "--check", "--config", writeConfig(t, withFailingTest+"frobnicate: 1\n"))
	if code == 0 || !strings.Contains(errs, "dbalproxy: config: policy.dir:") || !strings.Contains(errs, "test_always_fails") ||
		!strings.Contains(errs, "dbalproxy: config: frobnicate: unknown key") {
		t.Fatalf("failing policy test: code %d\n%s", code, errs)
	}
	if err := os.WriteFile(filepath.Join(dir, "fail_test.rego"), []byte("package dbal\nnot rego at all\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runCLI(t, "serve", "--check", "--config", writeConfig(t, withFailingTest))
	if code == 0 || !strings.Contains(errs, "rego_parse_error") {
		t.Fatalf("policy that does not compile: code %d\n%s", code, errs)
	}
}

// A backend URL whose variable is not set is one problem, not also an
// empty connection string.
func TestServeCheckUnsetBackendVariable(t *testing.T) {
	os.Unsetenv("TEST_NO_SUCH_PW")
	policies, err := filepath.Abs("../../policies")
	if err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, fmt.Sprintf("backend: {url: 'postgres://u:${TEST_NO_SUCH_PW}@db/app'}\nlogins:\n  - {name: a, password: pw, role: user}\npolicy: {dir: %q}\n", policies))
	code, _, errs := runCLI(t, "serve", "--check", "--config", cfg)
	if code != 1 || errs != "dbalproxy: config: backend.url: environment variable TEST_NO_SUCH_PW is not set\n" {
		t.Fatalf("code %d, stderr %q", code, errs)
	}
}
