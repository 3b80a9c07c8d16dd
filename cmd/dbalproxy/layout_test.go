package main

import (
	osexec "os/exec"
	"slices"
	"strings"
	"testing"
)

// layout is the dependency direction the README's Layout section
// documents: for each package, the proxy's own packages it may import.
// cmd/dbalproxy assembles everything and is not listed; nothing imports it
// or wire.
var layout = map[string][]string{
	"admin":         nil,
	"audit":         nil,
	"catalog":       nil,
	"decision":      nil,
	"identity":      nil,
	"pgbool":        nil,
	"plan":          nil,
	"pool":          nil,
	"sqlscope":      nil,
	"status":        nil,
	"testenv":       nil,
	"parser":        {"pgbool", "sqlscope"},
	"policy":        {"decision"},
	"rewrite":       {"catalog", "decision", "parser", "sqlscope"},
	"planner":       {"audit", "catalog", "decision", "parser", "plan", "sqlscope"},
	"console":       {"audit", "pool", "status"},
	"metrics":       {"audit", "pool", "status"},
	"bridge":        nil,
	"wire":          {"audit", "identity", "parser", "pgbool", "plan", "pool", "sqlscope", "status"},
	"cmd/dbalbench": {"testenv"},
}

const module = "github.com/dbalproxy/dbalproxy/"

// goList runs go list over the module with format and returns its lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := osexec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// TestLayout keeps the documented dependency direction: every package
// imports only the proxy packages the table allows (a new package must be
// added to it and to the README), and only cmd/dbalproxy imports wire.
func TestLayout(t *testing.T) {
	for _, line := range goList(t, "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"...") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], module)
		if pkg == "cmd/dbalproxy" {
			continue
		}
		allowed, known := layout[pkg]
		if !known {
			t.Errorf("package %s is not in the layout table: add it here and to the README's Layout", pkg)
			continue
		}
		for _, imp := range fields[1:] {
			dep, ours := strings.CutPrefix(imp, module)
			if ours && !slices.Contains(allowed, dep) {
				t.Errorf("%s imports %s, against the documented direction", pkg, dep)
			}
		}
	}
}

// TestNoOPABelowPolicy: the protocol server, the planner and the rewriter
// use the decision's value types, never the OPA engine, so none of them
// links an OPA package, directly or through another package.
func TestNoOPABelowPolicy(t *testing.T) {
	for _, pkg := range []string{"wire", "planner", "rewrite", "plan", "decision"} {
		for _, dep := range goList(t, "-deps", module+pkg) {
			if strings.HasPrefix(dep, "github.com/open-policy-agent/") {
				t.Errorf("%s links %s", pkg, dep)
				break
			}
		}
	}
}
