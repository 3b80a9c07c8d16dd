package planner_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dbalproxy/dbalproxy/parser"
	"github.com/dbalproxy/dbalproxy/plan"
	"github.com/dbalproxy/dbalproxy/planner"
	"github.com/dbalproxy/dbalproxy/policy"
	"github.com/dbalproxy/dbalproxy/rewrite"
	"github.com/rs/zerolog"
)

// A new text whose facts were decided before for an equal input is decided
// by the memo: no policy evaluation, the same decision. Other facts, another
// principal, a policy set that reads the text or is not deterministic, and a
// planner without the memo evaluate.
func TestPlannerMemo(t *testing.T) {
	newPlanner := func(t *testing.T, dir string, memo int) (*planner.Planner, *countingEngine) {
		engine, err := policy.New(policy.Options{Dir: dir, Logger: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		ce := &countingEngine{Engine: engine}
		pl, err := planner.New(planner.Config{Parser: parser.New(parser.Options{}), Policy: ce,
			Rewriter: rewrite.NewRewriter(0), MemoSize: memo, Logger: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		return pl, ce
	}
	ctx := context.Background()
	alice := &plan.Session{Principal: plan.Principal{User: "alice", Role: "user", Claims: map[string]any{"user_id": "u_alice"}}, ClientAddr: "127.0.0.1:1"}
	alice2 := &plan.Session{Principal: alice.Principal, ClientAddr: "127.0.0.1:2", ApplicationName: "other"}
	bob := &plan.Session{Principal: plan.Principal{User: "bob", Role: "admin", Claims: map[string]any{"user_id": "u_bob"}}}
	// Texts with parameters are planned per text (no shape): each new one
	// is parsed and decided.
	same := []string{
		"SELECT email FROM users WHERE id = $1",
		"select email from users where id = $1",
		"SELECT email FROM users WHERE id = $2 -- by id",
		"SELECT   email FROM users  WHERE id=$1 LIMIT $2",
	}
	decide := func(t *testing.T, pl *planner.Planner, s *plan.Session, sql string) *plan.Plan {
		t.Helper()
		got, err := pl.Decide(ctx, s, sql)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	t.Run("shipped", func(t *testing.T) {
		pl, ce := newPlanner(t, "../policies", 0)
		for i, sql := range same {
			s := alice
			if i%2 == 1 {
				s = alice2 // another session of the same principal
			}
			p := decide(t, pl, s, sql)
			if ce.n.Load() != 1 {
				t.Fatalf("%q: %d evaluations, want 1", sql, ce.n.Load())
			}
			if ps := p.Statements[0]; p.Deny != nil || ps.Decision != "rewrite" || ps.MaxRows != 1000 || !strings.Contains(p.SQL, "users.id = 'u_alice'") {
				t.Errorf("%q: plan %+v", sql, p)
			}
		}
		for _, c := range []struct {
			s   *plan.Session
			sql string
		}{
			{alice, "SELECT username FROM users WHERE id = $1"}, // another column
			{alice, "DELETE FROM users WHERE id = $1"},          // another command
			{bob, "SELECT email FROM users WHERE id = $1"},      // another principal
		} {
			n := ce.n.Load()
			decide(t, pl, c.s, c.sql)
			if ce.n.Load() != n+1 {
				t.Errorf("%s %q: %d evaluations, want 1", c.s.Principal.User, c.sql, ce.n.Load()-n)
			}
		}
		if p := decide(t, pl, alice, "delete from users where id = $1 -- again"); p.Deny == nil || ce.n.Load() != 4 {
			t.Errorf("a memoized denial: %d evaluations, plan %+v", ce.n.Load(), p)
		}
	})

	t.Run("off", func(t *testing.T) {
		pl, ce := newPlanner(t, "../policies", -1)
		for _, sql := range same {
			decide(t, pl, alice, sql)
		}
		if ce.n.Load() != int64(len(same)) {
			t.Errorf("%d evaluations without the memo, want %d", ce.n.Load(), len(same))
		}
	})

	for name, rule := range map[string]string{
		"reads the text":    `decision := {"allow": true, "reason": input.statement.text}`,
		"reads the client":  `decision := {"allow": input.session.client_addr != ""}`,
		"not deterministic": `decision := {"allow": time.now_ns() > 0}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte("package dbal\n"+rule+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			pl, ce := newPlanner(t, dir, 0)
			p1 := decide(t, pl, alice, same[0])
			p2 := decide(t, pl, alice2, same[1])
			if ce.n.Load() != 2 {
				t.Errorf("%d evaluations, want 2", ce.n.Load())
			}
			if name == "reads the text" && p2.Statements[0].Reason != "select email from users where id = $1" {
				t.Errorf("reasons %q, %q", p1.Statements[0].Reason, p2.Statements[0].Reason)
			}
		})
	}
}
