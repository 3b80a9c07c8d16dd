package planner_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/dbalproxy/dbalproxy/parser"
	"github.com/dbalproxy/dbalproxy/plan"
	"github.com/dbalproxy/dbalproxy/planner"
	"github.com/dbalproxy/dbalproxy/policy"
	"github.com/dbalproxy/dbalproxy/rewrite"
	"github.com/rs/zerolog"
)

// BenchmarkPlanner measures the per-statement decision path (parse, policy,
// rewrite) for a user whose statements get a row filter: served from the
// plan cache, and computed afresh (a new text every time).
func BenchmarkPlanner(b *testing.B) {
	engine, err := policy.New(policy.Options{Dir: "../policies", Logger: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	newPlanner := func() *planner.Planner {
		pl, err := planner.New(planner.Config{Parser: parser.New(parser.Options{}), Policy: engine,
			Rewriter: rewrite.NewRewriter(0), Logger: zerolog.Nop()})
		if err != nil {
			b.Fatal(err)
		}
		return pl
	}
	info := &plan.Session{Principal: plan.Principal{User: "alice", Role: "user", Claims: map[string]any{"user_id": "u_alice"}},
		Database: "app", BackendParams: map[string]string{"server_version": "15.18"}}
	ctx := context.Background()
	for _, q := range []struct{ name, sql, literal string }{
		{"filtered", "SELECT username, email FROM users WHERE id = $1", "SELECT username, email FROM users WHERE id = 'u_%d'"},
		{"unfiltered", "SELECT slug, title FROM page_views WHERE level >= $1", "SELECT slug, title FROM page_views WHERE level >= %d"},
	} {
		// A new text of a known shape each time: pgbench -S, or an ORM
		// that inlines its constants.
		b.Run(q.name+"/shape", func(b *testing.B) {
			pl := newPlanner()
			if _, err := pl.Decide(ctx, info, fmt.Sprintf(q.literal, 0)); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				if got, _ := pl.Decide(ctx, info, fmt.Sprintf(q.literal, i)); got.Deny != nil {
					b.Fatal(got.Deny.Message)
				}
			}
		})
		b.Run(q.name+"/cached", func(b *testing.B) {
			pl := newPlanner()
			if _, err := pl.Decide(ctx, info, q.sql); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if got, _ := pl.Decide(ctx, info, q.sql); got.Deny != nil {
					b.Fatal(got.Deny.Message)
				}
			}
		})
		b.Run(q.name+"/uncached", func(b *testing.B) {
			pl := newPlanner()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				if got, _ := pl.Decide(ctx, info, q.sql+" LIMIT "+strconv.Itoa(i)); got.Deny != nil {
					b.Fatal(got.Deny.Message)
				}
			}
		})
	}
}

// BenchmarkPlannerNewText measures a statement text never seen before that
// no shape matches (a comment makes each text new): its facts known (the
// memo holds their decision: parse, no OPA) or not (no memo: parse and
// OPA). pgbench's SELECT for a supergod login, and a three-table join for
// an admin.
func BenchmarkPlannerNewText(b *testing.B) {
	engine, err := policy.New(policy.Options{Dir: "../policies", Logger: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	backend := map[string]string{"server_version": "15.18", "TimeZone": "UTC", "client_encoding": "UTF8",
		"DateStyle": "ISO, MDY", "integer_datetimes": "on", "standard_conforming_strings": "on"}
	for _, q := range []struct {
		name, sql string
		who       plan.Principal
	}{
		{"pgbench", "SELECT abalance FROM pgbench_accounts WHERE aid = 42", plan.Principal{User: "bench", Role: "supergod"}},
		{"join3", "SELECT p.slug, u.email, k.name FROM page_views p JOIN users u ON u.id = p.owner_id JOIN packages k ON k.installed_by = u.id WHERE p.level > 1",
			plan.Principal{User: "bob", Role: "admin", Claims: map[string]any{"user_id": "u_bob"}}},
	} {
		for _, known := range []bool{true, false} {
			name := q.name + "/unknown"
			memo := -1
			if known {
				name, memo = q.name+"/known", 0
			}
			b.Run(name, func(b *testing.B) {
				pl, err := planner.New(planner.Config{Parser: parser.New(parser.Options{}), Policy: engine,
					Rewriter: rewrite.NewRewriter(0), MemoSize: memo, Logger: zerolog.Nop()})
				if err != nil {
					b.Fatal(err)
				}
				info := &plan.Session{Principal: q.who, Database: "app", BackendParams: backend}
				if got, _ := pl.Decide(ctx, info, q.sql); got.Deny != nil {
					b.Fatal(got.Deny.Message)
				}
				b.ReportAllocs()
				cpu := processCPU()
				i := 0
				for b.Loop() {
					i++
					if got, _ := pl.Decide(ctx, info, q.sql+" /* "+strconv.Itoa(i)+" */"); got.Deny != nil {
						b.Fatal(got.Deny.Message)
					}
				}
				if used := processCPU() - cpu; used > 0 {
					b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
				}
			})
		}
	}
}
