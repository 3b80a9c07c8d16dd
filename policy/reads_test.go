package policy

import (
	"testing"

	"github.com/dbalproxy/dbalproxy/decision"
)

// InputUse finds what the rules read of the input, conservatively: a whole
// document or a part under a variable key reads everything in it.
func TestInputUse(t *testing.T) {
	shipped := newEngine(t, shippedDir, decision.ModeStrict, false)
	u, ok := shipped.InputUse()
	if !ok || u.Version != shipped.Version() || !u.Deterministic {
		t.Fatalf("shipped set: %+v, %v", u, ok)
	}
	for _, c := range []struct {
		path []string
		want bool
	}{
		{[]string{"statement", "text"}, false},
		{[]string{"statement", "fingerprint"}, false},
		{[]string{"session", "client_addr"}, false},
		{[]string{"session", "application_name"}, false},
		{[]string{"backend"}, false},
		{[]string{"transaction", "active"}, false},
		{[]string{"session", "role"}, true},
		{[]string{"session", "claims"}, true},
		{[]string{"session"}, true},
		{[]string{"statement", "tables"}, true},
		{[]string{"statement", "functions"}, true},
	} {
		if got := u.Reads(c.path...); got != c.want {
			t.Errorf("shipped set: Reads(%q) = %v, want %v", c.path, got, c.want)
		}
	}

	for _, c := range []struct {
		name, rule    string
		text, tables  bool // Reads(statement, text), Reads(statement, tables)
		role          bool // Reads(session, role)
		deterministic bool
	}{
		{"field", `decision := {"allow": input.statement.text == "x"}`, true, false, false, true},
		{"below", `decision := {"allow": count(input.statement.text.x) > 0}`, true, false, false, true},
		{"whole statement", `decision := {"allow": object.get(input.statement, "text", "") == ""}`, true, true, false, true},
		{"variable key", `decision := {"allow": true} if { some k; input.statement[k] == "x" }`, true, true, false, true},
		{"computed key", `decision := {"allow": true} if { input.statement[lower("TEXT")] == "x" }`, true, true, false, true},
		{"whole input", `decision := {"allow": true} if { x := input; x.a == 1 }`, true, true, true, true},
		{"walk", `decision := {"allow": true} if { walk(input, [p, v]); v == "x" }`, true, true, true, true},
		{"key from input", `m := {"a": 1}
decision := {"allow": true} if { m[input.session.role] == 1 }`, false, false, true, true},
		{"helper not reached", `decision := {"allow": true}
h if { input.statement.text == "x" }`, true, false, false, true},
		{"function", `f(s) := s.text
decision := {"allow": f(input.statement) == ""}`, true, true, false, true},
		{"else", `decision := {"allow": false} if { input.session.role == "x" } else := {"allow": input.statement.tables == []}`, false, true, true, true},
		{"time", `decision := {"allow": time.now_ns() > 0}`, false, false, false, false},
		{"nested call", `decision := {"allow": count([rand.intn("x", 10)]) > 0}`, false, false, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEngine(t, writeDir(t, map[string]string{"p.rego": "package dbal\n" + c.rule + "\n"}), decision.ModeStrict, false)
			u, _ := e.InputUse()
			if got := u.Reads("statement", "text"); got != c.text {
				t.Errorf("Reads(statement, text) = %v, want %v (%q)", got, c.text, u.Paths)
			}
			if got := u.Reads("statement", "tables"); got != c.tables {
				t.Errorf("Reads(statement, tables) = %v, want %v (%q)", got, c.tables, u.Paths)
			}
			if got := u.Reads("session", "role"); got != c.role {
				t.Errorf("Reads(session, role) = %v, want %v (%q)", got, c.role, u.Paths)
			}
			if u.Deterministic != c.deterministic {
				t.Errorf("Deterministic = %v, want %v", u.Deterministic, c.deterministic)
			}
		})
	}
}
