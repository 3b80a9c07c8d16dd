package policy

import (
	"strings"

	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/open-policy-agent/opa/v1/ast"
)

// InputUse returns what the current set's rules can read of the input; ok
// is false in ModeDisabled, where nothing is evaluated.
func (e *Engine) InputUse() (u *decision.InputUse, ok bool) {
	s := e.set.Load()
	if s == nil {
		return nil, false
	}
	return s.use, true
}

// analyzeInput walks every rule of the compiled modules.
func analyzeInput(c *ast.Compiler, version string) *decision.InputUse {
	u := &decision.InputUse{Version: version, Deterministic: true}
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
					u.Paths = append(u.Paths, p)
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
				u.Paths = append(u.Paths, nil)
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
