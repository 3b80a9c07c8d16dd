package wire_test

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/jackc/pgx/v5"
)

// TestAdminCannotTouchGodRows: with the shipped policies an admin (bob)
// reads every users row but updates and deletes only rows whose role is user
// or admin. An UPDATE or DELETE of a god or supergod row finds no row (0
// rows affected, no error, as under PostgreSQL's RLS USING), even an UPDATE
// that would demote the row to "user", which the write check alone allows;
// user rows stay within reach.
func TestAdminCannotTouchGodRows(t *testing.T) {
	p, _, direct := demoProxy(t, decision.ModeStrict)
	ctx := ctxT(t, 60*time.Second)
	before := digest(t, direct)

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		bob := connectMode(t, p.URL("bob"), mode)
		for _, tc := range []struct {
			sql  string
			args []any
		}{
			{"UPDATE users SET role = 'user' WHERE id = 'u_dave'", nil},
			{"UPDATE users SET role = $1 WHERE id = $2", []any{"admin", "u_carol"}},
			{"UPDATE users SET email = email WHERE id = 'u_carol'", nil},
			{"UPDATE users SET username = username || '!' WHERE role IN ('god', 'supergod') RETURNING id", nil},
			{"DELETE FROM users WHERE id = $1", []any{"u_carol"}},
			{"DELETE FROM users WHERE role = 'supergod' RETURNING id", nil},
			{"WITH d AS (DELETE FROM users WHERE id IN ('u_carol', 'u_dave') RETURNING id) SELECT id FROM d", nil},
		} {
			rows, err := bob.Query(ctx, tc.sql, tc.args...)
			if err != nil {
				t.Fatalf("%q: %v", tc.sql, err)
			}
			n := 0
			for rows.Next() {
				n++
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				t.Fatalf("%q: %v", tc.sql, err)
			}
			if n != 0 || (rows.CommandTag().RowsAffected() != 0) {
				t.Errorf("%q: %d rows returned, tag %q; want none", tc.sql, n, rows.CommandTag())
			}
		}
		wantUnchanged(t, direct, before)

		var gods int
		if err := bob.QueryRow(ctx, "SELECT count(*) FROM users WHERE role IN ('god', 'supergod')").Scan(&gods); err != nil || gods != 2 {
			t.Errorf("admin reads god rows: %d, %v; want 2", gods, err)
		}
		tx, err := bob.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if tag, err := tx.Exec(ctx, "UPDATE users SET email = $1 WHERE id = $2", "erin2@example.com", "u_erin"); err != nil || tag.RowsAffected() != 1 {
			t.Errorf("admin updates a user row: %v, %v", tag, err)
		}
		if tag, err := tx.Exec(ctx, "UPDATE users SET role = 'user' WHERE id = 'u_bob'"); err != nil || tag.RowsAffected() != 1 {
			t.Errorf("admin updates an admin row: %v, %v", tag, err)
		}
		if tag, err := tx.Exec(ctx, "DELETE FROM users WHERE id = 'u_frank'"); err != nil || tag.RowsAffected() != 1 {
			t.Errorf("admin deletes a user row: %v, %v", tag, err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		wantUnchanged(t, direct, before)
	}
}

// ---------------------------------------------------------------------------
// Differential test: the proxy's row filters against PostgreSQL's own
// row-level security.
//
// The same database holds the demo schema twice over, in a sense: the proxy
// reaches it as the tables' owner (no RLS) and rewrites each statement with
// the filters of the shipped policies, while a second role, rlsdiff_<db>,
// reads the same tables directly under RLS policies that say in SQL what
// policies/rows.rego says in Rego (the session's role and user_id come from
// the settings app.role and app.user_id). Generated statements run both ways
// for alice (user), bob (admin) and carol (god); the rows (as multisets, in
// order when the statement has LIMIT), the column names, affected-row counts
// and SQLSTATEs must agree. A statement the proxy refuses with its own 42501
// is counted, not compared; too many refusals fail the test.
//
// The grammar (rlsGen): selects over users and page_views, unaliased,
// aliased and aliased with column lists that swap the columns' names;
// joins (inner, left, comma, LATERAL), sub-selects in FROM (one table, a
// join, a UNION), CTEs (one named users), EXISTS and IN sub-selects,
// scalar sub-selects, UNION/INTERSECT/EXCEPT [ALL], aggregates with GROUP
// BY and HAVING, windows, DISTINCT, ORDER BY, LIMIT/OFFSET (then ORDER BY
// every output column), system columns in select lists and conditions,
// whole rows, ONLY and TABLESAMPLE BERNOULLI (100); conditions with
// comparisons, IN, BETWEEN, LIKE, IS NULL, OR, NOT, lower/upper/length/
// coalesce; literals inline or as parameters, in the simple and extended
// protocols; and UPDATE/DELETE of users (with FROM/USING page_views,
// RETURNING, in a CTE) in transactions that are rolled back, after all reads.
//
// DBALPROXY_RLSDIFF_N sets the number of statements per principal (default
// 150, 50 with -short) and DBALPROXY_RLSDIFF_SEED the seed (default 1).

// rlsNativePolicies mirrors policies/rows.rego for the role %[1]s.
const rlsNativePolicies = `
GRANT USAGE ON SCHEMA public TO %[1]s;
GRANT SELECT, INSERT, UPDATE, DELETE ON users, page_views TO %[1]s;
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
CREATE POLICY rlsdiff_select ON users FOR SELECT TO %[1]s USING (
    current_setting('app.role') IN ('god', 'supergod', 'admin')
    OR (current_setting('app.role') = 'user' AND id = current_setting('app.user_id')));
CREATE POLICY rlsdiff_update ON users FOR UPDATE TO %[1]s USING (
    current_setting('app.role') IN ('god', 'supergod')
    OR (current_setting('app.role') = 'admin' AND role IN ('user', 'admin'))
    OR (current_setting('app.role') = 'user' AND id = current_setting('app.user_id')))
  WITH CHECK (
    current_setting('app.role') IN ('god', 'supergod')
    OR (current_setting('app.role') = 'admin' AND role IN ('user', 'admin'))
    OR (current_setting('app.role') = 'user' AND id = current_setting('app.user_id')));
CREATE POLICY rlsdiff_delete ON users FOR DELETE TO %[1]s USING (
    current_setting('app.role') IN ('god', 'supergod')
    OR (current_setting('app.role') = 'admin' AND role IN ('user', 'admin')));
CREATE POLICY rlsdiff_insert ON users FOR INSERT TO %[1]s WITH CHECK (
    current_setting('app.role') IN ('god', 'supergod')
    OR (current_setting('app.role') = 'admin' AND role IN ('user', 'admin')));
`

// rlsPrincipal is a demo login and what the native side's settings say of it.
type rlsPrincipal struct{ login, role, userID string }

var rlsPrincipals = []rlsPrincipal{{"alice", "user", "u_alice"}, {"bob", "admin", "u_bob"}, {"carol", "god", "u_carol"}}

// nativeRLS creates the RLS role and policies in the proxy's database and
// returns the role's name.
func nativeRLS(t *testing.T, p *proxy) string {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	role := "rlsdiff_" + p.DB
	super := openConn(t, p.Cluster.SuperURL(p.DB), nil)
	if _, err := super.Exec(ctx, "CREATE ROLE "+role+" NOLOGIN"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, p.Cluster.SuperURL(p.DB))
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP OWNED BY "+role+"; DROP ROLE "+role, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Error(err)
		}
	})
	if _, err := super.Exec(ctx, fmt.Sprintf(rlsNativePolicies, role), pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	return role
}

// nativeConn is a direct connection that runs as role under RLS with pr's
// settings.
func nativeConn(t *testing.T, p *proxy, role string, pr rlsPrincipal) *pgx.Conn {
	t.Helper()
	c := openConn(t, p.Cluster.SuperURL(p.DB), nil)
	set := fmt.Sprintf("SET ROLE %s; SET app.role = '%s'; SET app.user_id = '%s'", role, pr.role, pr.userID)
	if _, err := c.Exec(ctxT(t, 10*time.Second), set, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	return c
}

// rlsResult is what one statement gave: column names and rows, or an error.
type rlsResult struct {
	cols     []string
	rows     []string
	affected int64
	code     string
	msg      string
}

func (r rlsResult) String() string {
	if r.code != "" {
		return fmt.Sprintf("ERROR %s: %s", r.code, r.msg)
	}
	return fmt.Sprintf("%d affected, columns %v, rows:\n\t\t%s", r.affected, r.cols, strings.Join(r.rows, "\n\t\t"))
}

// rlsCase is one generated statement.
type rlsCase struct {
	sql     string
	args    []any
	mode    pgx.QueryExecMode
	ordered bool // compare rows in order (the statement has LIMIT)
	write   bool // run in a transaction that is rolled back
}

// rlsRun runs c on conn and returns its result; rows are sorted unless c
// is ordered.
func rlsRun(ctx context.Context, conn *pgx.Conn, c rlsCase) rlsResult {
	var res rlsResult
	fail := func(err error) rlsResult {
		if pe := asPgErr(err); pe != nil {
			return rlsResult{code: pe.Code, msg: pe.Message + " / " + pe.Detail}
		}
		return rlsResult{code: "client", msg: err.Error()}
	}
	var tx pgx.Tx
	q := func(sql string, args ...any) (pgx.Rows, error) { return conn.Query(ctx, sql, args...) }
	if c.write {
		var err error
		if tx, err = conn.Begin(ctx); err != nil {
			return fail(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		q = func(sql string, args ...any) (pgx.Rows, error) { return tx.Query(ctx, sql, args...) }
	}
	rows, err := q(c.sql, append([]any{c.mode}, c.args...)...)
	if err != nil {
		return fail(err)
	}
	for _, fd := range rows.FieldDescriptions() {
		res.cols = append(res.cols, fd.Name)
	}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			rows.Close()
			return fail(err)
		}
		cells := make([]string, len(vals))
		for i, v := range vals {
			if tm, ok := v.(time.Time); ok {
				v = tm.UTC().Format(time.RFC3339Nano)
			}
			cells[i] = fmt.Sprintf("%#v", v)
		}
		res.rows = append(res.rows, strings.Join(cells, " | "))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	res.affected = rows.CommandTag().RowsAffected()
	if !c.ordered {
		sort.Strings(res.rows)
	}
	return res
}

// proxyDenied reports whether r is the proxy's own refusal (42501 with a
// decision id), other than a write check's violation, which PostgreSQL's
// RLS reports with the same SQLSTATE and message.
func proxyDenied(r rlsResult) bool {
	return r.code == "42501" && strings.Contains(r.msg, "decision_id=") && !strings.HasPrefix(r.msg, "new row violates row-level security policy")
}

// rlsSame compares a native and a proxy result.
func rlsSame(native, viaProxy rlsResult) bool {
	if native.code != "" || viaProxy.code != "" {
		return native.code == viaProxy.code
	}
	return native.affected == viaProxy.affected && slices.Equal(native.cols, viaProxy.cols) && slices.Equal(native.rows, viaProxy.rows)
}

func rlsEnvInt(name string, def int) int {
	if s := os.Getenv(name); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			return n
		}
	}
	return def
}

// TestRLSDifferential compares the proxy with PostgreSQL's row-level
// security on generated statements (see above).
func TestRLSDifferential(t *testing.T) {
	n := 150
	if testing.Short() {
		n = 50
	}
	n = rlsEnvInt("DBALPROXY_RLSDIFF_N", n)
	seed := int64(rlsEnvInt("DBALPROXY_RLSDIFF_SEED", 1))
	p, _, _ := demoProxy(t, decision.ModeStrict)
	role := nativeRLS(t, p)
	ctx := ctxT(t, 10*time.Minute)

	mismatches := 0
	for _, pr := range rlsPrincipals {
		native := nativeConn(t, p, role, pr)
		viaProxy := connect(t, p.URL(pr.login))
		g := newRLSGen(seed*1000+int64(len(pr.login))*7+int64(pr.role[0]), pr)
		var reads, writes []rlsCase
		for range n {
			c := g.statement()
			if c.write {
				writes = append(writes, c)
			} else {
				reads = append(reads, c)
			}
		}
		// Reads first: a rolled-back write leaves its transaction id in
		// xmax of the rows it touched, and reads may show xmax.
		denied, errs, nonEmpty := 0, 0, 0
		errCodes := map[string]int{}
		var deniedSample []string
		for _, c := range append(reads, writes...) {
			nr := rlsRun(ctx, native, c)
			vr := rlsRun(ctx, viaProxy, c)
			if proxyDenied(vr) {
				denied++
				if len(deniedSample) < 5 {
					deniedSample = append(deniedSample, c.sql+" -> "+vr.msg)
				}
				continue
			}
			if nr.code != "" {
				errs++
				errCodes[nr.code]++
			} else if len(nr.rows) > 0 && nr.rows[0] != "0" {
				nonEmpty++
			}
			if !rlsSame(nr, vr) {
				mismatches++
				t.Errorf("%s (%s) mismatch\n  query: %s\n  args:  %v\n  mode:  %v\n  PostgreSQL RLS: %s\n  proxy:          %s",
					pr.login, pr.role, c.sql, c.args, c.mode, nr, vr)
				if mismatches >= 15 {
					t.Fatal("too many mismatches")
				}
			}
		}
		t.Logf("%s: %d statements (%d reads, %d writes): %d with rows, %d refused by the proxy, %d errors on both sides %v",
			pr.login, n, len(reads), len(writes), nonEmpty, denied, errs, errCodes)
		for _, s := range deniedSample {
			t.Logf("  refused: %s", s)
		}
		if denied*5 > n {
			t.Errorf("%s: the proxy refused %d of %d generated statements; the generator should make allowed ones: %v", pr.login, denied, n, deniedSample)
		}
		if errs*5 > n {
			t.Errorf("%s: %d of %d generated statements failed on PostgreSQL itself; the generator should make valid ones", pr.login, errs, n)
		}
	}
}

// --- the statement generator -------------------------------------------------

// gcol is a column a FROM item exposes: its visible name, its type (text,
// int, bool, ts, tid) and the pool its values come from.
type gcol struct{ name, typ, pool string }

// grel is a FROM item: the name columns are qualified with, its columns,
// and for a table reference the table (which has system columns).
type grel struct {
	qual   string
	cols   []gcol
	table  string
	joined bool // inside a JOIN: unqualified names do not reach it directly
	plain  bool // an unaliased table: its columns may be schema-qualified
}

// gscope is one query level.
type gscope struct {
	rels   []*grel
	parent *gscope
}

var rlsTables = map[string][]gcol{
	"users": {{"id", "text", "users.id"}, {"username", "text", "users.username"}, {"email", "text", "users.email"},
		{"role", "text", "users.role"}, {"created_at", "ts", ""}},
	"page_views": {{"id", "int", "page_views.id"}, {"slug", "text", "page_views.slug"}, {"title", "text", "page_views.title"},
		{"level", "int", "page_views.level"}, {"owner_id", "text", "users.id"}, {"is_active", "bool", ""}, {"created_at", "ts", ""}},
}

var rlsPools = map[string][]any{
	"users.id":         {"u_alice", "u_bob", "u_carol", "u_dave", "u_erin", "u_frank", "u_zoe"},
	"users.username":   {"alice", "bob", "carol", "dave", "erin", "frank", "zoe"},
	"users.email":      {"alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com", "erin@example.com", "x@example.com"},
	"users.role":       {"user", "admin", "god", "supergod"},
	"page_views.id":    {1, 2, 3, 4, 5, 9},
	"page_views.slug":  {"home", "about", "pricing", "admin", "drafts", "none"},
	"page_views.title": {"Home", "About us", "Pricing", "Admin console", "Drafts"},
	"page_views.level": {0, 1, 2, 3},
}

// rlsGen makes random statements over users and page_views from a seeded
// source, so a run is reproducible.
type rlsGen struct {
	r       *rand.Rand
	role    string
	params  bool // literals may become $n parameters
	args    []any
	seq     int
	writing bool // inside UPDATE/DELETE: no system columns but ctid and tableoid
	shadow  bool // a CTE named users is in scope: the table is public.users
	own     map[string]any
}

func newRLSGen(seed int64, pr rlsPrincipal) *rlsGen {
	return &rlsGen{r: rand.New(rand.NewSource(seed)), role: pr.role, own: map[string]any{
		"users.id": pr.userID, "users.username": pr.login, "users.email": pr.login + "@example.com", "users.role": pr.role,
	}}
}

func (g *rlsGen) pick(n int) int            { return g.r.Intn(n) }
func (g *rlsGen) chance(p float64) bool     { return g.r.Float64() < p }
func (g *rlsGen) oneOf(xs ...string) string { return xs[g.pick(len(xs))] }

func rlsLiteral(v any) string {
	switch x := v.(type) {
	case string:
		return "'" + strings.ReplaceAll(x, "'", "''") + "'"
	case int:
		return strconv.Itoa(x)
	case bool:
		return strconv.FormatBool(x)
	}
	panic(fmt.Sprintf("rlsLiteral %T", v))
}

// lit is v as a literal or, in a statement with parameters, often as $n.
func (g *rlsGen) lit(v any) string {
	if g.params && g.chance(0.5) {
		g.args = append(g.args, v)
		return fmt.Sprintf("$%d", len(g.args))
	}
	return rlsLiteral(v)
}

func (g *rlsGen) value(c gcol) any {
	if v, ok := g.own[c.pool]; ok && g.chance(0.4) {
		// The principal's own row: for role user the one row a filter
		// lets through, so that conditions often keep it.
		return v
	}
	if vs := rlsPools[c.pool]; len(vs) > 0 {
		return vs[g.pick(len(vs))]
	}
	switch c.typ {
	case "int":
		return g.pick(5)
	case "bool":
		return g.chance(0.5)
	}
	return "x"
}

// pattern is a LIKE pattern that matches some of c's values.
func (g *rlsGen) pattern(c gcol) string {
	s, _ := g.value(c).(string)
	if s == "" {
		s = "x"
	}
	switch g.pick(3) {
	case 0:
		return s[:1+g.pick(min(3, len(s)))] + "%"
	case 1:
		return "%" + s[len(s)-1-g.pick(min(3, len(s))):]
	}
	i := g.pick(len(s))
	return "%" + s[i:i+1] + "%"
}

// nameInUse reports whether a FROM item of sc or an enclosing level is
// called name.
func nameInUse(sc *gscope, name string) bool {
	for ; sc != nil; sc = sc.parent {
		for _, r := range sc.rels {
			if r.qual == name {
				return true
			}
		}
	}
	return false
}

// baseRel is a reference to table: unaliased, aliased, or aliased with a
// column list that renames some of its columns (possibly to each other's
// names).
func (g *rlsGen) baseRel(sc *gscope, table string) (*grel, string) {
	g.seq++
	r := &grel{table: table, cols: slices.Clone(rlsTables[table])}
	only, sample := "", ""
	if g.chance(0.08) {
		only = "ONLY "
	}
	if g.chance(0.08) {
		sample = " TABLESAMPLE BERNOULLI (100)"
	}
	k := g.pick(10)
	if k < 2 && !nameInUse(sc, table) && !g.shadow {
		r.qual, r.plain = table, true
		return r, only + g.oneOf(table, "public."+table) + sample
	}
	r.qual = fmt.Sprintf("%c%d", table[0], g.seq)
	if g.shadow {
		table = "public." + table
	}
	if k < 6 {
		return r, only + table + g.oneOf(" ", " AS ") + r.qual + sample
	}
	// A column list: rename the first n columns, mostly to each other's
	// names (users AS u(username, id)), so that the client's id is not the
	// table's.
	n := 1 + g.pick(3)
	names := make([]string, n)
	if g.chance(0.3) {
		copy(names, []string{"a", "b", "c"}[:n])
	} else {
		n = max(n, 2)
		names = names[:0]
		for _, c := range r.cols[:n] {
			names = append(names, c.name)
		}
		names = append(names[1:], names[0]) // rotated: no column keeps its name
	}
	for i := range names {
		r.cols[i].name = names[i]
	}
	return r, fmt.Sprintf("%s%s AS %s(%s)%s", only, table, r.qual, strings.Join(names, ", "), sample)
}

// ref refers to column c of r from level sc: qualified, or bare when r is
// sc's only FROM item.
func (g *rlsGen) ref(sc *gscope, r *grel, c gcol) string {
	if len(sc.rels) == 1 && sc.rels[0] == r && !r.joined && g.chance(0.35) {
		return c.name
	}
	if r.plain && g.chance(0.2) {
		return "public." + r.qual + "." + c.name
	}
	return r.qual + "." + c.name
}

func (g *rlsGen) randRel(sc *gscope) *grel { return sc.rels[g.pick(len(sc.rels))] }

func (g *rlsGen) randCol(r *grel, typs ...string) (gcol, bool) {
	var cs []gcol
	for _, c := range r.cols {
		if len(typs) == 0 || slices.Contains(typs, c.typ) {
			cs = append(cs, c)
		}
	}
	if len(cs) == 0 {
		return gcol{}, false
	}
	return cs[g.pick(len(cs))], true
}

// colPred is a condition on one column.
func (g *rlsGen) colPred(ref string, c gcol) string {
	switch c.typ {
	case "text":
		switch g.pick(14) {
		case 0, 1, 2:
			return ref + " = " + g.lit(g.value(c))
		case 3:
			return ref + " <> " + g.lit(g.value(c))
		case 4:
			return ref + g.oneOf(" < ", " >= ") + g.lit(g.value(c))
		case 5:
			return ref + " IN (" + g.lit(g.value(c)) + ", " + g.lit(g.value(c)) + ", " + g.lit(g.value(c)) + ")"
		case 6:
			return ref + " NOT IN (" + g.lit(g.value(c)) + ", " + g.lit(g.value(c)) + ")"
		case 7:
			return ref + " BETWEEN " + g.lit(g.value(c)) + " AND " + g.lit(g.value(c))
		case 8:
			return ref + " LIKE " + g.lit(g.pattern(c))
		case 9:
			return ref + " NOT LIKE " + g.lit(g.pattern(c))
		case 10:
			return ref + g.oneOf(" IS NULL", " IS NOT NULL")
		case 11:
			return "lower(" + ref + ") = " + g.lit(g.value(c))
		case 12:
			return "length(" + ref + ") > " + g.lit(3+g.pick(8))
		default:
			return "coalesce(" + ref + ", 'none') = " + g.lit(g.value(c))
		}
	case "int":
		switch g.pick(6) {
		case 0, 1:
			return ref + " = " + g.lit(g.value(c))
		case 2:
			return ref + g.oneOf(" < ", " > ", " <> ", " >= ") + g.lit(g.value(c))
		case 3:
			return ref + " BETWEEN " + g.lit(g.value(c)) + " AND " + g.lit(g.value(c))
		case 4:
			return ref + " IN (" + g.lit(g.value(c)) + ", " + g.lit(g.value(c)) + ")"
		default:
			return ref + " IS NOT NULL"
		}
	case "bool":
		if g.chance(0.25) {
			return ref + " = " + g.lit(g.chance(0.5))
		}
		return g.oneOf(ref, "NOT "+ref, ref+" IS TRUE")
	case "tid":
		return ref + g.oneOf(" = ", " <> ", " > ") + fmt.Sprintf("'(0,%d)'", 1+g.pick(6))
	}
	return ref + g.oneOf(" IS NOT NULL", " < '2100-01-01'", " > '2000-01-01'")
}

// sysPred is a condition on a system column of a table reference of sc, or
// "" if sc has none.
func (g *rlsGen) sysPred(sc *gscope) string {
	var tables []*grel
	for _, r := range sc.rels {
		if r.table != "" {
			tables = append(tables, r)
		}
	}
	if len(tables) == 0 {
		return ""
	}
	r := tables[g.pick(len(tables))]
	k := g.pick(6)
	if g.writing {
		k %= 3
	}
	switch k {
	case 0:
		return fmt.Sprintf("%s.ctid %s '(0,%d)'", r.qual, g.oneOf("=", "<>", ">", "<="), 1+g.pick(6))
	case 1:
		return fmt.Sprintf("%s.tableoid = '%s'::regclass", r.qual, r.table)
	case 2:
		return fmt.Sprintf("%s.tableoid::regclass::text = '%s'", r.qual, r.table)
	case 3:
		return r.qual + ".xmin::text <> '0'"
	case 4:
		return r.qual + ".cmin::text = '0'"
	}
	return r.qual + ".xmax::text " + g.oneOf("=", "<>") + " '0'"
}

func (g *rlsGen) simplePred(sc *gscope) string {
	r := g.randRel(sc)
	c, _ := g.randCol(r)
	return g.colPred(g.ref(sc, r, c), c)
}

func (g *rlsGen) pred(sc *gscope, depth int) string {
	k := g.pick(20)
	if depth >= 2 && k >= 11 && k < 19 {
		k = 0
	}
	switch {
	case k < 11:
		return g.simplePred(sc)
	case k < 13:
		return "(" + g.pred(sc, depth+1) + " OR " + g.pred(sc, depth+1) + ")"
	case k < 14:
		return "NOT (" + g.pred(sc, depth+1) + ")"
	case k < 15:
		return g.pred(sc, depth+1) + " AND " + g.pred(sc, depth+1)
	case k < 17:
		return g.existsPred(sc, depth)
	case k < 19:
		return g.inPred(sc, depth)
	}
	if p := g.sysPred(sc); p != "" {
		return p
	}
	return g.simplePred(sc)
}

// idRef is a reference to a column of sc holding user ids, or "".
func (g *rlsGen) idRef(sc *gscope) string {
	var refs []string
	for _, r := range sc.rels {
		for _, c := range r.cols {
			if c.pool == "users.id" {
				refs = append(refs, r.qual+"."+c.name)
			}
		}
	}
	if len(refs) == 0 {
		return ""
	}
	return refs[g.pick(len(refs))]
}

// subTable is the table a sub-select reads. Inside an UPDATE or DELETE of
// users it is page_views: a decision has one filter per table, and for a
// write it is the select rule AND the update (delete) rule, which the
// rewrite applies to every reference to users in the statement. So an
// admin's `UPDATE users ... WHERE EXISTS (SELECT 1 FROM users WHERE role =
// 'god')` or `RETURNING (SELECT count(*) FROM users)` sees no god rows in
// the sub-select, where RLS applies the UPDATE policy to the target only:
// the proxy is stricter than RLS there (never looser). Telling the two
// apart needs the decision to carry the target's filter separately.
func (g *rlsGen) subTable() string {
	if g.writing || g.chance(0.5) {
		return "page_views"
	}
	return "users"
}

// existsPred is [NOT] EXISTS over a table, correlated on a user id when sc
// has one.
func (g *rlsGen) existsPred(sc *gscope, depth int) string {
	inner := &gscope{parent: sc}
	r, from := g.baseRel(inner, g.subTable())
	inner.rels = []*grel{r}
	var conds []string
	if outer := g.idRef(sc); outer != "" && g.chance(0.8) {
		conds = append(conds, g.idRef(inner)+" = "+outer)
	}
	if g.chance(0.6) || len(conds) == 0 {
		conds = append(conds, g.pred(inner, depth+1))
	}
	return g.oneOf("", "NOT ") + "EXISTS (SELECT 1 FROM " + from + " WHERE " + strings.Join(conds, " AND ") + ")"
}

// inPred is <user id> [NOT] IN (SELECT <user id> FROM ...).
func (g *rlsGen) inPred(sc *gscope, depth int) string {
	outer := g.idRef(sc)
	if outer == "" {
		return g.simplePred(sc)
	}
	inner := &gscope{parent: sc}
	r, from := g.baseRel(inner, g.subTable())
	inner.rels = []*grel{r}
	sub := "SELECT " + g.idRef(inner) + " FROM " + from
	if g.chance(0.7) {
		sub += " WHERE " + g.pred(inner, depth+1)
	}
	not := ""
	if g.chance(0.3) {
		// NOT IN meets NULL owner ids: still the same on both sides.
		not = "NOT "
	}
	return outer + " " + not + "IN (" + sub + ")"
}

// joinOn is the join condition of a users and a page_views reference.
func joinOn(u, p *grel) string {
	var uid, owner string
	for _, c := range u.cols {
		if c.pool == "users.id" {
			uid = u.qual + "." + c.name
		}
	}
	for _, c := range p.cols {
		if c.pool == "users.id" {
			owner = p.qual + "." + c.name
		}
	}
	return owner + " = " + uid
}

// derivedBody is a sub-select over one table reference for a FROM item or
// a CTE, and the columns it outputs.
func (g *rlsGen) derivedBody(sc *gscope, table string) (string, []gcol) {
	inner := &gscope{parent: sc}
	r, from := g.baseRel(inner, table)
	inner.rels = []*grel{r}
	var items []string
	var cols []gcol
	seen := map[string]bool{}
	for _, c := range r.cols {
		if g.chance(0.6) && !seen[c.name] {
			items = append(items, g.ref(inner, r, c))
			cols = append(cols, c)
			seen[c.name] = true
		}
	}
	if len(items) == 0 || g.chance(0.2) {
		c := r.cols[0]
		items = append(items, g.ref(inner, r, c)+" AS k")
		cols = append(cols, gcol{"k", c.typ, c.pool})
	}
	if g.chance(0.25) {
		items = append(items, r.qual+".ctid")
		cols = append(cols, gcol{"ctid", "tid", ""})
	}
	if c, ok := g.randCol(r, "text"); ok && g.chance(0.3) {
		items = append(items, "lower("+g.ref(inner, r, c)+") AS l")
		cols = append(cols, gcol{"l", "text", c.pool})
	}
	body := "SELECT " + strings.Join(items, ", ") + " FROM " + from
	if g.chance(0.6) {
		body += " WHERE " + g.pred(inner, 1)
	}
	return body, cols
}

// derivedJoin is a sub-select over users joined with page_views.
func (g *rlsGen) derivedJoin(sc *gscope) (string, []gcol) {
	inner := &gscope{parent: sc}
	u, uf := g.baseRel(inner, "users")
	p, pf := g.baseRel(inner, "page_views")
	u.joined, p.joined = true, true
	inner.rels = []*grel{u, p}
	uc, _ := g.randCol(u, "text")
	body := fmt.Sprintf("SELECT %s AS k, %s.%s AS uc, %s.level AS lv FROM %s %s %s ON %s",
		g.idRef(&gscope{rels: []*grel{u}}), u.qual, uc.name, p.qual, uf, g.oneOf("JOIN", "LEFT JOIN"), pf, joinOn(u, p))
	if g.chance(0.6) {
		body += " WHERE " + g.pred(inner, 1)
	}
	return body, []gcol{{"k", "text", "users.id"}, {"uc", "text", uc.pool}, {"lv", "int", "page_views.level"}}
}

// derivedSetOp is a UNION of user ids from users and page_views.
func (g *rlsGen) derivedSetOp(sc *gscope) (string, []gcol) {
	var arms []string
	for _, table := range []string{"users", "page_views"} {
		inner := &gscope{parent: sc}
		r, from := g.baseRel(inner, table)
		inner.rels = []*grel{r}
		arm := "SELECT " + g.idRef(inner) + " AS k FROM " + from
		if g.chance(0.6) {
			arm += " WHERE " + g.pred(inner, 1)
		}
		arms = append(arms, arm)
	}
	return arms[0] + g.oneOf(" UNION ", " UNION ALL ", " EXCEPT ") + arms[1], []gcol{{"k", "text", "users.id"}}
}

// fromClause adds the FROM items of a level to sc and returns the clause
// and the join conditions its WHERE must hold.
func (g *rlsGen) fromClause(sc *gscope, top bool) (string, []string) {
	users := func() string {
		if g.chance(0.7) {
			return "users"
		}
		return "page_views"
	}
	switch k := g.pick(12); {
	case k < 4:
		r, from := g.baseRel(sc, users())
		sc.rels = append(sc.rels, r)
		return from, nil
	case k < 7:
		u, uf := g.baseRel(sc, "users")
		p, pf := g.baseRel(sc, "page_views")
		u.joined, p.joined = true, true
		sc.rels = append(sc.rels, u, p)
		on := joinOn(u, p)
		if g.chance(0.3) {
			on += " AND " + g.simplePred(&gscope{rels: []*grel{u, p}, parent: sc.parent})
		}
		switch g.pick(5) {
		case 0:
			return uf + g.oneOf(" JOIN ", " INNER JOIN ") + pf + " ON " + on, nil
		case 1:
			return uf + " LEFT JOIN " + pf + " ON " + on, nil
		case 2:
			return pf + " JOIN " + uf + " ON " + on, nil
		}
		// Pages and their owner, if the principal may see it.
		return pf + " LEFT JOIN " + uf + " ON " + on, nil
	case k < 8:
		u, uf := g.baseRel(sc, "users")
		p, pf := g.baseRel(sc, "page_views")
		sc.rels = append(sc.rels, u, p)
		return uf + ", " + pf, []string{joinOn(u, p)}
	case k < 10 && top:
		var body string
		var cols []gcol
		switch g.pick(5) {
		case 0:
			body, cols = g.derivedJoin(sc)
		case 1:
			body, cols = g.derivedSetOp(sc)
		default:
			body, cols = g.derivedBody(sc, users())
		}
		g.seq++
		r := &grel{qual: fmt.Sprintf("s%d", g.seq), cols: cols}
		sc.rels = append(sc.rels, r)
		return "(" + body + ") " + r.qual, nil
	case k < 11 && top:
		// page_views p, LATERAL (SELECT ... FROM users u WHERE u.id = p.owner_id ...) x
		p, pf := g.baseRel(sc, "page_views")
		sc.rels = append(sc.rels, p)
		inner := &gscope{parent: sc}
		u, uf := g.baseRel(inner, "users")
		inner.rels = []*grel{u}
		var items []string
		var cols []gcol
		for i, c := range u.cols {
			if i == 0 || g.chance(0.4) {
				items = append(items, g.ref(inner, u, c)+" AS x"+strconv.Itoa(i))
				cols = append(cols, gcol{"x" + strconv.Itoa(i), c.typ, c.pool})
			}
		}
		where := g.idRef(inner) + " = " + g.idRef(&gscope{rels: []*grel{p}})
		if g.chance(0.5) {
			where += " AND " + g.pred(inner, 1)
		}
		g.seq++
		x := &grel{qual: fmt.Sprintf("x%d", g.seq), cols: cols}
		sc.rels = append(sc.rels, x)
		sub := "(SELECT " + strings.Join(items, ", ") + " FROM " + uf + " WHERE " + where + ") " + x.qual
		if g.chance(0.5) {
			p.joined, x.joined = true, true
			return pf + " LEFT JOIN LATERAL " + sub + " ON true", nil
		}
		return pf + ", LATERAL " + sub, nil
	}
	r, from := g.baseRel(sc, "users")
	sc.rels = append(sc.rels, r)
	return from, nil
}

// selectItems is a select list over sc and its number of columns. ordered
// lists give system columns of types without ordering as text.
func (g *rlsGen) selectItems(sc *gscope, ordered bool) (string, int) {
	switch g.pick(12) {
	case 0:
		n := 0
		for _, r := range sc.rels {
			n += len(r.cols)
		}
		return "*", n
	case 1:
		r := g.randRel(sc)
		return r.qual + ".*", len(r.cols)
	}
	var items []string
	// A system column and a whole row of one fenced table make the proxy
	// refuse the statement: one select list has one or the other.
	sys, whole := false, false
	for range 1 + g.pick(4) {
		r := g.randRel(sc)
		switch k := g.pick(22); {
		case k < 13 && r.joined && r.table != "" && !sys && g.chance(0.3):
			// The whole row of a joined table, often an outer join's
			// nullable side.
			items = append(items, r.qual+"::text")
			whole = true
		case k < 13:
			c, _ := g.randCol(r)
			items = append(items, g.ref(sc, r, c))
		case k < 15:
			if c, ok := g.randCol(r, "text"); ok {
				items = append(items, g.oneOf("lower", "upper", "length")+"("+g.ref(sc, r, c)+")")
			} else {
				items = append(items, "coalesce("+r.qual+"."+r.cols[0].name+", "+r.qual+"."+r.cols[0].name+")")
			}
		case k < 18 && r.table != "" && !whole:
			sys = true
			col := g.oneOf("ctid", "tableoid", "xmin", "xmax", "cmin", "cmax")
			if ordered && col != "ctid" && col != "tableoid" {
				items = append(items, r.qual+"."+col+"::text")
			} else {
				items = append(items, r.qual+"."+col)
			}
		case k < 19:
			if id := g.idRef(sc); id != "" {
				g.seq++
				q := fmt.Sprintf("q%d", g.seq)
				users := "users"
				if g.shadow {
					users = "public.users"
				}
				switch g.pick(3) {
				case 0:
					items = append(items, fmt.Sprintf("(SELECT count(*) FROM page_views %s WHERE %s.owner_id = %s)", q, q, id))
				case 1:
					items = append(items, fmt.Sprintf("(SELECT max(%s.email) FROM %s %s WHERE %s.id = %s)", q, users, q, q, id))
				default:
					items = append(items, fmt.Sprintf("(SELECT count(*) FROM %s %s WHERE %s.id <> %s AND %s.role LIKE 'u%%')", users, q, q, id, q))
				}
				continue
			}
			fallthrough
		case k < 20:
			items = append(items, "count(*) OVER ()")
		default:
			if sys {
				items = append(items, "1")
				continue
			}
			// A whole row: NULL where an outer join found no match.
			items = append(items, r.qual+"::text")
			whole = true
		}
	}
	return strings.Join(items, ", "), len(items)
}

func positions(n int) string {
	ps := make([]string, n)
	for i := range ps {
		ps[i] = strconv.Itoa(i + 1)
	}
	return strings.Join(ps, ", ")
}

// limit is an ORDER BY of every output column with LIMIT and OFFSET.
func (g *rlsGen) limit(n int) string {
	s := " ORDER BY " + positions(n) + " LIMIT " + g.lit(1+g.pick(4))
	if g.chance(0.4) {
		s += " OFFSET " + g.lit(g.pick(3))
	}
	return s
}

// plainSelect is a SELECT with optional CTE, joins, WHERE, DISTINCT,
// aggregates, ORDER BY and LIMIT.
func (g *rlsGen) plainSelect() (string, bool) {
	sc := &gscope{}
	with, from := "", ""
	var conds []string
	if g.chance(0.15) {
		table := g.oneOf("users", "users", "page_views")
		body, cols := g.derivedBody(sc, table)
		g.seq++
		name := fmt.Sprintf("c%d", g.seq)
		if table == "users" && g.chance(0.3) {
			// WITH users AS (... FROM users ...): the CTE hides the table
			// in the rest of the statement.
			name, g.shadow = "users", true
		}
		with = "WITH " + name + " AS (" + body + ") "
		r := &grel{qual: name, cols: cols}
		sc.rels = append(sc.rels, r)
		from = name
		if g.chance(0.4) && table == "users" && g.idRef(sc) != "" {
			p, pf := g.baseRel(sc, "page_views")
			r.joined, p.joined = true, true
			sc.rels = append(sc.rels, p)
			from += " JOIN " + pf + " ON " + g.idRef(&gscope{rels: []*grel{p}}) + " = " + g.idRef(&gscope{rels: []*grel{r}})
		}
	} else {
		from, conds = g.fromClause(sc, true)
	}
	if g.chance(0.65) {
		conds = append(conds, g.pred(sc, 0))
	}
	if g.chance(0.35) {
		// The key lookup of application queries (id = $1 AND ...): a
		// comparison the rewrite may copy into a fence.
		r := g.randRel(sc)
		c, _ := g.randCol(r, "text", "int")
		if c.name != "" {
			conds = append(conds, g.ref(sc, r, c)+" = "+g.lit(g.value(c)))
		}
	}
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	limited := g.chance(0.25)
	if g.chance(0.2) {
		// Aggregates.
		var groups, items []string
		for range g.pick(3) {
			r := g.randRel(sc)
			if c, ok := g.randCol(r, "text", "int", "bool"); ok {
				ref := r.qual + "." + c.name
				if !slices.Contains(groups, ref) {
					groups = append(groups, ref)
				}
			}
		}
		items = append(items, groups...)
		items = append(items, "count(*)")
		r := g.randRel(sc)
		if c, ok := g.randCol(r, "text"); ok {
			items = append(items, g.oneOf("min", "max")+"("+r.qual+"."+c.name+")", "count(DISTINCT "+r.qual+"."+c.name+")")
		}
		if c, ok := g.randCol(r, "int"); ok {
			items = append(items, "sum("+r.qual+"."+c.name+")")
		}
		sql := with + "SELECT " + strings.Join(items, ", ") + " FROM " + from + where
		if len(groups) > 0 {
			sql += " GROUP BY " + strings.Join(groups, ", ")
			if g.chance(0.4) {
				sql += " HAVING count(*) " + g.oneOf(">", ">=", "=") + " " + g.lit(g.pick(3))
			}
		}
		if limited {
			sql += g.limit(len(items))
		}
		return sql, limited
	}
	distinct := ""
	if g.chance(0.12) {
		distinct = "DISTINCT "
	}
	items, n := g.selectItems(sc, limited || distinct != "")
	sql := with + "SELECT " + distinct + items + " FROM " + from + where
	switch {
	case limited:
		sql += g.limit(n)
	case distinct == "" && g.chance(0.15):
		r := g.randRel(sc)
		c, _ := g.randCol(r, "text", "int")
		if c.name != "" {
			sql += " ORDER BY " + r.qual + "." + c.name + g.oneOf("", " DESC")
		}
	}
	return sql, limited
}

// setOp is two or three single-column SELECTs of user ids joined by
// UNION, INTERSECT or EXCEPT.
func (g *rlsGen) setOp() (string, bool) {
	var arms []string
	for i := range 2 + g.pick(2) {
		sc := &gscope{}
		r, from := g.baseRel(sc, g.oneOf("users", "users", "page_views"))
		sc.rels = []*grel{r}
		arm := "SELECT " + g.idRef(sc) + " FROM " + from
		if g.chance(0.7) {
			arm += " WHERE " + g.pred(sc, 1)
		}
		if i > 0 {
			arm = g.oneOf(" UNION ", " UNION ALL ", " INTERSECT ", " INTERSECT ALL ", " EXCEPT ", " EXCEPT ALL ") + arm
		}
		arms = append(arms, arm)
	}
	sql := strings.Join(arms, "")
	if g.chance(0.3) {
		return sql + g.limit(1), true
	}
	return sql, false
}

// write is an UPDATE or DELETE of users (with RETURNING, in a CTE, with
// FROM or USING page_views) that the principal's role may run.
func (g *rlsGen) write() string {
	g.writing = true
	defer func() { g.writing = false }()
	sc := &gscope{}
	t := &grel{table: "users", cols: rlsTables["users"], qual: "users"}
	target := "users"
	if g.chance(0.5) {
		t.qual = "t"
		target = "users " + g.oneOf("", "AS ") + "t"
	}
	sc.rels = []*grel{t}
	del := g.role != "user" && g.chance(0.4)
	var extra string
	var conds []string
	if g.chance(0.2) {
		p, pf := g.baseRel(sc, "page_views")
		sc.rels = append(sc.rels, p)
		extra = pf
		conds = append(conds, joinOn(t, p))
	}
	if g.chance(0.85) {
		conds = append(conds, g.pred(sc, 0))
	}
	var sql string
	if del {
		sql = "DELETE FROM " + target
		if extra != "" {
			sql += " USING " + extra
		}
	} else {
		var sets []string
		n := 3
		if g.role == "user" {
			n = 2 // role "user" may not write role
		}
		for _, k := range g.r.Perm(n)[:1+g.pick(n-1)] {
			switch k {
			case 0:
				switch g.pick(3) {
				case 0:
					sets = append(sets, "email = lower(email)")
				case 1:
					sets = append(sets, "email = upper("+t.qual+".email)")
				default:
					sets = append(sets, "email = "+t.qual+".email || "+g.lit(".x"))
				}
			case 1:
				if g.chance(0.5) {
					sets = append(sets, "username = username || "+g.lit("_2"))
				} else {
					sets = append(sets, "username = upper("+t.qual+".username)")
				}
			case 2:
				sets = append(sets, "role = "+g.lit(g.oneOf("user", "admin", "admin", "god")))
			}
		}
		sql = "UPDATE " + target + " SET " + strings.Join(sets, ", ")
		if extra != "" {
			sql += " FROM " + extra
		}
	}
	if len(conds) > 0 {
		sql += " WHERE " + strings.Join(conds, " AND ")
	}
	returning := g.chance(0.6)
	cte := g.chance(0.15)
	if returning || cte {
		items := []string{t.qual + ".id"}
		for _, it := range []string{t.qual + ".email", t.qual + ".role", t.qual + ".tableoid::regclass::text"} {
			if g.chance(0.3) {
				items = append(items, it)
			}
		}
		if del && g.chance(0.3) {
			items = append(items, t.qual+".ctid", t.qual+".xmin")
		}
		if extra == "" && g.chance(0.15) {
			items = []string{"*"}
		}
		sql += " RETURNING " + strings.Join(items, ", ")
	}
	if cte {
		sql = "WITH d AS (" + sql + ") SELECT " + g.oneOf("count(*)", "d.id") + " FROM d"
	}
	return sql
}

// statement is the next generated statement.
func (g *rlsGen) statement() rlsCase {
	g.args, g.seq, g.shadow = nil, 0, false
	g.params = g.chance(0.6)
	var c rlsCase
	switch k := g.pick(20); {
	case k < 5:
		c.sql, c.write = g.write(), true
	case k < 8:
		c.sql, c.ordered = g.setOp()
	default:
		c.sql, c.ordered = g.plainSelect()
	}
	c.args = g.args
	c.mode = []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeDescribeExec, pgx.QueryExecModeSimpleProtocol}[g.pick(3)]
	return c
}
