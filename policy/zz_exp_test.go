package policy

import (
	"context"
	"fmt"
	"os"
	"sort"

	"github.com/open-policy-agent/opa/v1/topdown"
	"syscall"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/profiler"
	"github.com/open-policy-agent/opa/v1/rego"
)

func expDir() string {
	if d := os.Getenv("EXP_DIR"); d != "" {
		return d
	}
	return shippedDir
}

func TestExpProfile(t *testing.T) {
	e, err := New(Options{Dir: expDir()})
	if err != nil {
		t.Fatal(err)
	}
	in := userInput("user", "users", "update")
	v, _ := inputValue(in)
	p := profiler.New()
	for range 50 {
		_, err := e.set.Load().query.Eval(context.Background(), rego.EvalParsedInput(v), rego.EvalQueryTracer(p))
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range p.ReportTopNResults(30, []string{"total_time_ns"}) {
		fmt.Printf("%8d us  evals %4d redo %4d  %s:%d\n", s.ExprTimeNs/1000/50, s.NumEval/50, s.NumRedo/50, s.Location.File, s.Location.Row)
	}
}

func BenchmarkExp(b *testing.B) {
	e, err := New(Options{Dir: expDir()})
	if err != nil {
		b.Fatal(err)
	}
	in := userInput("user", "users", "update")
	b.ReportAllocs()
	var r0, r1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
	for b.Loop() {
		if _, err := e.Decide(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
	cpu := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

type countTracer struct{ n map[string]int }

func (c *countTracer) Enabled() bool               { return true }
func (c *countTracer) Config() topdown.TraceConfig { return topdown.TraceConfig{} }
func (c *countTracer) TraceEvent(ev topdown.Event) {
	if ev.Op == topdown.EnterOp || ev.Op == topdown.EvalOp {
		loc := "?"
		if ev.Location != nil {
			loc = fmt.Sprintf("%s:%d", ev.Location.File, ev.Location.Row)
		}
		c.n[string(ev.Op)+" "+loc]++
	}
}

func TestExpCount(t *testing.T) {
	e, err := New(Options{Dir: expDir()})
	if err != nil {
		t.Fatal(err)
	}
	in := userInput("user", "users", "update")
	v, _ := inputValue(in)
	c := &countTracer{n: map[string]int{}}
	_, err = e.set.Load().query.Eval(context.Background(), rego.EvalParsedInput(v), rego.EvalQueryTracer(c))
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(c.n))
	enters, evals := 0, 0
	for k, n := range c.n {
		keys = append(keys, k)
		if k[0] == 'E' && k[1] == 'n' {
			enters += n
		} else {
			evals += n
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Println(c.n[k], k)
	}
	fmt.Println("enters", enters, "evals", evals)
}
