package parser

import "testing"

const (
	benchPgbench = "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"
	benchJoin    = "SELECT c.name, o.placed_at, p.title, oi.qty FROM customers c JOIN orders o ON o.customer_id = c.id JOIN order_items oi ON oi.order_id = o.id JOIN products p ON p.id = oi.product_id WHERE c.id = $1 AND o.placed_at > $2 ORDER BY o.placed_at DESC LIMIT 50"
)

func benchmarkCached(b *testing.B, sql string) {
	p := New(Options{})
	if _, err := p.Parse(sql); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.Parse(sql); err != nil {
			b.Fatal(err)
		}
	}
}

// benchmarkUncached measures the full path (parse, facts, normalize,
// fingerprint) that a cache miss takes.
func benchmarkUncached(b *testing.B, sql string) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := analyze(sql, ""); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseCached(b *testing.B) {
	b.Run("pgbench", func(b *testing.B) { benchmarkCached(b, benchPgbench) })
	b.Run("join3", func(b *testing.B) { benchmarkCached(b, benchJoin) })
}

func BenchmarkParseUncached(b *testing.B) {
	b.Run("pgbench", func(b *testing.B) { benchmarkUncached(b, benchPgbench) })
	b.Run("join3", func(b *testing.B) { benchmarkUncached(b, benchJoin) })
}
