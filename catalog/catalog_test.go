package catalog_test

import (
	"context"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/catalog"
	"github.com/dbalproxy/dbalproxy/testenv"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunMain(m)) }

// connector connects to the test database and counts connections.
type connector struct {
	url   string
	dials atomic.Int32
}

func (c *connector) Connect(ctx context.Context, _ string) (*pgconn.PgConn, error) {
	c.dials.Add(1)
	return pgconn.Connect(ctx, c.url)
}

func exec(t *testing.T, url, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql).ReadAll(); err != nil {
		t.Fatal(err)
	}
}

func TestResolve(t *testing.T) {
	c := testenv.Shared(t)
	db := testenv.NewDatabase(t)
	url := c.AppURL(db)
	exec(t, url, `CREATE FUNCTION lower(x int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT x';
		CREATE FUNCTION my_fn(a int, b int DEFAULT 1, VARIADIC c int[] DEFAULT '{}') RETURNS int LANGUAGE sql AS 'SELECT a';
		CREATE FUNCTION eq_any(a text, b text) RETURNS bool LANGUAGE sql AS 'SELECT a = b';
		CREATE OPERATOR === (LEFTARG = text, RIGHTARG = text, FUNCTION = eq_any)`)
	cache := catalog.NewCache(catalog.CacheConfig{Connector: &connector{url: url}})
	ctx := context.Background()
	snap, err := cache.Snapshot(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Len() < 2000 {
		t.Fatalf("only %d functions", snap.Len())
	}
	// ts_rewrite with two arguments is only the one that runs a query.
	two := snap.Resolve("", "ts_rewrite", 2)
	if len(two) != 1 || two[0].Arguments != "tsquery, text" || two[0].Volatility != "volatile" || !two[0].Builtin() {
		t.Fatalf("ts_rewrite/2: %+v", two)
	}
	if three := snap.Resolve("pg_catalog", "ts_rewrite", 3); len(three) != 1 || three[0].Volatility != "immutable" {
		t.Fatalf("ts_rewrite/3: %+v", three)
	}
	if all := snap.Resolve("", "ts_rewrite", -1); len(all) != 2 {
		t.Fatalf("ts_rewrite with unknown arguments: %d candidates, want both", len(all))
	}
	// An unqualified name matches every schema; a qualified one its own.
	var own, builtin int
	for _, f := range snap.Resolve("", "lower", 1) {
		if f.Builtin() {
			builtin++
		} else if f.Schema == "public" {
			own++
		}
	}
	if own != 1 || builtin == 0 {
		t.Fatalf("lower/1: %d own, %d built-in", own, builtin)
	}
	for _, f := range snap.Resolve("pg_catalog", "lower", 1) {
		if !f.Builtin() {
			t.Fatalf("pg_catalog.lower resolved to %+v", f)
		}
	}
	// Defaults and VARIADIC widen the arity.
	for args, want := range map[int]int{0: 0, 1: 1, 2: 1, 7: 1, -1: 1} {
		if got := len(snap.Resolve("", "my_fn", args)); got != want {
			t.Errorf("my_fn with %d arguments: %d candidates, want %d", args, got, want)
		}
	}
	// Operators: only the database's own are listed.
	if fs, known := snap.ResolveOperator("", "+", 2); !known || len(fs) != 0 {
		t.Fatalf("+: %v %v", fs, known)
	}
	if fs, known := snap.ResolveOperator("", "===", 2); !known || len(fs) != 1 || fs[0].Name != "eq_any" {
		t.Fatalf("===: %v %v", fs, known)
	}
	if _, known := snap.ResolveOperator("", "===", 1); known {
		t.Fatal("=== has no prefix form")
	}
	if len(snap.BuiltinOperatorFunctions()) < 500 {
		t.Fatal("built-in operator functions missing")
	}
}

func TestCacheRefreshAndGeneration(t *testing.T) {
	c := testenv.Shared(t)
	db := testenv.NewDatabase(t)
	url := c.AppURL(db)
	conn := &connector{url: url}
	cache := catalog.NewCache(catalog.CacheConfig{Connector: conn, MinInterval: 500 * time.Millisecond})
	ctx := context.Background()
	s1, err := cache.Snapshot(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	g1 := cache.Generation()
	if s2, _ := cache.Snapshot(ctx, db); s2 != s1 || conn.dials.Load() != 1 {
		t.Fatalf("a second Snapshot read the catalog again (%d connections)", conn.dials.Load())
	}
	exec(t, url, "CREATE FUNCTION later() RETURNS int LANGUAGE sql AS 'SELECT 1'")
	if len(s1.Resolve("", "later", 0)) != 0 {
		t.Fatal("an old snapshot changed")
	}
	time.Sleep(600 * time.Millisecond)
	s3, err := cache.Refresh(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if len(s3.Resolve("", "later", 0)) != 1 {
		t.Fatal("Refresh did not see the new function")
	}
	if cache.Generation() == g1 {
		t.Fatal("the generation did not change with the catalog")
	}
	// A refresh right after another does not read the catalog again.
	n := conn.dials.Load()
	if _, err := cache.Refresh(ctx, db); err != nil || conn.dials.Load() != n {
		t.Fatalf("Refresh within MinInterval: %v, %d connections", err, conn.dials.Load()-n)
	}
	// Invalidate drops it; the next Snapshot reads again.
	cache.Invalidate()
	if _, err := cache.Snapshot(ctx, db); err != nil || conn.dials.Load() != n+1 {
		t.Fatalf("after Invalidate: %v, %d connections", err, conn.dials.Load()-n)
	}
}

// A database that cannot be read gives an error, never a snapshot.
func TestCacheError(t *testing.T) {
	cache := catalog.NewCache(catalog.CacheConfig{Connector: &connector{url: "postgres://nobody@127.0.0.1:1/x?connect_timeout=2"}})
	if s, err := cache.Snapshot(context.Background(), "x"); err == nil || s != nil {
		t.Fatalf("got %v, %v", s, err)
	}
	// Too soon to try again: still an error, quickly.
	start := time.Now()
	if _, err := cache.Snapshot(context.Background(), "x"); err == nil || time.Since(start) > time.Second {
		t.Fatalf("second try: %v after %s", err, time.Since(start))
	}
}

// TestRelations checks the columns a snapshot knows: in order, without
// dropped ones, with defaults, generated and identity columns marked, and
// InvalidateDatabase making the next Snapshot read a schema change.
func TestRelations(t *testing.T) {
	c := testenv.Shared(t)
	db := testenv.NewDatabase(t)
	url := c.AppURL(db)
	exec(t, url, `CREATE TABLE t (a int, gone int, b text DEFAULT 'x', id int GENERATED ALWAYS AS IDENTITY,
			g int GENERATED ALWAYS AS (a * 2) STORED, s serial);
		ALTER TABLE t DROP COLUMN gone;
		CREATE VIEW v AS SELECT a, b FROM t`)
	conn := &connector{url: url}
	cache := catalog.NewCache(catalog.CacheConfig{Connector: conn})
	ctx := context.Background()
	snap, err := cache.Snapshot(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	r := snap.Relation("public", "t")
	if r == nil || !r.Table {
		t.Fatalf("table t: %+v", r)
	}
	var names []string
	for _, col := range r.Columns {
		names = append(names, col.Name)
	}
	if strings.Join(names, ",") != "a,b,id,g,s" {
		t.Fatalf("columns %v", names)
	}
	if b := r.Column("b"); b.Default != "'x'::text" || b.Generated {
		t.Errorf("b: %+v", b)
	}
	if id := r.Column("id"); !id.IdentityAlways {
		t.Errorf("id: %+v", id)
	}
	if g := r.Column("g"); !g.Generated || g.Default != "" {
		t.Errorf("g: %+v", g)
	}
	if s := r.Column("s"); !strings.HasPrefix(s.Default, "nextval(") {
		t.Errorf("s: %+v", s)
	}
	if v := snap.Relation("public", "v"); v == nil || v.Table || len(v.Columns) != 2 {
		t.Errorf("view v: %+v", v)
	}
	if snap.Relation("pg_catalog", "pg_class") != nil {
		t.Error("system relations are not kept")
	}
	g := cache.Generation()
	exec(t, url, "ALTER TABLE t ALTER COLUMN a SET DEFAULT 7")
	cache.InvalidateDatabase(db)
	if cache.Generation() == g {
		t.Error("InvalidateDatabase did not change the generation")
	}
	snap, err = cache.Snapshot(ctx, db)
	if err != nil || snap.Relation("public", "t").Column("a").Default != "7" {
		t.Fatalf("after InvalidateDatabase: %v", err)
	}
}
