package policy

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// BenchmarkDecide measures one first-time decision with the shipped set (no
// caching happens in the engine): an allowed user UPDATE of public.users with
// row rules, a denied join, and a table-less utility statement.
func BenchmarkDecide(b *testing.B) {
	e, err := New(Options{Dir: shippedDir})
	if err != nil {
		b.Fatal(err)
	}
	join := userInput("user", "page_views", "select")
	join.Statement.Tables = append(join.Statement.Tables,
		decision.Table{Schema: "public", Name: "users", Access: []string{"select"}},
		decision.Table{Schema: "public", Name: "workflows", Access: []string{"select"}})
	set := &decision.Input{Session: userInput("user", "", "").Session, Statement: decision.Statement{Command: "SET", Class: "utility", Setting: &decision.Setting{Name: "search_path"}}}
	for _, bc := range []struct {
		name  string
		in    *decision.Input
		allow bool
	}{
		{"allow_update_users", userInput("user", "users", "update"), true},
		{"deny_join", join, false},
		{"utility_set", set, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			cpu := processCPU()
			for b.Loop() {
				d, err := e.Decide(ctx, bc.in)
				if err != nil || d.Allow != bc.allow {
					b.Fatalf("%+v, %v", d, err)
				}
			}
			reportCPU(b, cpu)
		})
	}
	// The engine's own cost: a constant decision.
	b.Run("constant_policy", func(b *testing.B) {
		dir := b.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte(allowAll), 0o644); err != nil {
			b.Fatal(err)
		}
		c, err := New(Options{Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		in := userInput("user", "users", "update")
		ctx := context.Background()
		b.ReportAllocs()
		cpu := processCPU()
		for b.Loop() {
			if _, err := c.Decide(ctx, in); err != nil {
				b.Fatal(err)
			}
		}
		reportCPU(b, cpu)
	})
	b.Run("parallel", func(b *testing.B) {
		in := userInput("admin", "users", "select")
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := e.Decide(context.Background(), in); err != nil {
					b.Error(err)
				}
			}
		})
	})
}

// reportCPU adds the process CPU time per operation since start (GC
// included), steadier than ns/op when other work shares the machine.
func reportCPU(b *testing.B, start time.Duration) {
	if used := processCPU() - start; used > 0 && b.N > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkInput compares building the input AST directly with OPA's own
// conversion of the same struct (a JSON round trip) and a decision made
// that way.
func BenchmarkInput(b *testing.B) {
	in := userInput("user", "users", "update")
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := inputValue(in, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("interface_to_value", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ast.InterfaceToValue(in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decide_eval_input_json", func(b *testing.B) {
		e, err := New(Options{Dir: shippedDir})
		if err != nil {
			b.Fatal(err)
		}
		pq := e.set.Load().query
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			rs, err := pq.Eval(ctx, rego.EvalInput(in))
			if err != nil || len(rs) != 1 {
				b.Fatal(err)
			}
		}
	})
}
