package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/testenv"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/rs/zerolog"
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

// startServeWith runs serve, as startServe does, with a configuration
// whose policy section is policyYAML (a YAML flow mapping).
func startServeWith(t *testing.T, db, policyYAML string) *served {
	t.Helper()
	c := testenv.Shared(t)
	dir := t.TempDir()
	s := &served{t: t, cfgPath: filepath.Join(dir, "dbalproxy.yaml"), backend: c.AppURL(db), db: db,
		reload: make(chan struct{}), done: make(chan error, 1), logs: &syncBuffer{}}
	body := fmt.Sprintf(serveConfig, s.backend, "POLICIES", filepath.Join(dir, "audit.jsonl"), "")
	body = strings.Replace(body, `policy: {dir: "POLICIES", watch: false}`, "policy: "+policyYAML, 1)
	if err := os.WriteFile(s.cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
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

// shippedBundle is the shipped policies as an OPA bundle at revision, in
// opa build's format, written by OPA's bundle package.
func shippedBundle(t *testing.T, revision string) []byte {
	t.Helper()
	ents, err := os.ReadDir("../../policies")
	if err != nil {
		t.Fatal(err)
	}
	b := bundle.Bundle{Manifest: bundle.Manifest{Revision: revision}, Data: map[string]any{}}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".rego") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("../../policies", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		b.Modules = append(b.Modules, bundle.ModuleFile{URL: "/" + e.Name(), Path: "/" + e.Name(), Raw: raw})
	}
	var buf bytes.Buffer
	if err := bundle.NewWriter(&buf).Write(b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Two proxies polling one bundle service enforce its revision, show it in
// /readyz, the metrics and the audit records, and converge on a new one
// within the polling interval.
func TestServeBundleConvergence(t *testing.T) {
	var mu sync.Mutex
	var body []byte
	var etag string
	setBundle := func(rev string) {
		mu.Lock()
		defer mu.Unlock()
		body, etag = shippedBundle(t, rev), `"`+rev+`"`
	}
	setBundle("v1")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		b, e := body, etag
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if r.Header.Get("If-None-Match") == e {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", e)
		_, _ = w.Write(b)
	}))
	defer srv.Close()
	t.Setenv("TEST_BUNDLE_TOKEN", "tok")

	db := testenv.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := testenv.LoadDemo(ctx, testenv.Shared(t).AppURL(db)); err != nil {
		t.Fatal(err)
	}
	const maxDelay = time.Second
	policyYAML := fmt.Sprintf("{run_tests: false, bundle: {url: %q, min_delay: 500ms, max_delay: 1s, token: '${TEST_BUNDLE_TOKEN}'}}", srv.URL+"/bundles/dbal.tar.gz")
	proxies := []*served{startServeWith(t, db, policyYAML), startServeWith(t, db, policyYAML)}
	revisionOf := func(s *served) string {
		_, body := s.get("/readyz")
		_, rest, _ := strings.Cut(body, "policy_revision: ")
		rev, _, _ := strings.Cut(rest, "\n")
		return rev
	}
	for _, s := range proxies {
		if code, body := s.get("/readyz"); code != 200 || !strings.Contains(body, "policy_revision: v1\n") {
			t.Fatalf("/readyz = %d %q", code, body)
		}
		if s.metric(`dbalproxy_policy_bundle_info{revision="v1"}`) != 1 {
			t.Fatal("no dbalproxy_policy_bundle_info for v1")
		}
	}

	setBundle("v2")
	start := time.Now()
	for revisionOf(proxies[0]) != "v2" || revisionOf(proxies[1]) != "v2" {
		if time.Since(start) > maxDelay+time.Second {
			t.Fatalf("not converged on v2 after %s: %q, %q", time.Since(start), revisionOf(proxies[0]), revisionOf(proxies[1]))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("converged in %s", time.Since(start))
	for _, s := range proxies {
		if s.metric(`dbalproxy_policy_bundle_info{revision="v2"}`) != 1 {
			t.Fatal("no dbalproxy_policy_bundle_info for v2")
		}
		alice := s.connect("alice")
		if err := exec(t, alice, "DELETE FROM packages"); sqlstate(err) != "42501" {
			t.Fatalf("DELETE as alice: %v", err)
		}
		audit := filepath.Join(filepath.Dir(s.cfgPath), "audit.jsonl")
		waitUntilFile(t, audit, `"policy_version":"v2@`)
	}
}

// waitUntilFile waits for the file to contain want.
func waitUntilFile(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has no %q:\n%s", path, want, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// decision_log sends each statement decision, in OPA's format, to a file
// and to an HTTP endpoint, with the audit record's decision id and without
// literals.
func TestServeDecisionLog(t *testing.T) {
	var mu sync.Mutex
	var events []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		zr, err := gzip.NewReader(r.Body)
		if err != nil || r.Header.Get("Authorization") != "Bearer dltok" {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		var batch []map[string]any
		if err := json.NewDecoder(zr).Decode(&batch); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		events = append(events, batch...)
		mu.Unlock()
	}))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "decisions.jsonl")
	s := startServe(t, fmt.Sprintf("decision_log: {url: %q, file: %q, token: dltok, flush_interval: 50ms, instance_id: px-7}\n", srv.URL+"/logs", file))
	alice := s.connect("alice")
	if err := exec(t, alice, "SELECT email FROM users WHERE email = 'secret@example.com'"); err != nil {
		t.Fatal(err)
	}
	if err := exec(t, alice, "DELETE FROM packages"); sqlstate(err) != "42501" {
		t.Fatalf("DELETE as alice: %v", err)
	}
	var deny map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for deny == nil {
		mu.Lock()
		for _, ev := range events {
			if res, _ := ev["result"].(map[string]any); res != nil && res["decision"] == "deny" {
				deny = ev
			}
		}
		mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("no deny event uploaded")
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, _ := json.Marshal(deny)
	for _, want := range []string{`"path":"dbal/decision"`, `"id":"px-7"`, `"app":"dbalproxy"`, `"allow":false`, `"command":"DELETE"`, `"revision":"`, `"timestamp":"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("deny event lacks %s:\n%s", want, b)
		}
	}
	audit := filepath.Join(filepath.Dir(s.cfgPath), "audit.jsonl")
	waitUntilFile(t, audit, fmt.Sprintf(`"decision_id":%q`, deny["decision_id"]))
	waitUntilFile(t, file, fmt.Sprintf(`"decision_id":%q`, deny["decision_id"]))
	mu.Lock()
	all, _ := json.Marshal(events)
	mu.Unlock()
	if strings.Contains(string(all), "secret@example.com") {
		t.Errorf("a literal was logged:\n%s", all)
	}
	if s.metric("dbalproxy_decision_log_dropped_total ") != 0 {
		t.Error("dbalproxy_decision_log_dropped_total missing or not 0")
	}
}

// serve --check names the bundle and decision-log keys it refuses, and
// downloads the bundle.
func TestServeCheckBundleAndDecisionLog(t *testing.T) {
	base := "backend: {url: 'postgres://u:pw@127.0.0.1:5432/app'}\nlogins:\n  - {name: a, password: pw, role: user}\n"
	code, _, errs := runCLI(t, "serve", "--check", "--config", writeConfig(t, base+
		"policy: {bundle: {url: 'ftp://x/b.tar.gz', min_delay: 2s, max_delay: 1s}}\ndecision_log: {url: 'nowhere', buffer_size: -1}\n"))
	for _, want := range []string{
		`dbalproxy: config: policy.bundle.url: "ftp://x/b.tar.gz" is not an http:// or https:// URL`,
		"dbalproxy: config: policy.bundle.max_delay: want 0 < min_delay <= max_delay",
		`dbalproxy: config: decision_log.url: "nowhere" is not an http:// or https:// URL`,
		"dbalproxy: config: decision_log.buffer_size: must not be negative",
	} {
		if code == 0 || !strings.Contains(errs, want) {
			t.Errorf("no %q (code %d):\n%s", want, code, errs)
		}
	}
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	code, _, errs = runCLI(t, "serve", "--check", "--config", writeConfig(t, base+fmt.Sprintf("policy: {bundle: {url: %q}}\n", srv.URL+"/b.tar.gz")))
	if code == 0 || !strings.Contains(errs, "dbalproxy: config: policy.bundle: ") || !strings.Contains(errs, "404 Not Found") {
		t.Fatalf("unreachable bundle: code %d\n%s", code, errs)
	}
}
