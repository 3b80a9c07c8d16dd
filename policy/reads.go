package policy

import (
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// InputUse is what the rules of one policy set can read of their input,
// found at load by walking every rule of the set (decision rules, row rules,
// helpers, whether or not the decision reaches them). A caller that
// memoizes decisions keys them by the input without the fields no rule can
// read: two inputs that differ only there get the same decision from the
// set, as long as it is Deterministic.
type InputUse struct {
	// Version is the set's Version.
	Version string
	// Deterministic is false when a rule calls a non-deterministic
	// built-in (time.now_ns, rand.intn, http.send, ...): the same input
	// may then get another decision.
	Deterministic bool
	// reads are the input paths the rules reference, each cut at its first
	// part that is not a constant string; an empty path is the input as a
	// whole.
	reads [][]string
}

// Reads reports whether a rule may read the input field at path, e.g.
// Reads("statement", "text"): some rule references it, a part of it
// (input.statement.text.x), or a document that contains it (input,
// input.statement, input.statement[k] with a variable k).
func (u *InputUse) Reads(path ...string) bool {
	for _, r := range u.reads {
		n := min(len(r), len(path))
		same := true
		for i := 0; i < n; i++ {
			if r[i] != path[i] {
				same = false
				break
			}
		}
		if same {
			return true
		}
	}
	return false
}

// InputUse returns what the current set's rules can read of the input; ok
// is false in ModeDisabled, where nothing is evaluated.
func (e *Engine) InputUse() (u *InputUse, ok bool) {
	s := e.set.Load()
	if s == nil {
		return nil, false
	}
	return s.use, true
}

// analyzeInput walks every rule of the compiled modules.
func analyzeInput(c *ast.Compiler, version string) *InputUse {
	u := &InputUse{Version: version, Deterministic: true}
	seen := map[string]bool{}
	call := func(op ast.Ref) {
		if b := ast.BuiltinMap[op.String()]; b != nil && b.Nondeterministic {
			u.Deterministic = false
		}
	}
	var vis *ast.GenericVisitor
	vis = ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case *ast.Expr:
			if x.IsCall() {
				call(x.Operator())
			}
		case ast.Call:
			if len(x) > 0 {
				if op, ok := x[0].Value.(ast.Ref); ok {
					call(op)
				}
			}
		case ast.Ref:
			if len(x) > 0 && x[0].Equal(ast.InputRootDocument) {
				var p []string
				for _, t := range x[1:] {
					s, ok := t.Value.(ast.String)
					if !ok {
						break
					}
					p = append(p, string(s))
				}
				if k := strings.Join(p, "\x00") + "\x00"; !seen[k] {
					seen[k] = true
					u.reads = append(u.reads, p)
				}
				// Not the head again (a bare input), but what computes
				// the parts: input.tables[data.x[input.y]].
				for _, t := range x[1:] {
					vis.Walk(t)
				}
				return true
			}
		case ast.Var:
			// A bare input that is not the head of a reference.
			if x.Equal(ast.InputRootDocument.Value) && !seen["\x00"] {
				seen["\x00"] = true
				u.reads = append(u.reads, nil)
			}
		}
		return false
	})
	for _, m := range c.Modules {
		for _, r := range m.Rules {
			vis.Walk(r)
		}
	}
	return u
}
