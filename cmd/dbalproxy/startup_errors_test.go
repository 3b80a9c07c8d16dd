package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// checkLines runs serve --check on body and returns its problem lines.
func checkLines(t *testing.T, body string) []string {
	t.Helper()
	code, out, errs := runCLI(t, "serve", "--check", "--config", writeConfig(t, body))
	if code == 0 || out != "" {
		t.Fatalf("serve --check: code %d, stdout %q, stderr %q", code, out, errs)
	}
	return strings.Split(strings.TrimSuffix(errs, "\n"), "\n")
}

func startupConfig(t *testing.T, body string) string {
	policies, err := filepath.Abs("../../policies")
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(body, policies)
}

// TestWrongTypesNameTheKey: every value of the wrong type is reported with
// its key (durations too), all in one run, and the values after it are still
// read (the policy directory named after them is checked, not the default).
func TestWrongTypesNameTheKey(t *testing.T) {
	lines := checkLines(t, startupConfig(t, `
listen: 127.0.0.1:7000
backend: {url: "postgres://u:pw@127.0.0.1:5432/app"}
pool: {max_conns: twenty, acquire_timeout: 5 seconds}
limits: {startup_timeout: 10, max_client_conns: [1, 2]}
tls: {required: maybe}
policy: {dir: %q}
logins:
  - {name: alice, password: pw, role: user, max_conns: lots}
`))
	want := []string{
		`dbalproxy: config: pool.max_conns: "twenty" is not a whole number (line 4)`,
		`dbalproxy: config: pool.acquire_timeout: "5 seconds" is not a duration like 5s or 250ms (line 4)`,
		`dbalproxy: config: limits.startup_timeout: "10" is not a duration like 5s or 250ms (line 5)`,
		`dbalproxy: config: limits.max_client_conns: want a single value, not a list or mapping (line 5)`,
		`dbalproxy: config: tls.required: "maybe" is not true or false (line 6)`,
		`dbalproxy: config: logins[0].max_conns: "lots" is not a whole number (line 9)`,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// TestUnsetEnvNoFalseErrors: variables that are not set are each reported
// once, and nothing else is: not the keys after them, not the policy
// directory, not the logins or verifiers whose secret is missing.
func TestUnsetEnvNoFalseErrors(t *testing.T) {
	body := startupConfig(t, `
listen: 127.0.0.1:7000
backend: {url: "postgres://u:${TEST_UNSET_PW}@127.0.0.1:5432/app"}
pool: {max_conns: "${TEST_UNSET_CONNS}", acquire_timeout: "${TEST_UNSET_TIMEOUT}"}
policy: {dir: %q}
jwt:
  - {name: j, hs256_secret: "${TEST_UNSET_SECRET}"}
logins:
  - {name: alice, scram_verifier: "${TEST_UNSET_VERIFIER}", role: user}
  - {name: tok, jwt: j}
`)
	lines := checkLines(t, body)
	if len(lines) != 5 {
		t.Errorf("%d lines for 5 unset variables:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for _, l := range lines {
		if !strings.Contains(l, "environment variable TEST_UNSET_") {
			t.Errorf("a false problem: %s", l)
		}
	}
	// explain reads only the logins and policies: the rest may be unset.
	code, out, errs := runCLI(t, "explain", "--config", writeConfig(t, strings.Replace(body, `scram_verifier: "${TEST_UNSET_VERIFIER}"`, "password: pw", 1)), "--login", "alice", "SELECT 1")
	if code != 0 || !strings.Contains(out, "ALLOWED") {
		t.Errorf("explain with unset backend variables: code %d\n%s\n%s", code, out, errs)
	}
}

// TestCheckRejectsWhatServeFailsOn: listen addresses serve cannot listen
// on are refused by serve --check, naming the key.
func TestCheckRejectsWhatServeFailsOn(t *testing.T) {
	for listen, want := range map[string]string{
		"127.0.0.1:70000":   `listen: "127.0.0.1:70000": port 70000 is out of range (0 to 65535)`,
		"/tmp/dbalproxy.s":  `listen: "/tmp/dbalproxy.s" is not host:port`,
		"/run/x:5432":       `listen: "/run/x:5432" is not host:port`,
		"127.0.0.1:pgsql99": `listen: "127.0.0.1:pgsql99": "pgsql99" is not a port number`,
		"192.0.2.1:6432":    `listen: cannot listen on host "192.0.2.1"`,
	} {
		lines := checkLines(t, startupConfig(t, `
listen: "`+listen+`"
admin: {listen: "127.0.0.1:99999"}
backend: {url: "postgres://u:pw@127.0.0.1:5432/app"}
policy: {dir: %q}
logins:
  - {name: alice, password: pw, role: user}
`))
		got := strings.Join(lines, "\n")
		if !strings.Contains(got, "dbalproxy: config: "+want) || !strings.Contains(got, `admin.listen: "127.0.0.1:99999": port 99999 is out of range`) || len(lines) != 2 {
			t.Errorf("listen %s:\n%s", listen, got)
		}
	}
}

// TestDemoBusyPort: the demo checks its port before it starts PostgreSQL
// and says to use --listen.
func TestDemoBusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	err = runDemo(ctx, []string{"--listen", ln.Addr().String(), "--policies", "../../policies"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "use --listen") {
		t.Fatalf("demo on a busy port: %v", err)
	}
	if strings.Contains(stdout.String(), "PostgreSQL") || time.Since(start) > 5*time.Second {
		t.Errorf("the demo started PostgreSQL before it found the port busy (%s):\n%s", time.Since(start), stdout.String())
	}
}
