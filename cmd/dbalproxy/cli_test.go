package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/testenv"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"
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
	if code != exitDenied || !strings.Contains(out, "DENIED (SQLSTATE 42501)") || !strings.Contains(out, "statement 1: DELETE") || !strings.Contains(out, "table:       public.packages [delete]") {
		t.Fatalf("explain deny: code %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = runCLI(t, "explain", "--policies", "../../policies", "--role", "god", "--claims", `{"user_id":"u_x"}`, "SELECT * FROM workflows")
	if code != 0 || !strings.Contains(out, "ALLOWED") {
		t.Fatalf("explain allow: code %d\n%s\n%s", code, out, errs)
	}
	if code, _, _ := runCLI(t, "explain", "--login", "nobody", "SELECT 1"); code != 1 {
		t.Fatalf("explain with an unknown login: code %d, want 1", code)
	}
}

// explain's exit status tells a script the decision (0 allowed, 3 denied,
// 1 an error), and --json prints the same facts for a program.
func TestExplainForCI(t *testing.T) {
	code, out, errs := runCLI(t, "explain", "--json", "--policies", "../../policies", "--login", "alice", "SELECT 1; DELETE FROM packages")
	if code != 3 {
		t.Fatalf("explain --json of a denied statement: code %d, want 3\n%s\n%s", code, out, errs)
	}
	var rep explainReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, out)
	}
	if rep.Decision != "deny" || rep.Denial == nil || rep.Denial.SQLState != "42501" || rep.Denial.Statement != 2 ||
		rep.Principal.User != "alice" || rep.Principal.Role != "user" || rep.Policies.Version == "" || len(rep.Statements) != 2 ||
		rep.Statements[1].Decision != "deny" || len(rep.Statements[1].Tables) != 1 || rep.Statements[1].Tables[0].Name != "public.packages" ||
		rep.Statements[0].Decision != "allow" || rep.BackendSQL != "" {
		t.Fatalf("explain --json:\n%s", out)
	}
	code, out, errs = runCLI(t, "explain", "--json", "--policies", "../../policies", "--login", "alice", "SELECT email FROM users")
	if code != 0 {
		t.Fatalf("explain --json of an allowed statement: code %d\n%s\n%s", code, out, errs)
	}
	rep = explainReport{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Decision != "allow" || rep.Denial != nil || !strings.Contains(rep.BackendSQL, "u_alice") || rep.Statements[0].Decision != "rewrite" ||
		rep.Statements[0].Tables[0].Name != "public.users" || strings.Join(rep.Statements[0].Tables[0].Columns["select"], ",") != "email" {
		t.Fatalf("explain --json:\n%s", out)
	}
	// A text the parser rejects is denied too.
	if code, out, _ := runCLI(t, "explain", "--policies", "../../policies", "--login", "alice", "SELEC 1"); code != 3 || !strings.Contains(out, "DENIED (SQLSTATE 42601)") {
		t.Fatalf("explain of a syntax error: code %d\n%s", code, out)
	}
	// Without --config, --login looks among the demo logins, and says so.
	t.Setenv("DBALPROXY_CONFIG", "")
	code, _, errs = runCLI(t, "explain", "--login", "zed", "SELECT 1")
	if code != 1 || !strings.Contains(errs, `no login "zed" among the demo logins (alice, bob, carol, dave)`) || !strings.Contains(errs, "--config") {
		t.Fatalf("explain --login zed: code %d, stderr %q", code, errs)
	}
	cfg := writeConfig(t, "logins:\n  - {name: amy, password: pw, role: user}\n")
	code, _, errs = runCLI(t, "explain", "--config", cfg, "--login", "zed", "SELECT 1")
	if code != 1 || !strings.Contains(errs, `no login "zed" in `+cfg) {
		t.Fatalf("explain --config --login zed: code %d, stderr %q", code, errs)
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
	if code != exitDenied || !strings.Contains(out, "function:    pg_catalog.lower") || !strings.Contains(out, "may not call pg_catalog.pg_terminate_backend(pid integer") {
		t.Fatalf("explain --backend: code %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = runCLI(t, "explain", "--policies", "../../policies", "--login", "alice", "SELECT lower('x')")
	if code != exitDenied || !strings.Contains(out, "functions: not resolved") || !strings.Contains(out, "could not look it up") {
		t.Fatalf("explain without --backend: code %d\n%s\n%s", code, out, errs)
	}
}

// The proxy's own log: JSON times as precise as the audit records' (UTC,
// nanoseconds), durations with their unit, console times with their
// milliseconds, and no colours when the output is not a terminal.
func TestLogFormat(t *testing.T) {
	at := time.Date(2026, 11, 28, 16, 59, 41, 68123456, time.UTC)
	saved := zerolog.TimestampFunc
	zerolog.TimestampFunc = func() time.Time { return at }
	t.Cleanup(func() { zerolog.TimestampFunc = saved })

	var buf bytes.Buffer
	log := newLogger(LogConfig{Level: "info", Format: "json"}, &buf)
	log.Info().Dur("took", 1500*time.Microsecond).Msg("policy set loaded")
	if want := `{"level":"info","took":"1.5ms","time":"2026-11-28T16:59:41.068123456Z","message":"policy set loaded"}` + "\n"; buf.String() != want {
		t.Errorf("JSON log line\n got %s want %s", buf.String(), want)
	}

	buf.Reset()
	log = newLogger(LogConfig{Level: "info", Format: "console"}, &buf)
	log.Info().Dur("took", 1500*time.Microsecond).Msg("policy set loaded")
	line := buf.String()
	if strings.Contains(line, "\x1b[") {
		t.Errorf("console log to a non-terminal has ANSI colours: %q", line)
	}
	if want := at.Local().Format("15:04:05.000") + " INF policy set loaded took=1.5ms\n"; line != want {
		t.Errorf("console log line\n got %q\nwant %q", line, want)
	}
}

// TestDemo runs the demo as a new user would: it prints a psql line per
// login, and a denial appears once, as its audit record, not also in the
// proxy's log.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runDemo(ctx, []string{"--listen", "127.0.0.1:0", "--policies", "../../policies"}, &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("demo: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the demo did not stop")
		}
	})
	re := regexp.MustCompile(`psql '(postgres://alice:alice@127\.0\.0\.1:\d+/app\?sslmode=disable)'`)
	var url string
	// The demo starts its own cluster and tests the policies first: slow
	// under -race on two busy cores.
	waitForWithin(t, 90*time.Second, "the demo's psql lines", func() bool {
		m := re.FindStringSubmatch(stdout.String())
		if m != nil {
			url = m[1]
		}
		return m != nil
	})
	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	defer ccancel()
	alice, err := pgx.Connect(cctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close(cctx)
	_, err = alice.Exec(cctx, "DELETE FROM packages")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" {
		t.Fatalf("DELETE FROM packages as alice: %v", err)
	}
	waitFor(t, "the denial's audit record", func() bool { return strings.Contains(stdout.String(), "statement decision=deny") })
	if n := strings.Count(stdout.String()+stderr.String(), "may not delete from public.packages"); n != 2 { // reason and error of the one record
		t.Errorf("the denial appears %d times, want once (its audit record's reason and error):\nstdout:\n%s\nstderr:\n%s", n, stdout.String(), stderr.String())
	}
	if strings.Contains(stderr.String(), "\x1b[") {
		t.Errorf("the demo's log has colours though stderr is not a terminal:\n%s", stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	whole := regexp.MustCompile(`^\d\d:\d\d:\d\d\.000 `)
	n := 0
	for _, l := range lines {
		if whole.MatchString(l) {
			n++
		}
	}
	if len(lines) < 3 || n == len(lines) {
		t.Errorf("the demo's log times have no milliseconds:\n%s", stderr.String())
	}
}

// explain --config reads only the logins' names, roles and claims and the
// policy settings: the backend's and the logins' ${PASSWORD} need not be
// set, a claim's must.
func TestExplainConfigWithoutBackendSecret(t *testing.T) {
	os.Unsetenv("TEST_NO_BACKEND_PW")
	os.Unsetenv("TEST_NO_AMY_PW")
	os.Unsetenv("TEST_NO_AMY_ID")
	cfg := writeConfig(t, "backend: {url: 'postgres://u:${TEST_NO_BACKEND_PW}@db/app'}\nlogins:\n  - {name: amy, password: '${TEST_NO_AMY_PW}', role: user, claims: {user_id: u_amy}}\n")
	code, out, errs := runCLI(t, "explain", "--config", cfg, "--policies", "../../policies", "--login", "amy", "DELETE FROM packages")
	if code != exitDenied || !strings.Contains(out, `principal: amy (role "user", claims {"user_id":"u_amy"})`) {
		t.Fatalf("explain --config with an unset backend password: code %d\n%s\n%s", code, out, errs)
	}
	cfg = writeConfig(t, "logins:\n  - {name: amy, password: pw, role: user, claims: {user_id: '${TEST_NO_AMY_ID}'}}\n")
	if code, _, errs := runCLI(t, "explain", "--config", cfg, "--policies", "../../policies", "--login", "amy", "SELECT 1"); code != 1 || !strings.Contains(errs, "logins[0].claims.user_id: environment variable TEST_NO_AMY_ID is not set") {
		t.Fatalf("explain --config with an unset claim: code %d, %q", code, errs)
	}
}

// -h is help, exit 0, for every command; a missing subcommand is a usage
// error, exit 2.
func TestHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{
		{"-h"}, {"help"}, {"policy", "-h"}, {"policy", "--help"}, {"policy", "test", "-h"},
		{"explain", "-h"}, {"serve", "-h"}, {"demo", "-h"}, {"passwd", "-h"}, {"completion", "-h"},
	} {
		code, out, errs := runCLI(t, args...)
		if code != 0 || out+errs == "" {
			t.Errorf("dbalproxy %s: code %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errs)
		}
	}
	for _, args := range [][]string{{"policy"}, {"policy", "frob"}, {"passwd"}, {"completion"}, {"completion", "tcsh"}} {
		if code, _, errs := runCLI(t, args...); code != 2 || !strings.Contains(errs, "usage:") {
			t.Errorf("dbalproxy %s: code %d, stderr %q", strings.Join(args, " "), code, errs)
		}
	}
	if _, out, _ := runCLI(t, "help"); !strings.Contains(out, "dbalproxy passwd LOGIN") || !strings.Contains(out, "dbalproxy completion bash|zsh|fish") {
		t.Errorf("help does not list passwd and completion:\n%s", out)
	}
}

// passwd makes a scram_verifier from a password read on stdin; a login with
// it logs in with that password.
func TestPasswd(t *testing.T) {
	passwd := func(in string) (int, string, string) {
		t.Helper()
		saved := stdin
		stdin = strings.NewReader(in)
		defer func() { stdin = saved }()
		return runCLI(t, "passwd", "zoe")
	}
	code, out, errs := passwd("correct horse\n")
	if code != 0 || !regexp.MustCompile(`^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+\n$`).MatchString(out) {
		t.Fatalf("passwd: code %d, stdout %q, stderr %q", code, out, errs)
	}
	verifier := strings.TrimSpace(out)
	if _, out2, _ := passwd("correct horse\n"); out2 == out {
		t.Error("two verifiers of one password are equal: the salt is not random")
	}
	if code, _, errs := passwd(""); code != 1 || !strings.Contains(errs, "empty") {
		t.Errorf("empty password: code %d, %q", code, errs)
	}
	if code, _, errs := passwd("a\nb\n"); code != 1 || !strings.Contains(errs, "one line") {
		t.Errorf("two lines: code %d, %q", code, errs)
	}

	s := startServe(t, fmt.Sprintf("  - {name: zoe, scram_verifier: %q, role: user, claims: {user_id: u_zoe}}\n", verifier))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.url("zoe", "correct horse"))
	if err != nil {
		t.Fatalf("login with the verifier's password: %v", err)
	}
	c.Close(ctx)
	if _, err := pgx.Connect(ctx, s.url("zoe", "wrong horse")); sqlstate(err) != "28P01" {
		t.Fatalf("wrong password: %v, want 28P01", err)
	}
}

// completion bash prints a script that completes commands and flags.
func TestCompletion(t *testing.T) {
	code, script, errs := runCLI(t, "completion", "bash")
	if code != 0 || !strings.Contains(script, "complete -o default -F _dbalproxy dbalproxy") {
		t.Fatalf("completion bash: code %d\n%s\n%s", code, script, errs)
	}
	bash, err := osexec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	complete := func(words ...string) string {
		t.Helper()
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = "'" + w + "'"
		}
		prog := script + fmt.Sprintf("\nCOMP_WORDS=(%s); COMP_CWORD=%d; _dbalproxy; echo \"${COMPREPLY[*]}\"\n", strings.Join(quoted, " "), len(words)-1)
		out, err := osexec.Command(bash, "--norc", "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	for _, c := range []struct {
		words []string
		want  string
	}{
		{[]string{"dbalproxy", "se"}, "serve"},
		{[]string{"dbalproxy", "p"}, "policy passwd"},
		{[]string{"dbalproxy", "serve", "--pool.max"}, "--pool.max_conns"},
		{[]string{"dbalproxy", "serve", "--ch"}, "--check"},
		{[]string{"dbalproxy", "serve", "--config", ""}, ""}, // a file name: bash's default completion
		{[]string{"dbalproxy", "explain", "--js"}, "--json"},
		{[]string{"dbalproxy", "explain", "--bac"}, "--backend"},
		{[]string{"dbalproxy", "demo", "--li"}, "--listen"},
		{[]string{"dbalproxy", "policy", ""}, "test"},
		{[]string{"dbalproxy", "completion", ""}, "bash fish zsh"},
	} {
		if got := complete(c.words...); got != c.want {
			t.Errorf("%s: completions %q, want %q", strings.Join(c.words, " "), got, c.want)
		}
	}
	for _, shell := range []string{"zsh", "fish"} {
		if code, out, _ := runCLI(t, "completion", shell); code != 0 || !strings.Contains(out, "dbalproxy") || !strings.Contains(out, "--pool.max_conns") && !strings.Contains(out, "-l pool.max_conns") {
			t.Errorf("completion %s: code %d\n%s", shell, code, out)
		}
	}
}
