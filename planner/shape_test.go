package planner_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/dbalproxy/dbalproxy/parser"
	"github.com/dbalproxy/dbalproxy/plan"
	"github.com/dbalproxy/dbalproxy/planner"
	"github.com/dbalproxy/dbalproxy/policy"
	"github.com/dbalproxy/dbalproxy/rewrite"
	"github.com/rs/zerolog"
)

// countingEngine counts the policy evaluations.
type countingEngine struct {
	*policy.Engine
	n    atomic.Int64
	last atomic.Value // the input text of the last evaluation
}

func (c *countingEngine) Decide(ctx context.Context, in *decision.Input) (decision.Decision, error) {
	c.n.Add(1)
	c.last.Store(in.Statement.Text)
	return c.Engine.Decide(ctx, in)
}

// A text that differs from a planned one only in its constants is planned
// by shape: no policy evaluation, its own constants in what is sent, and the
// same decision.
func TestPlannerShapes(t *testing.T) {
	engine, err := policy.New(policy.Options{Dir: "../policies", Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ce := &countingEngine{Engine: engine}
	// Without the decision memo, which would serve texts of other shapes
	// with the same facts (TestPlannerMemo): the evaluations counted here
	// are the shapes'.
	pl, err := planner.New(planner.Config{Parser: parser.New(parser.Options{}), Policy: ce,
		Rewriter: rewrite.NewRewriter(0), MemoSize: -1, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	alice := &plan.Session{Principal: plan.Principal{User: "alice", Role: "user", Claims: map[string]any{"user_id": "u_alice"}}}
	bob := &plan.Session{Principal: plan.Principal{User: "bob", Role: "admin", Claims: map[string]any{"user_id": "u_bob"}}}
	decide := func(s *plan.Session, sql string) *plan.Plan {
		t.Helper()
		got, err := pl.Decide(ctx, s, sql)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	// Rewritten: each text keeps its own constant, the filter holds.
	p1 := decide(alice, "SELECT email FROM users WHERE username = 'alice'")
	if got := ce.last.Load(); got != "SELECT email FROM users WHERE username = $1" {
		t.Errorf("the policy saw %q, want the normalized text", got)
	}
	p2 := decide(alice, "SELECT email FROM users WHERE username = 'bob'")
	if ce.n.Load() != 1 {
		t.Errorf("%d policy evaluations for two texts of one shape, want 1", ce.n.Load())
	}
	for _, c := range []struct {
		plan *plan.Plan
		lit  string
	}{{p1, "'alice'"}, {p2, "'bob'"}} {
		if c.plan.Deny != nil || !strings.Contains(c.plan.SQL, "users.id = 'u_alice'") || !strings.Contains(c.plan.SQL, "username = "+c.lit) {
			t.Errorf("plan %+v: want the filter and %s", c.plan, c.lit)
		}
		if ps := c.plan.Statements[0]; ps.Decision != "rewrite" || ps.Query != "SELECT email FROM users WHERE username = $1" || !strings.Contains(ps.QueryRaw, c.lit) {
			t.Errorf("statement %+v", ps)
		}
	}

	// Not rewritten: sent as written.
	n := ce.n.Load()
	decide(alice, "SELECT slug FROM page_views WHERE level = 1")
	p3 := decide(alice, "SELECT slug FROM page_views WHERE level = 2")
	if ce.n.Load() != n+1 || p3.SQL != "SELECT slug FROM page_views WHERE level = 2" || p3.Deny != nil {
		t.Errorf("%d evaluations, plan %+v", ce.n.Load()-n, p3)
	}

	// Denied: every text of the shape, for this principal only.
	decide(alice, "DELETE FROM page_views WHERE id = 1")
	if p := decide(alice, "DELETE FROM page_views WHERE id = 2"); p.Deny == nil {
		t.Errorf("a denied shape allowed another text: %+v", p)
	}
	n = ce.n.Load()
	if p := decide(bob, "SELECT email FROM users WHERE username = 'carol'"); p.Deny != nil || strings.Contains(p.SQL, "u_alice") || ce.n.Load() != n+1 {
		t.Errorf("another principal got alice's shape: %+v", p)
	}

	// Texts with parameters, SET and multi-statement strings are planned
	// per text.
	n = ce.n.Load()
	decide(alice, "SET application_name = 'a'")
	decide(alice, "SET application_name = 'b'")
	decide(alice, "SELECT 1; SELECT 2")
	decide(alice, "SELECT 1; SELECT 3")
	if got := ce.n.Load() - n; got != 6 {
		t.Errorf("%d evaluations for SETs and multi-statement strings, want 6", got)
	}
}
