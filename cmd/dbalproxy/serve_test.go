package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/testenv"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunMain(m)) }

// served is a proxy run by serve in the test process, as `dbalproxy serve`
// runs it, in front of a fresh demo database.
type served struct {
	t        *testing.T
	cfgPath  string
	policies string // a private copy of the shipped policies
	backend  string // the backend URL (app login)
	db       string
	addr     string
	admin    string
	reload   chan struct{}
	stop     context.CancelFunc
	done     chan error
	logs     *syncBuffer // the proxy's own log (JSON lines)
}

// syncBuffer is a bytes.Buffer safe for the proxy's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// serveConfig is the test's configuration file; %s are the backend URL, the
// policy directory and the audit file, and extra goes at the end.
const serveConfig = `
listen: 127.0.0.1:0
backend: {url: %q}
policy: {dir: %q, watch: false}
audit: {output: %q}
admin: {listen: 127.0.0.1:0}
log: {level: warn}
limits: {shutdown_timeout: 20s}
logins:
  - {name: alice, password: alice, role: user, claims: {user_id: u_alice}}
  - {name: bob, password: bob, role: admin, claims: {user_id: u_bob}}
  - {name: dave, password: dave, role: supergod, claims: {user_id: u_dave}}
%s`

func startServe(t *testing.T, extra ...string) *served {
	t.Helper()
	c := testenv.Shared(t)
	db := testenv.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := testenv.LoadDemo(ctx, c.AppURL(db)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := &served{t: t, cfgPath: filepath.Join(dir, "dbalproxy.yaml"), policies: filepath.Join(dir, "policies"),
		backend: c.AppURL(db), db: db, reload: make(chan struct{}), done: make(chan error, 1), logs: &syncBuffer{}}
	copyDir(t, "../../policies", s.policies)
	s.writeConfig(strings.Join(extra, ""))
	load := func() (*Config, error) {
		cfg := defaultConfig()
		if err := loadConfig(s.cfgPath, &cfg, nil); err != nil {
			return nil, err
		}
		return &cfg, nil
	}
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	level := zerolog.GlobalLevel()
	sctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	ready, adminReady := make(chan string, 1), make(chan string, 1)
	log := zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), s.logs)).Level(zerolog.TraceLevel)
	go func() {
		s.done <- serve(sctx, cfg, log, serveOptions{
			ready:      func(a net.Addr) { ready <- a.String() },
			adminReady: func(a net.Addr) { adminReady <- a.String() },
			reload:     s.reload, load: load,
		})
	}()
	select {
	case s.admin = <-adminReady:
	case err := <-s.done:
		t.Fatalf("serve: %v", err)
	}
	s.addr = <-ready
	t.Cleanup(func() {
		stop()
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			t.Error("serve did not return")
		}
		zerolog.SetGlobalLevel(level)
	})
	return s
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".rego") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func (s *served) writeConfig(extra string) {
	s.t.Helper()
	body := fmt.Sprintf(serveConfig, s.backend, s.policies, filepath.Join(filepath.Dir(s.cfgPath), "audit.jsonl"), extra)
	if err := os.WriteFile(s.cfgPath, []byte(body), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

func (s *served) url(login, password string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(login, password), Host: s.addr, Path: "/" + s.db, RawQuery: "sslmode=disable"}
	return u.String()
}

func (s *served) connect(login string) *pgx.Conn {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.url(login, login))
	if err != nil {
		s.t.Fatalf("connect %s: %v", login, err)
	}
	s.t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func (s *served) get(path string) (int, string) {
	s.t.Helper()
	resp, err := http.Get("http://" + s.admin + path)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the value of the sample whose name and labels start with
// prefix (e.g. `dbalproxy_client_connections `), or -1. A selector
// (`dbalproxy_decisions_total{decision="deny"}`) sums the samples of that
// name whose labels include the given ones, as PromQL's sum would.
func (s *served) metric(prefix string) float64 {
	s.t.Helper()
	code, body := s.get("/metrics")
	if code != 200 {
		s.t.Fatalf("/metrics: %d", code)
	}
	sel := strings.TrimSpace(prefix)
	name, want, isSel := strings.Cut(sel, "{")
	isSel = isSel && strings.HasSuffix(sel, "}")
	sum, found := 0.0, false
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if isSel {
			n, labels, ok := strings.Cut(line, "{")
			if !ok || n != name || !hasLabels(labels, want) {
				continue
			}
		} else if !strings.HasPrefix(line, prefix) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			s.t.Fatalf("metric line %q: %v", line, err)
		}
		if !isSel {
			return v
		}
		sum, found = sum+v, true
	}
	if !found {
		return -1
	}
	return sum
}

var labelPair = regexp.MustCompile(`[a-zA-Z_]+="[^"]*"`)

// hasLabels reports whether the labels of a text-format line (what follows
// its "{") include every pair of want (a selector's, without its braces).
func hasLabels(line, want string) bool {
	have := map[string]bool{}
	for _, p := range labelPair.FindAllString(line, -1) {
		have[p] = true
	}
	for _, p := range labelPair.FindAllString(want, -1) {
		if !have[p] {
			return false
		}
	}
	return true
}

func (s *served) waitMetric(prefix string, want float64) {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := s.metric(prefix)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s = %v, want %v", prefix, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func exec(t *testing.T, c *pgx.Conn, sql string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Exec(ctx, sql)
	return err
}

func sqlstate(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// TestMetricsMove: the admin listener answers, and the metrics are present
// and move as traffic flows through the proxy.
func TestMetricsMove(t *testing.T) {
	s := startServe(t, "pool: {max_conns: 1, acquire_timeout: 200ms}\n")
	if code, body := s.get("/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	if code, body := s.get("/readyz"); code != 200 || body != "ready\n" {
		t.Fatalf("/readyz = %d %q", code, body)
	}
	for _, name := range []string{
		"dbalproxy_client_connections ", "dbalproxy_client_connections_total ",
		`dbalproxy_client_connections_rejected_total{limit="max_client_conns"} `,
		`dbalproxy_decisions_total{decision="deny"} `, `dbalproxy_logins_total{result="failed"} `,
		"dbalproxy_pool_acquire_seconds_count ", "dbalproxy_pool_timeouts_total ",
		"dbalproxy_audit_records_dropped_total ", `dbalproxy_policy_info{version="`,
		`dbalproxy_config_reloads_total{result="ok"} `, "dbalproxy_draining ", "go_goroutines ",
	} {
		if s.metric(name) < 0 {
			t.Errorf("metric %s is missing", name)
		}
	}
	if v := s.metric(`dbalproxy_decisions_total{decision="deny"}`); v != 0 {
		t.Fatalf("deny decisions before any traffic = %v", v)
	}

	alice := s.connect("alice")
	if err := exec(t, alice, "SELECT count(*) FROM page_views"); err != nil { // allow
		t.Fatal(err)
	}
	if err := exec(t, alice, "SELECT email FROM users"); err != nil { // rewrite: own row only
		t.Fatal(err)
	}
	if err := exec(t, alice, "DELETE FROM packages"); sqlstate(err) != "42501" { // deny
		t.Fatalf("DELETE as alice: %v", err)
	}
	if err := exec(t, alice, "SELECT 1/0"); sqlstate(err) != "22012" { // backend error
		t.Fatalf("1/0: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := pgx.Connect(ctx, s.url("alice", "wrong")); sqlstate(err) != "28P01" {
		t.Fatalf("wrong password: %v", err)
	}

	s.waitMetric(`dbalproxy_decisions_total{decision="deny"}`, 1)
	s.waitMetric(`dbalproxy_errors_total{sqlstate="42501"}`, 1)
	s.waitMetric(`dbalproxy_errors_total{sqlstate="22012"}`, 1)
	s.waitMetric(`dbalproxy_errors_total{sqlstate="28P01"}`, 1)
	s.waitMetric(`dbalproxy_logins_total{result="ok"}`, 1)
	s.waitMetric(`dbalproxy_logins_total{result="failed"}`, 1)
	s.waitMetric("dbalproxy_client_connections ", 1)
	s.waitMetric("dbalproxy_client_connections_total ", 2)
	s.waitMetric(fmt.Sprintf(`dbalproxy_pool_waiting{database=%q}`, s.db), 0)
	s.waitMetric(fmt.Sprintf(`dbalproxy_backend_connections{database=%q,state="in_use"}`, s.db), 1)
	s.waitMetric("dbalproxy_pool_acquire_seconds_count ", 1)
	if v := s.metric(`dbalproxy_decisions_total{decision="allow"}`); v < 2 {
		t.Errorf("allow decisions = %v, want at least 2", v)
	}
	if v := s.metric(`dbalproxy_decisions_total{decision="rewrite"}`); v < 1 {
		t.Errorf("rewrite decisions = %v, want at least 1", v)
	}
	if v := s.metric(`dbalproxy_statement_duration_seconds_count{decision="allow"}`); v < 2 {
		t.Errorf("latency observations (allow) = %v", v)
	}
	if v := s.metric(`dbalproxy_statement_duration_seconds_sum{decision="allow"}`); v <= 0 {
		t.Errorf("latency sum (allow) = %v", v)
	}

	// alice holds the only backend connection: bob waits, then gets 53300.
	if _, err := pgx.Connect(ctx, s.url("bob", "bob")); sqlstate(err) != "53300" {
		t.Fatalf("second client with pool.max_conns 1: %v, want 53300", err)
	}
	s.waitMetric("dbalproxy_pool_timeouts_total ", 1)
	s.waitMetric(`dbalproxy_pool_acquire_errors_total{sqlstate="53300"}`, 1)
	s.waitMetric("dbalproxy_pool_acquire_seconds_count ", 2)
	if v := s.metric(`dbalproxy_pool_acquire_seconds_bucket{le="0.1"}`); v > 1 {
		t.Errorf("acquires within 100ms = %v: the 200ms wait is among them", v)
	}
	if v := s.metric(`dbalproxy_pool_acquire_seconds_bucket{le="+Inf"}`); v != 2 {
		t.Errorf("acquires = %v, want 2", v)
	}

	alice.Close(ctx)
	s.waitMetric("dbalproxy_client_connections ", 0)
	s.waitMetric(fmt.Sprintf(`dbalproxy_backend_connections{database=%q,state="idle"}`, s.db), 1)
}

// TestReloadKeepsSessions: SIGHUP's reload changes logins, limits and
// policies without dropping the sessions open before it; a bad
// configuration or policy set is refused and the running one stays.
func TestReloadKeepsSessions(t *testing.T) {
	s := startServe(t)
	before := s.connect("alice")
	if err := exec(t, before, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	bob := s.connect("bob")

	// bob removed, erin added, dave's password changed, one session per login.
	s.writeConfig(`  - {name: erin, password: erin, role: admin}
limits: {max_conns_per_login: 1}
`)
	body, _ := os.ReadFile(s.cfgPath)
	body = []byte(strings.Replace(string(body), "  - {name: bob, password: bob, role: admin, claims: {user_id: u_bob}}\n", "", 1))
	body = []byte(strings.Replace(string(body), "{name: dave, password: dave,", "{name: dave, password: dave2,", 1))
	body = []byte(strings.Replace(string(body), "limits: {shutdown_timeout: 20s}\n", "", 1))
	body = []byte(strings.Replace(string(body), "log: {level: warn}", "log: {level: debug}", 1))
	audit2 := filepath.Join(filepath.Dir(s.cfgPath), "audit2.jsonl")
	body = []byte(strings.Replace(string(body), "audit.jsonl", "audit2.jsonl", 1))
	if err := os.WriteFile(s.cfgPath, body, 0o600); err != nil {
		t.Fatal(err)
	}
	s.reload <- struct{}{}
	s.waitMetric(`dbalproxy_config_reloads_total{result="ok"}`, 1)
	if l := zerolog.GlobalLevel(); l != zerolog.DebugLevel {
		t.Errorf("log level after the reload = %s, want debug", l)
	}

	// Sessions opened before the reload go on, inside their transaction too.
	if err := exec(t, before, "SELECT count(*) FROM page_views"); err != nil {
		t.Fatalf("session opened before the reload: %v", err)
	}
	if err := exec(t, before, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	if err := exec(t, bob, "SELECT 1"); err != nil {
		t.Fatalf("a removed login's open session was dropped: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	erin, err := pgx.Connect(ctx, s.url("erin", "erin"))
	if err != nil {
		t.Fatalf("login added by the reload: %v", err)
	}
	defer erin.Close(ctx)
	if _, err := pgx.Connect(ctx, s.url("bob", "bob")); sqlstate(err) != "28P01" {
		t.Fatalf("removed login: %v, want 28P01", err)
	}
	// The new audit output receives the records from now on.
	if err := exec(t, erin, "SELECT 4242 AS audit_marker"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the statement in the new audit file", func() bool {
		b, _ := os.ReadFile(audit2)
		return strings.Contains(string(b), `"user":"erin"`) && strings.Contains(string(b), "audit_marker")
	})
	if _, err := pgx.Connect(ctx, s.url("dave", "dave")); sqlstate(err) != "28P01" {
		t.Fatalf("old password: %v, want 28P01", err)
	}
	dave, err := pgx.Connect(ctx, s.url("dave", "dave2"))
	if err != nil {
		t.Fatalf("new password: %v", err)
	}
	defer dave.Close(ctx)
	if _, err := pgx.Connect(ctx, s.url("alice", "alice")); sqlstate(err) != "53300" {
		t.Fatalf("second alice session with max_conns_per_login 1: %v, want 53300", err)
	}

	// A bad configuration: every problem is refused, nothing changes.
	good, _ := os.ReadFile(s.cfgPath)
	bad := strings.Replace(string(good), "admin: {listen: 127.0.0.1:0}", "admin: {listen: 127.0.0.1:0}\nbogus: 1\npool: {max_conns: 0}", 1)
	if err := os.WriteFile(s.cfgPath, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	s.reload <- struct{}{}
	s.waitMetric(`dbalproxy_config_reloads_total{result="failed"}`, 1)
	erin2, err := pgx.Connect(ctx, s.url("dave", "dave2"))
	if sqlstate(err) != "53300" {
		t.Fatalf("after a refused reload the running limits should stay: %v", err)
	}
	if erin2 != nil {
		erin2.Close(ctx)
	}

	// A policy set that does not compile is refused; the running set stays.
	if err := os.WriteFile(s.cfgPath, good, 0o600); err != nil {
		t.Fatal(err)
	}
	version := s.policyVersion()
	if err := os.WriteFile(filepath.Join(s.policies, "broken.rego"), []byte("package dbal\nthis is not rego\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.reload <- struct{}{}
	s.waitMetric(`dbalproxy_config_reloads_total{result="failed"}`, 2)
	s.waitMetric(`dbalproxy_policy_reloads_total{result="failed"}`, 1)
	if v := s.policyVersion(); v != version {
		t.Fatalf("policy version %s after a refused reload, want %s", v, version)
	}
	if err := exec(t, erin, "DELETE FROM packages"); sqlstate(err) != "42501" {
		t.Fatalf("policies after a refused reload: %v", err)
	}
	// A good change of the policies is taken.
	if err := os.Remove(filepath.Join(s.policies, "broken.rego")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.policies, "extra.rego"), []byte("package dbal\n\nextra_marker := true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.reload <- struct{}{}
	s.waitMetric(`dbalproxy_config_reloads_total{result="ok"}`, 2)
	s.waitMetric(`dbalproxy_policy_reloads_total{result="ok"}`, 1)
	if v := s.policyVersion(); v == version {
		t.Fatal("policy version unchanged after a good reload")
	}
	if err := exec(t, before, "SELECT count(*) FROM page_views"); err != nil {
		t.Fatalf("session opened before the reloads: %v", err)
	}
}

func (s *served) policyVersion() string {
	_, body := s.get("/metrics")
	_, rest, ok := strings.Cut(body, `dbalproxy_policy_info{version="`)
	if !ok {
		s.t.Fatal("no dbalproxy_policy_info")
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

// TestShutdownDrains: ending serve's context (SIGTERM) drains: /readyz says
// 503, an idle session gets 57P01, a transaction in flight may COMMIT and is
// closed after it, and serve returns cleanly.
func TestShutdownDrains(t *testing.T) {
	s := startServe(t)
	idle := s.connect("alice")
	dave := s.connect("dave")
	if err := exec(t, dave, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if err := exec(t, dave, "UPDATE users SET email = 'bob@drained.example' WHERE id = 'u_bob'"); err != nil {
		t.Fatal(err)
	}
	s.stop()
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body := s.get("/readyz")
		if code == 503 && strings.Contains(body, "draining") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz while draining = %d %q", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The idle session is closed (only dave's remains), then told why.
	s.waitMetric("dbalproxy_client_connections ", 1)
	if err := exec(t, idle, "SELECT 1"); sqlstate(err) != "57P01" {
		t.Fatalf("idle session while draining: %v, want 57P01", err)
	}
	if err := exec(t, dave, "COMMIT"); err != nil {
		t.Fatalf("COMMIT while draining: %v", err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
		s.done <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after the last transaction ended")
	}
	if err := exec(t, dave, "SELECT 1"); err == nil {
		t.Fatal("the session is still open after the drain")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	direct, err := pgx.Connect(ctx, s.backend)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	var email string
	if err := direct.QueryRow(ctx, "SELECT email FROM users WHERE id = 'u_bob'").Scan(&email); err != nil || email != "bob@drained.example" {
		t.Fatalf("email = %q, %v: the transaction did not commit", email, err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitForWithin(t, 10*time.Second, what, cond)
}

// waitForWithin is waitFor with its own deadline.
func waitForWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCatalogNamesReported: an unqualified pg_* relation is reported as
// PostgreSQL resolves it (pg_catalog is searched first) in the client's
// DETAIL and in the audit record's tables, as in the policy's reason.
func TestCatalogNamesReported(t *testing.T) {
	s := startServe(t)
	alice := s.connect("alice")
	err := exec(t, alice, "SELECT usename FROM pg_stat_activity")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" {
		t.Fatalf("SELECT FROM pg_stat_activity as alice: %v", err)
	}
	if !strings.Contains(pe.Message, "pg_catalog.pg_stat_activity") || !strings.HasPrefix(pe.Detail, "statement: SELECT on pg_catalog.pg_stat_activity;") {
		t.Errorf("message %q, detail %q: want pg_catalog.pg_stat_activity in both", pe.Message, pe.Detail)
	}
	if err := exec(t, alice, "DELETE FROM packages"); !errors.As(err, &pe) || !strings.HasPrefix(pe.Detail, "statement: DELETE on public.packages;") {
		t.Fatalf("DELETE FROM packages as alice: %v (detail %q)", err, pe.Detail)
	}
	auditPath := filepath.Join(filepath.Dir(s.cfgPath), "audit.jsonl")
	waitFor(t, "the denial's audit record", func() bool {
		b, _ := os.ReadFile(auditPath)
		return strings.Contains(string(b), `"command":"DELETE"`)
	})
	b, _ := os.ReadFile(auditPath)
	if !strings.Contains(string(b), `"tables":["pg_catalog.pg_stat_activity"]`) || strings.Contains(string(b), "public.pg_stat_activity") {
		t.Errorf("audit records name the catalog view wrongly:\n%s", b)
	}
}

// TestReloadFeedback: a reload names each restart-only key that changed
// (not its group), and a refused policy set is reported in one log line.
func TestReloadFeedback(t *testing.T) {
	s := startServe(t)
	body, _ := os.ReadFile(s.cfgPath)
	changed := strings.Replace(string(body), "limits: {shutdown_timeout: 20s}", "limits: {shutdown_timeout: 20s}\npool: {max_conns: 3}", 1)
	changed = strings.Replace(changed, "watch: false}", "watch: false, cache_size: 50}", 1)
	if err := os.WriteFile(s.cfgPath, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	s.reload <- struct{}{}
	s.waitMetric(`dbalproxy_config_reloads_total{result="ok"}`, 1)
	logs := s.logs.String()
	for _, key := range []string{"pool.max_conns", "policy.cache_size"} {
		if !strings.Contains(logs, `"key":"`+key+`","message":"configuration key changed; it takes effect only after a restart"`) {
			t.Errorf("no restart warning for %s:\n%s", key, logs)
		}
	}
	for _, group := range []string{"pool", "policy", "pool.mode", "policy.dir"} {
		if strings.Contains(logs, `"key":"`+group+`"`) {
			t.Errorf("restart warning for %s, which did not change:\n%s", group, logs)
		}
	}

	// A policy set that does not compile: one line says so.
	if err := os.WriteFile(filepath.Join(s.policies, "broken.rego"), []byte("package dbal\nthis is not rego\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := len(s.logs.String())
	s.reload <- struct{}{}
	s.waitMetric(`dbalproxy_config_reloads_total{result="failed"}`, 1)
	var lines []string
	for l := range strings.SplitSeq(strings.TrimSpace(s.logs.String()[before:]), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "configuration reload refused") || !strings.Contains(lines[0], "broken.rego") {
		t.Fatalf("a refused policy set logged %d lines, want one naming the file:\n%s", len(lines), strings.Join(lines, "\n"))
	}
}

// TestPoolTimeoutError: a client that finds no free backend connection gets
// PostgreSQL's wording: FATAL 53300, no internal prefix, and a hint naming
// the keys to change.
func TestPoolTimeoutError(t *testing.T) {
	s := startServe(t, "pool: {max_conns: 1, acquire_timeout: 200ms}\n")
	s.connect("alice") // holds the only backend connection
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := pgx.Connect(ctx, s.url("bob", "bob"))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("second client with pool.max_conns 1: %v, want a server error", err)
	}
	if pe.Code != "53300" || pe.Severity != "FATAL" || pe.Message != "timed out waiting for a free backend connection" ||
		!strings.Contains(pe.Hint, "pool.max_conns") || !strings.Contains(pe.Hint, "pool.acquire_timeout") {
		t.Fatalf("got %s %s %q, hint %q", pe.Severity, pe.Code, pe.Message, pe.Hint)
	}
}
