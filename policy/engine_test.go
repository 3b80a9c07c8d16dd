package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/rs/zerolog"
)

const shippedDir = "../policies"

// writeDir writes files (relative path -> content) under a new temporary
// directory and returns it.
func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	writeFiles(t, dir, files)
	return dir
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func newEngine(t *testing.T, dir string, mode decision.Mode, runTests bool) *Engine {
	t.Helper()
	e, err := New(Options{Dir: dir, Mode: mode, RunTests: runTests, Logger: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatalf("New(%s): %v", dir, err)
	}
	return e
}

// userInput is role "user" doing one CRUD statement on public.<table>.
func userInput(role, table, kind string) *decision.Input {
	class := "write"
	if kind == "select" {
		class = "read"
	}
	return &decision.Input{
		Session: decision.Session{User: "alice", Role: role, Claims: map[string]any{"user_id": "u_alice"},
			Database: "app", ApplicationName: "test", ClientAddr: "127.0.0.1:5000"},
		Statement: decision.Statement{
			Command: strings.ToUpper(kind), Class: class,
			Tables:      []decision.Table{{Name: table, Access: []string{kind}, Columns: map[string][]string{kind: {"id"}}}},
			Fingerprint: "f00", Text: "SELECT id FROM " + table,
		},
		Backend: decision.Backend{Version: "17.2", VersionNum: 170002, Settings: backendSettings},
	}
}

// backendSettings are what PostgreSQL 17 reports in ParameterStatus.
var backendSettings = map[string]string{
	"application_name": "", "client_encoding": "UTF8", "DateStyle": "ISO, MDY",
	"default_transaction_read_only": "off", "in_hot_standby": "off", "integer_datetimes": "on",
	"IntervalStyle": "postgres", "is_superuser": "off", "scram_iterations": "4096",
	"server_encoding": "UTF8", "server_version": "17.2", "session_authorization": "proxy",
	"standard_conforming_strings": "on", "TimeZone": "UTC",
}

const allowAll = `package dbal
decision := {"allow": true, "reason": "v1 allows", "rule": "v1"}
`

const denyAll = `package dbal
decision := {"allow": false, "reason": "v2 denies", "rule": "v2"}
`

func TestShippedSet(t *testing.T) {
	e := newEngine(t, shippedDir, decision.ModeStrict, true)
	if v := e.Version(); len(v) != 12 {
		t.Errorf("Version() = %q, want 12 hex digits", v)
	}
	if e.Mode() != decision.ModeStrict {
		t.Errorf("Mode() = %q", e.Mode())
	}
	d, err := e.Decide(context.Background(), userInput("user", "users", "update"))
	if err != nil || !d.Allow {
		t.Fatalf("user update users: %+v, %v", d, err)
	}
	want := decision.Filter{SQL: `"id" = $1`, Args: []any{"u_alice"}}
	if f := d.Filters["public.users"]; f.SQL != want.SQL || len(f.Args) != 1 || f.Args[0] != "u_alice" {
		t.Errorf("filter = %+v, want %+v", f, want)
	}
	if d.TimeoutMS != 5000 || d.MaxRows != 1000 || d.Version != e.Version() {
		t.Errorf("limits/version = %d, %d, %q", d.TimeoutMS, d.MaxRows, d.Version)
	}
	d, err = e.Decide(context.Background(), userInput("user", "page_views", "delete"))
	if err != nil || d.Allow || d.Reason != `role "user" may not delete from public.page_views` {
		t.Fatalf("user delete page_views: %+v, %v", d, err)
	}
}

func TestModes(t *testing.T) {
	ctx := context.Background()
	in := userInput("user", "workflows", "select")

	strict := newEngine(t, shippedDir, "", false)
	if strict.Mode() != decision.ModeStrict {
		t.Errorf("default mode = %q", strict.Mode())
	}
	d, err := strict.Decide(ctx, in)
	if err != nil || d.Allow || d.WouldDeny {
		t.Errorf("strict: %+v, %v", d, err)
	}

	perm := newEngine(t, shippedDir, decision.ModePermissive, false)
	d, err = perm.Decide(ctx, in)
	if err != nil || !d.Allow || !d.WouldDeny || d.Reason != `role "user" may not select from public.workflows` {
		t.Errorf("permissive deny: %+v, %v", d, err)
	}
	d, err = perm.Decide(ctx, userInput("god", "workflows", "select"))
	if err != nil || !d.Allow || d.WouldDeny || d.TimeoutMS != 30000 {
		t.Errorf("permissive allow: %+v, %v", d, err)
	}

	// Disabled: no directory needed, nothing evaluated.
	dis, err := New(Options{Dir: filepath.Join(t.TempDir(), "missing"), Mode: decision.ModeDisabled})
	if err != nil {
		t.Fatal(err)
	}
	d, err = dis.Decide(ctx, in)
	if err != nil || !d.Allow || d.WouldDeny || d.Version != "" {
		t.Errorf("disabled: %+v, %v", d, err)
	}
	if dis.Version() != "disabled" || dis.Reload() != nil || dis.Mode() != decision.ModeDisabled {
		t.Errorf("disabled engine: version %q", dis.Version())
	}

	if _, err := New(Options{Dir: shippedDir, Mode: "lenient"}); err == nil {
		t.Error("unknown mode accepted")
	}
	if _, err := New(Options{}); err == nil {
		t.Error("empty Dir accepted")
	}
}

// TestFailClosed covers decisions that are undefined, malformed or fail to
// evaluate: each must deny with a reason and return an error, in strict
// mode; permissive mode allows them as WouldDeny.
func TestFailClosed(t *testing.T) {
	cases := []struct {
		name, rego string
		reason     string // substring of Reason
	}{
		{"undefined", `decision := {"allow": true} if input.nothing`, "defines no decision"},
		{"not an object", `decision := true`, "malformed"},
		{"allow is a string", `decision := {"allow": "yes"}`, "allow is a string"},
		{"allow missing", `decision := {"reason": "forgot"}`, "no allow"},
		{"filters is a number", `decision := {"allow": true, "filters": 3}`, "filters is the number 3"},
		{"unknown key", `decision := {"allow": true, "filter": {}}`, `unknown key "filter"`},
		{"unqualified table key", `decision := {"allow": true, "filters": {"users": {"sql": "true"}}}`, "schema.table"},
		{"filter without sql", `decision := {"allow": true, "checks": {"public.t": {"args": []}}}`, "no sql"},
		{"args not an array", `decision := {"allow": true, "filters": {"public.t": {"sql": "a = $1", "args": "x"}}}`, "args is a string"},
		{"negative timeout", `decision := {"allow": true, "timeout_ms": -1}`, "timeout_ms"},
		{"fractional rows", `decision := {"allow": true, "max_rows": 1.5}`, "max_rows"},
		{"reason not a string", `decision := {"allow": false, "reason": 7}`, "reason is the number 7"},
		{"columns not strings", `decision := {"allow": true, "columns": {"public.t": {"deny_read": [1]}}}`, "not only strings"},
		{"columns unknown key", `decision := {"allow": true, "columns": {"public.t": {"hide": ["a"]}}}`, "unknown key"},
		{"division by zero", `decision := {"allow": 1 / count(input.statement.functions) > 0}`, "failed while deciding"},
		{"object.get misuse", `decision := {"allow": object.get(input.statement.command, "x", true)}`, "failed while deciding"},
		{"conflicting values", "decision := {\"allow\": true} if input.statement.command\ndecision := {\"allow\": false} if input.statement.class", "failed while deciding"},
	}
	in := userInput("user", "users", "select")
	in.Statement.Functions = nil
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := writeDir(t, map[string]string{"p.rego": "package dbal\n" + c.rego + "\n"})
			e := newEngine(t, dir, decision.ModeStrict, false)
			d, err := e.Decide(context.Background(), in)
			if err == nil {
				t.Fatalf("no error; decision %+v", d)
			}
			if d.Allow || !strings.Contains(d.Reason, c.reason) {
				t.Errorf("decision %+v, want deny with reason containing %q (err %v)", d, c.reason, err)
			}
			if !strings.HasPrefix(d.Reason, "denied: ") {
				t.Errorf("reason %q does not start with denied:", d.Reason)
			}
			p := newEngine(t, dir, decision.ModePermissive, false)
			d, err = p.Decide(context.Background(), in)
			if err != nil || !d.Allow || !d.WouldDeny {
				t.Errorf("permissive: %+v, %v", d, err)
			}
		})
	}

	t.Run("nil input", func(t *testing.T) {
		e := newEngine(t, shippedDir, decision.ModeStrict, false)
		if d, err := e.Decide(context.Background(), nil); err == nil || d.Allow {
			t.Errorf("%+v, %v", d, err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		e := newEngine(t, shippedDir, decision.ModeStrict, false)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		d, err := e.Decide(ctx, userInput("god", "users", "select"))
		if !errors.Is(err, context.Canceled) || d.Allow {
			t.Errorf("%+v, %v", d, err)
		}
	})
	t.Run("bad claim", func(t *testing.T) {
		e := newEngine(t, shippedDir, decision.ModeStrict, false)
		in := userInput("god", "users", "select")
		in.Session.Claims = map[string]any{"ch": make(chan int)}
		if d, err := e.Decide(context.Background(), in); err == nil || d.Allow {
			t.Errorf("%+v, %v", d, err)
		}
	})
}

func TestDecisionShape(t *testing.T) {
	dir := writeDir(t, map[string]string{"p.rego": `package dbal
decision := {
	"allow": true, "reason": "r", "rule": "x",
	"filters": {"public.t": {"sql": "a = $1 AND b = $2 AND c = $3 AND d = $4", "args": ["s", 2, 2.5, null]}},
	"checks": {"public.t": {"sql": "a > 0"}},
	"columns": {"public.t": {"deny_read": {"z", "y"}, "deny_write": ["a"]}},
	"timeout_ms": 100, "max_rows": 7,
}
`})
	e := newEngine(t, dir, decision.ModeStrict, false)
	d, err := e.Decide(context.Background(), userInput("user", "t", "select"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(d)
	want := `{"allow":true,"reason":"r","rule":"x","filters":{"public.t":{"sql":"a = $1 AND b = $2 AND c = $3 AND d = $4","args":["s",2,2.5,null]}},"checks":{"public.t":{"sql":"a \u003e 0"}},"columns":{"public.t":{"deny_read":["y","z"],"deny_write":["a"]}},"timeout_ms":100,"max_rows":7,"version":"` + e.Version() + `"}`
	if string(got) != want {
		t.Errorf("decision\n got %s\nwant %s", got, want)
	}
	if _, ok := d.Filters["public.t"].Args[1].(int64); !ok {
		t.Errorf("integer arg is %T, want int64", d.Filters["public.t"].Args[1])
	}
}

// TestInputValue checks the direct AST conversion against the JSON encoding
// of the same Input (the documented shape).
func TestInputValue(t *testing.T) {
	in := userInput("admin", "users", "update")
	in.Session.Claims = map[string]any{"user_id": "u_1", "n": 3, "f": 1.5, "big": int64(1) << 40,
		"ok": true, "none": nil, "tags": []any{"a", 1.0}, "list": []string{"x"},
		"nested": map[string]any{"k": "v"}, "num": json.Number("12")}
	in.Statement.Tables = append(in.Statement.Tables, decision.Table{Schema: "pg_catalog", Name: "pg_class", Access: []string{"select"}, Columns: map[string][]string{}})
	in.Statement.Functions = []decision.Function{{Schema: "", Name: "now", Args: 0, Resolved: true, Candidates: []decision.FunctionCandidate{
		{Schema: "pg_catalog", Name: "now", OID: 1299, Builtin: true, Kind: "function", Volatility: "stable", Language: "internal"},
	}}, {Name: "email", Args: 1, Field: true, Candidates: []decision.FunctionCandidate{}}}
	in.Statement.Configs = []string{"search_path"}
	in.Statement.Flags = []string{"x"}
	in.Statement.Setting = &decision.Setting{Name: "search_path", Local: true}
	in.Transaction.Active = true
	in.Session.TLS = true

	got, err := inputValue(in, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ast.ValueFromReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if got.Compare(want) != 0 {
		t.Errorf("inputValue\n got %v\nwant %v", got, want)
	}

	// Nil slices and maps become empty arrays and objects.
	empty, err := inputValue(&decision.Input{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"statement.tables", "statement.functions", "statement.flags", "session.claims", "backend.settings"} {
		v, err := empty.Find(ast.MustParseRef("x." + path)[1:])
		if err != nil || v.String() == "null" {
			t.Errorf("%s = %v, %v", path, v, err)
		}
	}
}

func TestBackendCache(t *testing.T) {
	var bc backendCache
	b := decision.Backend{Version: "17.2", VersionNum: 170002, Settings: map[string]string{"TimeZone": "UTC"}}
	t1 := bc.term(&b)
	if t2 := bc.term(&decision.Backend{Version: "17.2", VersionNum: 170002, Settings: map[string]string{"TimeZone": "UTC"}}); t2 != t1 {
		t.Error("equal backend converted again")
	}
	b.Settings["TimeZone"] = "Europe/Paris" // the cache holds its own copy
	t3 := bc.term(&b)
	if t3 == t1 || t3.Value.Compare(backendTerm(&b).Value) != 0 {
		t.Errorf("changed settings: got %v", t3)
	}
	if t4 := bc.term(&decision.Backend{Version: "16.1", VersionNum: 160001, Settings: b.Settings}); t4 == t3 {
		t.Error("changed version not converted")
	}

	// Through the engine: a policy that reads the backend sees each change.
	dir := writeDir(t, map[string]string{"p.rego": `package dbal
decision := {"allow": input.backend.settings.TimeZone == "UTC", "reason": input.backend.version}
`})
	e := newEngine(t, dir, decision.ModeStrict, false)
	in := userInput("user", "t", "select")
	in.Backend.Settings = map[string]string{"TimeZone": "UTC"}
	for _, tz := range []string{"UTC", "CET", "UTC"} {
		in.Backend.Settings["TimeZone"] = tz
		if d, err := e.Decide(context.Background(), in); err != nil || d.Allow != (tz == "UTC") || d.Reason != "17.2" {
			t.Errorf("TimeZone %s: %+v, %v", tz, d, err)
		}
	}
}

func TestReload(t *testing.T) {
	dir := writeDir(t, map[string]string{"p.rego": allowAll})
	e := newEngine(t, dir, decision.ModeStrict, true)
	ctx := context.Background()
	in := userInput("user", "users", "select")
	v1 := e.Version()

	if err := e.Reload(); err != nil || e.Version() != v1 {
		t.Fatalf("unchanged reload: %v, version %s -> %s", err, v1, e.Version())
	}

	writeFiles(t, dir, map[string]string{"p.rego": denyAll})
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	if d, _ := e.Decide(ctx, in); d.Allow || d.Rule != "v2" {
		t.Errorf("after reload: %+v", d)
	}
	v2 := e.Version()
	if v2 == v1 {
		t.Error("Version did not change")
	}

	// Back to the first content: back to the first version.
	writeFiles(t, dir, map[string]string{"p.rego": allowAll})
	if err := e.Reload(); err != nil || e.Version() != v1 {
		t.Errorf("reload v1 again: %v, %s", err, e.Version())
	}
}

func TestReloadKeepsRunningSet(t *testing.T) {
	broken := map[string]map[string]string{
		"parse error":   {"p.rego": "package dbal\ndecision := {\n"},
		"compile error": {"p.rego": "package dbal\ndecision := {\"allow\": nope}\n"},
		"no decision":   {"p.rego": "package dbal\nother := true\n"},
		"bad data":      {"p.rego": allowAll, "data.json": "{not json"},
		"failing test": {"p.rego": allowAll, "p_test.rego": `package dbal_test
import data.dbal
test_denies if not data.dbal.decision.allow
`},
		"no rego": {"data.json": "{}"},
	}
	for name, files := range broken {
		t.Run(name, func(t *testing.T) {
			dir := writeDir(t, map[string]string{"p.rego": allowAll})
			var logs bytes.Buffer
			e, err := New(Options{Dir: dir, RunTests: true, Logger: zerolog.New(&logs)})
			if err != nil {
				t.Fatal(err)
			}
			v1 := e.Version()
			if err := os.Remove(filepath.Join(dir, "p.rego")); err != nil {
				t.Fatal(err)
			}
			writeFiles(t, dir, files)
			if err := e.Reload(); err == nil {
				t.Fatal("broken set accepted")
			}
			if e.Version() != v1 {
				t.Error("version changed")
			}
			if d, err := e.Decide(context.Background(), userInput("user", "users", "select")); err != nil || !d.Allow || d.Rule != "v1" {
				t.Errorf("old set does not decide: %+v, %v", d, err)
			}
			if n := strings.Count(logs.String(), "policy reload failed"); n != 1 {
				t.Errorf("%d failure lines in log:\n%s", n, logs.String())
			}
			// New refuses the same directory outright.
			if _, err := New(Options{Dir: dir, RunTests: true}); err == nil {
				t.Error("New accepted a broken set")
			}
		})
	}

	t.Run("vanished dir", func(t *testing.T) {
		dir := writeDir(t, map[string]string{"p.rego": allowAll})
		e := newEngine(t, dir, decision.ModeStrict, false)
		v1 := e.Version()
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := e.Reload(); err == nil {
			t.Fatal("reload of a vanished dir succeeded")
		}
		if d, _ := e.Decide(context.Background(), userInput("user", "users", "select")); !d.Allow || e.Version() != v1 {
			t.Errorf("old set lost: %+v", d)
		}
	})

	t.Run("tests ignored without RunTests", func(t *testing.T) {
		dir := writeDir(t, broken["failing test"])
		newEngine(t, dir, decision.ModeStrict, false)
	})
}

func TestDataFiles(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"p.rego": `package dbal
decision := {"allow": input.session.role in data.roles.allowed, "max_rows": data.limits.rows, "reason": data.msg}
`,
		"data.json":         `{"msg": "from data.json"}`,
		"roles/data.yaml":   "allowed: [admin]\n",
		"limits/x.yml":      "rows: 9\n",
		".hidden/data.json": `{"msg": "must not load"}`,
		"notes.txt":         "ignored",
	})
	e := newEngine(t, dir, decision.ModeStrict, false)
	d, err := e.Decide(context.Background(), userInput("admin", "t", "select"))
	if err != nil || !d.Allow || d.MaxRows != 9 || d.Reason != "from data.json" {
		t.Fatalf("%+v, %v", d, err)
	}
	v1 := e.Version()
	writeFiles(t, dir, map[string]string{"roles/data.yaml": "allowed: [user]\n"})
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	if e.Version() == v1 {
		t.Error("data change did not change Version")
	}
	if d, _ := e.Decide(context.Background(), userInput("admin", "t", "select")); d.Allow {
		t.Errorf("data change not applied: %+v", d)
	}
	// A file Version ignores does not change it.
	v2 := e.Version()
	writeFiles(t, dir, map[string]string{"notes.txt": "changed", ".hidden/data.json": "{}"})
	if err := e.Reload(); err != nil || e.Version() != v2 {
		t.Errorf("ignored files changed the version: %v", err)
	}
}

func TestVersionIsContentHash(t *testing.T) {
	a := newEngine(t, writeDir(t, map[string]string{"p.rego": allowAll}), decision.ModeStrict, false)
	b := newEngine(t, writeDir(t, map[string]string{"p.rego": allowAll}), decision.ModeStrict, false)
	c := newEngine(t, writeDir(t, map[string]string{"q.rego": allowAll}), decision.ModeStrict, false)
	if a.Version() != b.Version() {
		t.Errorf("same content, versions %s and %s", a.Version(), b.Version())
	}
	if a.Version() == c.Version() {
		t.Error("a renamed file kept the version")
	}
}

func TestWatch(t *testing.T) {
	oldRetry := watchRetry
	watchRetry = 50 * time.Millisecond
	t.Cleanup(func() { watchRetry = oldRetry })

	dir := writeDir(t, map[string]string{"p.rego": allowAll})
	logs := &lockedBuffer{}
	e, err := New(Options{Dir: dir, RunTests: true, Logger: zerolog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Watch(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Watch did not return after cancel")
		}
	}()

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	decides := func(rule string) func() bool {
		return func() bool {
			d, _ := e.Decide(context.Background(), userInput("user", "users", "select"))
			return d.Rule == rule
		}
	}

	waitFor("the watch to start", func() bool { return logs.count("watching the policy directory") == 1 })
	v1 := e.Version()
	writeFiles(t, dir, map[string]string{"p.rego": denyAll})
	waitFor("reload after write", func() bool { return e.Version() != v1 })
	if !decides("v2")() {
		t.Fatal("the reloaded set does not decide")
	}

	// A new subdirectory is watched too.
	writeFiles(t, dir, map[string]string{"sub/d.json": `{"x": 1}`})
	v2 := e.Version()
	waitFor("reload after subdir file", func() bool { return e.Version() != v2 })
	v3 := e.Version()
	writeFiles(t, dir, map[string]string{"sub/d.json": `{"x": 2}`})
	waitFor("reload after subdir change", func() bool { return e.Version() != v3 })

	// A broken write keeps v2 deciding.
	v4 := e.Version()
	writeFiles(t, dir, map[string]string{"p.rego": "package dbal\ndecision := {"})
	waitFor("the reload failure", func() bool { return logs.count("policy reload failed") >= 1 })
	if e.Version() != v4 || !decides("v2")() {
		t.Fatal("broken write replaced the running set")
	}

	// The directory vanishes and comes back.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	waitFor("the vanished directory", func() bool { return logs.count("directory vanished") >= 1 })
	if !decides("v2")() || e.Version() != v4 {
		t.Fatal("vanished dir replaced the running set")
	}
	writeFiles(t, dir, map[string]string{"p.rego": allowAll})
	waitFor("reload after the dir came back", decides("v1"))
}

// lockedBuffer is a log sink that tests may read while the engine writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

func TestWatchDisabled(t *testing.T) {
	e, err := New(Options{Mode: decision.ModeDisabled})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := e.Watch(ctx); err != nil {
		t.Error(err)
	}
}

func TestRunTests(t *testing.T) {
	ctx := context.Background()
	var out bytes.Buffer
	passed, failed, err := RunTests(ctx, shippedDir, &out, false)
	if err != nil || failed != 0 || passed < 60 {
		t.Fatalf("shipped set: passed %d failed %d err %v\n%s", passed, failed, err, out.String())
	}
	if !strings.Contains(out.String(), "PASS:") {
		t.Errorf("report:\n%s", out.String())
	}

	dir := writeDir(t, map[string]string{
		"p.rego": allowAll,
		"p_test.rego": `package dbal_test
import data.dbal
test_allows if data.dbal.decision.allow
test_denies if not data.dbal.decision.allow
test_rule if data.dbal.decision.rule == "v1"
todo_test_later if false
`,
	})
	out.Reset()
	passed, failed, err = RunTests(ctx, dir, &out, true)
	if err != nil || passed != 2 || failed != 1 {
		t.Fatalf("passed %d failed %d err %v\n%s", passed, failed, err, out.String())
	}
	for _, s := range []string{"test_denies", "FAIL", "test_allows", "PASS"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, out.String())
		}
	}

	if _, _, err := RunTests(ctx, writeDir(t, map[string]string{"p.rego": "package dbal\nx := {"}), &out, false); err == nil {
		t.Error("broken set: no error")
	}
	if _, _, err := RunTests(ctx, filepath.Join(t.TempDir(), "missing"), &out, false); err == nil {
		t.Error("missing dir: no error")
	}
}

// TestConcurrentDecideReload runs deciders while the set is reloaded back
// and forth; every decision must come whole from one set.
func TestConcurrentDecideReload(t *testing.T) {
	dir := writeDir(t, map[string]string{"p.rego": allowAll})
	e := newEngine(t, dir, decision.ModeStrict, false)
	ctx := context.Background()
	var stop atomic.Bool
	var wg sync.WaitGroup
	var decided atomic.Int64
	for range 8 {
		wg.Go(func() {
			in := userInput("user", "users", "select")
			for !stop.Load() {
				d, err := e.Decide(ctx, in)
				if err != nil {
					t.Error(err)
					return
				}
				if (d.Rule == "v1") != d.Allow || (d.Rule != "v1" && d.Rule != "v2") {
					t.Errorf("torn decision %+v", d)
					return
				}
				_ = e.Version()
				decided.Add(1)
			}
		})
	}
	for i := range 20 {
		content := allowAll
		if i%2 == 0 {
			content = denyAll
		}
		writeFiles(t, dir, map[string]string{"p.rego": content})
		if err := e.Reload(); err != nil {
			t.Error(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if decided.Load() == 0 {
		t.Error("no decisions made")
	}
}
