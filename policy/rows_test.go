package policy

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/dbalproxy/dbalproxy/decision"
)

// rowsAllow is a decision that allows everything, for sets that test row
// rules; filters and checks come from the row rules (and, with sqlForm, an
// SQL-form filter on public.t).
const rowsAllow = `package dbal
decision := {"allow": true}
`

// onTable is a statement by a session with claims doing kinds to
// public.<name> (schema as written).
func onTable(role string, claims map[string]any, schema, name string, kinds ...string) *decision.Input {
	return &decision.Input{
		Session: decision.Session{User: "u", Role: role, Claims: claims, ClientAddr: "127.0.0.1:1"},
		Statement: decision.Statement{Command: "SELECT", Class: "read",
			Tables: []decision.Table{{Schema: schema, Name: name, Access: kinds}}},
	}
}

func decideOK(t *testing.T, e *Engine, in *decision.Input) decision.Decision {
	t.Helper()
	d, err := e.Decide(context.Background(), in)
	if err != nil || !d.Allow {
		t.Fatalf("Decide: %+v, %v", d, err)
	}
	return d
}

var alice = map[string]any{"user_id": "u_alice"}

// TestShippedRowRules: the shipped rows.rego compiles to the expected SQL
// and arguments for every role and operation on public.users.
func TestShippedRowRules(t *testing.T) {
	e := newEngine(t, shippedDir, decision.ModeStrict, false)
	own := decision.Filter{SQL: `"id" = $1`, Args: []any{"u_alice"}}
	roleCheck := decision.Filter{SQL: `"role" IN ($1, $2)`, Args: []any{"admin", "user"}}
	cases := []struct {
		role            string
		kinds           []string
		filter, check   *decision.Filter
		noFilterNoCheck bool
	}{
		{role: "user", kinds: []string{"select"}, filter: &own},
		{role: "user", kinds: []string{"update"}, filter: &own, check: &own},
		{role: "user", kinds: []string{"select", "update"}, filter: &own, check: &own},
		{role: "admin", kinds: []string{"select"}},
		{role: "admin", kinds: []string{"delete"}, filter: &roleCheck},
		{role: "admin", kinds: []string{"insert"}, check: &roleCheck},
		{role: "admin", kinds: []string{"update", "select"}, filter: &roleCheck, check: &roleCheck},
		{role: "god", kinds: []string{"select", "insert", "update", "delete"}},
		{role: "supergod", kinds: []string{"update"}},
		{role: "migrator", kinds: []string{"insert"}},
	}
	for _, c := range cases {
		t.Run(c.role+"/"+strings.Join(c.kinds, "+"), func(t *testing.T) {
			in := userInput(c.role, "users", c.kinds[0])
			in.Statement.Tables[0].Access = c.kinds
			d := decideOK(t, e, in)
			if got, want := d.Filters["public.users"], c.filter; (want == nil) != (len(d.Filters) == 0) || (want != nil && !reflect.DeepEqual(got, *want)) {
				t.Errorf("filters = %#v, want %#v", d.Filters, want)
			}
			if got, want := d.Checks["public.users"], c.check; (want == nil) != (len(d.Checks) == 0) || (want != nil && !reflect.DeepEqual(got, *want)) {
				t.Errorf("checks = %#v, want %#v", d.Checks, want)
			}
		})
	}
}

// TestShippedRowRulesExactNumbers: an integer claim reaches SQL as the same
// integer, even past 2^53 where a float64 would round it to a neighbour's id.
func TestShippedRowRulesExactNumbers(t *testing.T) {
	e := newEngine(t, shippedDir, decision.ModeStrict, false)
	in := userInput("user", "users", "select")
	in.Session.Claims = map[string]any{"user_id": int64(9007199254740993)}
	d := decideOK(t, e, in)
	want := decision.Filter{SQL: `"id" = $1`, Args: []any{int64(9007199254740993)}}
	if !reflect.DeepEqual(d.Filters["public.users"], want) {
		t.Errorf("filter = %#v, want %#v", d.Filters["public.users"], want)
	}
}

// rowSet writes a policy set with rowsAllow and the given row rules (in
// package dbal, after row_columns for public.t) and loads it.
func rowSet(t *testing.T, rules string) *Engine {
	t.Helper()
	dir := writeDir(t, map[string]string{
		"decision.rego": rowsAllow,
		"rows.rego":     "package dbal\n\nrow_columns[\"public.t\"] := {\"a\", \"b\", \"n\", \"owner\", \"Mixed \\\"Case\\\"\"}\n\n" + rules,
	})
	return newEngine(t, dir, decision.ModeStrict, true)
}

// TestRowRuleTranslation: Rego conditions in, SQL and arguments out.
func TestRowRuleTranslation(t *testing.T) {
	cases := []struct {
		name, rules string
		claims      map[string]any
		sql         string // "" for no filter at all
		args        []any
	}{
		{"equal to a claim", `rows["public.t"].select if input.row.owner == input.session.claims.user_id`, alice, `"owner" = $1`, []any{"u_alice"}},
		{"flipped operands", `rows["public.t"].select if 5 < input.row.n`, nil, `"n" > $1`, []any{int64(5)}},
		{"not equal", `rows["public.t"].select if input.row.a != "x"`, nil, `"a" <> $1`, []any{"x"}},
		{"comparisons", `rows["public.t"].select if { input.row.n >= 1; input.row.n <= 2.5 }`, nil, `"n" >= $1 AND "n" <= $2`, []any{int64(1), 2.5}},
		{"two columns", `rows["public.t"].select if input.row.a == input.row.b`, nil, `"a" = "b"`, nil},
		{"in a set", `rows["public.t"].select if input.row.a in {"y", "x"}`, nil, `"a" IN ($1, $2)`, []any{"x", "y"}},
		{"in with null", `rows["public.t"].select if input.row.a in ["x", null]`, nil, `"a" IN ($1) OR "a" IS NULL`, []any{"x"}},
		{"in an empty set", `rows["public.t"].select if input.row.a in set()`, nil, `false`, nil},
		{"null", `rows["public.t"].select if { input.row.a == null; input.row.b != null }`, nil, `"a" IS NULL AND "b" IS NOT NULL`, nil},
		{"not", `rows["public.t"].select if not input.row.a == "x"`, nil, `NOT ("a" = $1)`, []any{"x"}},
		{"unified array", `rows["public.t"].select if [input.row.a, 1] == ["x", 1]`, nil, `"a" = $1`, []any{"x"}},
		{"negated helper", "rows[\"public.t\"].select if not blocked\nblocked if { input.row.a == \"blocked\"; input.row.b == \"x\" }", nil,
			`NOT ("a" = $1) OR NOT ("b" = $2)`, []any{"blocked", "x"}},
		{"not in", `rows["public.t"].select if not input.row.a in {"x", "y"}`, nil, `NOT ("a" IN ($1, $2))`, []any{"x", "y"}},
		{"booleans", `rows["public.t"].select if input.row.b == true`, nil, `"b" = $1`, []any{true}},
		{"strings", `rows["public.t"].select if { startswith(input.row.a, "p%_"); endswith(input.row.a, "é!"); contains(input.row.b, "mid") }`, nil,
			`starts_with("a", $1) AND right("a", $2) = $3 AND strpos("b", $4) > 0`, []any{"p%_", int64(2), "é!", "mid"}},
		{"quoted column", `rows["public.t"].select if input.row["Mixed \"Case\""] == 1`, nil, `"Mixed ""Case""" = $1`, []any{int64(1)}},
		{"or of rules, and within", `
rows["public.t"].select if { input.row.a == "x"; input.row.b == "y" }
rows["public.t"].select if input.row.n == 3`, nil, `"a" = $1 AND "b" = $2 OR "n" = $3`, []any{"x", "y", int64(3)}},
		{"or inside and", `
rows["public.t"].select if { ok_a; input.row.n == 1 }
ok_a if input.row.a == "x"
ok_a if input.row.a == "y"`, nil, `"a" = $1 AND "n" = $2 OR "a" = $3 AND "n" = $4`, []any{"x", int64(1), "y", int64(1)}},
		{"helper function inlined", `
rows["public.t"].select if mine(input.row.owner)
mine(x) if x == input.session.claims.user_id`, alice, `"owner" = $1`, []any{"u_alice"}},
		{"session decides everything: every row", `rows["public.t"].select if input.session.role == "boss"`, nil, ``, nil},
		{"session decides everything: no row", `rows["public.t"].select if input.session.role == "nobody"`, nil, `false`, nil},
		{"no select rule: no row", `rows["public.t"].update if input.row.a == "x"`, nil, `false`, nil},
		{"data is known", `
rows["public.t"].select if input.row.n in data.dbal.levels[input.session.role]
levels := {"boss": [1, 2]}`, nil, `"n" IN ($1, $2)`, []any{int64(1), int64(2)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := rowSet(t, c.rules)
			d := decideOK(t, e, onTable("boss", c.claims, "", "t", "select"))
			f, ok := d.Filters["public.t"]
			if c.sql == "" {
				if ok {
					t.Fatalf("filter %#v, want none", f)
				}
				return
			}
			if f.SQL != c.sql || !reflect.DeepEqual(f.Args, c.args) {
				t.Errorf("filter\n got %q %#v\nwant %q %#v", f.SQL, f.Args, c.sql, c.args)
			}
		})
	}
}

// TestRowRuleOperations: which rules a statement's access kinds use, as
// filters and as checks, and the SQL-form filter they are ANDed with.
func TestRowRuleOperations(t *testing.T) {
	const rules = `
rows["public.t"].select if input.row.a == "s"
rows["public.t"].update if input.row.a == "u"
rows["public.t"].delete if input.row.a == "d"
new_rows["public.t"].insert if input.row.b == "i"
new_rows["public.t"].update if input.row.b == "u"
`
	e := rowSet(t, rules)
	cases := []struct {
		kinds         []string
		filter, check decision.Filter
	}{
		{[]string{"select"}, decision.Filter{SQL: `"a" = $1`, Args: []any{"s"}}, decision.Filter{}},
		{[]string{"insert"}, decision.Filter{}, decision.Filter{SQL: `"b" = $1`, Args: []any{"i"}}},
		{[]string{"select", "update"}, decision.Filter{SQL: `"a" = $1 AND "a" = $2`, Args: []any{"s", "u"}}, decision.Filter{SQL: `"b" = $1`, Args: []any{"u"}}},
		{[]string{"delete"}, decision.Filter{SQL: `"a" = $1`, Args: []any{"d"}}, decision.Filter{}},
		{[]string{"insert", "update", "select"}, decision.Filter{SQL: `"a" = $1 AND "a" = $2`, Args: []any{"s", "u"}}, decision.Filter{SQL: `"b" = $1 AND "b" = $2`, Args: []any{"i", "u"}}},
		{[]string{}, decision.Filter{}, decision.Filter{}},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.kinds, "+"), func(t *testing.T) {
			d := decideOK(t, e, onTable("r", nil, "public", "t", c.kinds...))
			if !reflect.DeepEqual(d.Filters["public.t"], c.filter) || !reflect.DeepEqual(d.Checks["public.t"], c.check) {
				t.Errorf("filters %#v checks %#v\nwant filter %#v check %#v", d.Filters, d.Checks, c.filter, c.check)
			}
		})
	}
	// Another schema, or a table without rules, gets nothing.
	for _, in := range []*decision.Input{onTable("r", nil, "other", "t", "select"), onTable("r", nil, "", "u", "select")} {
		if d := decideOK(t, e, in); len(d.Filters) != 0 || len(d.Checks) != 0 {
			t.Errorf("%+v: filters %#v checks %#v, want none", in.Statement.Tables, d.Filters, d.Checks)
		}
	}
	// TRUNCATE needs a delete rule that allows every row.
	d, err := e.Decide(context.Background(), onTable("r", nil, "", "t", "truncate"))
	if err != nil || d.Allow || !strings.Contains(d.Reason, "TRUNCATE") {
		t.Errorf("truncate: %+v, %v", d, err)
	}
	all := rowSet(t, `rows["public.t"].delete if input.session.role == "r"`)
	decideOK(t, all, onTable("r", nil, "", "t", "truncate"))
}

// TestRowRulesSharedConjuncts: a conjunct the select and update rules share
// is written once.
func TestRowRulesSharedConjuncts(t *testing.T) {
	e := rowSet(t, `
rows["public.t"].select if input.row.owner == input.session.claims.user_id
rows["public.t"].update if { input.row.owner == input.session.claims.user_id; input.row.a != "closed" }
`)
	d := decideOK(t, e, onTable("r", alice, "", "t", "select", "update"))
	want := decision.Filter{SQL: `"owner" = $1 AND "a" <> $2`, Args: []any{"u_alice", "closed"}}
	if !reflect.DeepEqual(d.Filters["public.t"], want) {
		t.Errorf("filter %#v, want %#v", d.Filters["public.t"], want)
	}
}

// TestRowRulesMergeWithSQLForm: a decision's own SQL-form filter and the
// Rego condition are ANDed, the Rego arguments numbered after the SQL
// form's; an SQL form that is not one expression, or uses a $n it has no
// argument for, denies.
func TestRowRulesMergeWithSQLForm(t *testing.T) {
	for _, c := range []struct {
		name, sqlForm, args string
		want                decision.Filter
		deny                bool
	}{
		{"and", `a = $1 OR b = $2`, `[1, "two"]`, decision.Filter{SQL: "(a = $1 OR b = $2\n) AND (\"owner\" = $3)", Args: []any{int64(1), "two", "u_alice"}}, false},
		{"comment at the end", `a = $1 -- note`, `[1]`, decision.Filter{SQL: "(a = $1 -- note\n) AND (\"owner\" = $2)", Args: []any{int64(1), "u_alice"}}, false},
		{"parentheses trick", `true) OR (true`, `[]`, decision.Filter{}, true},
		{"two statements", `true; SELECT 1`, `[]`, decision.Filter{}, true},
		{"a clause", `true ORDER BY 1`, `[]`, decision.Filter{}, true},
		{"$n past its arguments", `a = $2`, `[1]`, decision.Filter{}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeDir(t, map[string]string{
				"decision.rego": "package dbal\ndecision := {\"allow\": true, \"filters\": {\"public.t\": {\"sql\": " + strconvQuote(c.sqlForm) + ", \"args\": " + c.args + "}}}\n",
				"rows.rego":     "package dbal\nrow_columns[\"public.t\"] := {\"owner\"}\nrows[\"public.t\"].select if input.row.owner == input.session.claims.user_id\n",
			})
			e := newEngine(t, dir, decision.ModeStrict, false)
			d, err := e.Decide(context.Background(), onTable("r", alice, "", "t", "select"))
			if c.deny {
				if d.Allow || err == nil || !strings.Contains(d.Reason, "cannot be combined") {
					t.Errorf("got %+v, %v; want a denial", d, err)
				}
				return
			}
			if err != nil || !d.Allow || !reflect.DeepEqual(d.Filters["public.t"], c.want) {
				t.Errorf("got %#v, %v\nwant %#v", d.Filters, err, c.want)
			}
		})
	}
}

func strconvQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}

// TestRowRulesRefusedAtLoad: row rules the proxy could not apply correctly
// refuse the whole set, with a message naming the problem.
func TestRowRulesRefusedAtLoad(t *testing.T) {
	const cols = "row_columns[\"public.t\"] := {\"a\"}\n"
	for _, c := range []struct{ name, rules, want string }{
		{"missing column", cols + `rows["public.t"].select if input.row.emial == "x"`, `input.row.emial: "emial" is not a column of public.t declared in row_columns`},
		{"no declared columns", `rows["public.t"].select if input.row.a == "x"`, `declare the columns they use in row_columns["public.t"]`},
		{"statement input", cols + `rows["public.t"].select if input.statement.command == "SELECT"`, "may use only input.row and input.session"},
		{"whole input", cols + `rows["public.t"].select if { x := input; x.row.a == 1 }`, "input as a whole"},
		{"part of a column", cols + `rows["public.t"].select if input.row.a.b == 1`, "compare whole columns"},
		{"dynamic column", cols + `rows["public.t"].select if { some k; input.row[k] == 1 }`, "constant column name"},
		{"helper reads the statement", cols + "rows[\"public.t\"].select if h\nh if input.statement.class == \"read\"", "may use only input.row and input.session"},
		{"function reads the statement", cols + "rows[\"public.t\"].select if f(input.row.a)\nf(x) if { x == 1; input.statement.class == \"read\" }", "may use only input.row and input.session"},
		{"other package reads the backend", cols + "rows[\"public.t\"].select if data.lib.ok\n", "may use only input.row and input.session"},
		{"client address", cols + `rows["public.t"].select if input.session.client_addr == "127.0.0.1"`, "may read only input.session.user, .role and .claims"},
		{"whole session", cols + `rows["public.t"].select if { s := input.session; s.role == "x" }`, "may read only input.session.user, .role and .claims"},
		{"not deterministic", cols + `rows["public.t"].select if time.now_ns() > 0`, "time.now_ns is not deterministic"},
		{"default", cols + "default rows[\"public.t\"].select := false\nrows[\"public.t\"].select if input.row.a == 1", "may not have a default"},
		{"else", cols + "rows[\"public.t\"].select if input.row.a == 1\nelse := true", "may not use else"},
		{"unknown operation", cols + `rows["public.t"].read if input.row.a == 1`, `unknown operation "read"`},
		{"check on delete", cols + `new_rows["public.t"].delete if input.row.a == 1`, `unknown operation "delete"`},
		{"unqualified table", cols + `rows["t"].select if input.row.a == 1`, `table "t" is not "schema.table"`},
		{"value not true", cols + `rows["public.t"].select := 1 if input.row.a == 1`, "value must be true"},
		{"with", cols + `rows["public.t"].select if input.row.a == 1 with input.session as {}`, "`with` is not allowed"},
		{"object rule", "rows := {}", "wrong shape"},
		{"function of a column", cols + `rows["public.t"].select if lower(input.row.a) == input.session.claims.user_id`, `rows["public.t"].select cannot be turned into SQL: lower() is applied to a row value`},
		{"function of a column in one branch", cols + "rows[\"public.t\"].select if input.row.a == \"x\"\nrows[\"public.t\"].select if { input.session.role == \"r\"; count(input.row.a) > 1 }", "count() is applied to a row value"},
		{"bare column", cols + `rows["public.t"].select if input.row.a`, "a bare reference to a row value"},
		{"negated bare column", cols + `rows["public.t"].select if not input.row.a`, "a bare reference to a row value"},
		{"regex", cols + `rows["public.t"].select if regex.match("^x", input.row.a)`, "regex.match() is applied to a row value"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeDir(t, map[string]string{"decision.rego": rowsAllow, "rows.rego": "package dbal\n" + c.rules + "\n",
				"lib.rego": "package lib\nok if input.backend.version_num > 0\n"})
			_, err := New(Options{Dir: dir})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New: %v\nwant an error containing %q", err, c.want)
			}
		})
	}
}

// TestRowRulesDenyAtDecision: conditions that exist only once the session
// is known, and that the proxy cannot express or that need a value the
// session lacks, deny the statement with a clear reason; never a statement
// without its filter. Reasons never carry the session's values.
func TestRowRulesDenyAtDecision(t *testing.T) {
	const cols = "row_columns[\"public.t\"] := {\"a\", \"owner\"}\n"
	for _, c := range []struct {
		name, rules string
		claims      map[string]any
		want        string
		logged      bool
	}{
		{"claim missing", cols + `rows["public.t"].select if input.row.owner == input.session.claims.user_id`, map[string]any{"org": "o_secret"},
			`the row rule rows["public.t"].select needs input.session.claims.user_id, which this session does not have`, false},
		{"claims missing entirely", cols + `rows["public.t"].select if input.row.owner == input.session.claims.user_id`, nil,
			`needs input.session.claims.user_id`, false},
		{"array claim", cols + `rows["public.t"].select if input.row.a == input.session.claims.user_id`, map[string]any{"user_id": []any{"x"}},
			`compared with a array`, true},
		{"object value", cols + `rows["public.t"].select if input.row.a == input.session.claims`, alice, `compared with a object`, true},
		{"collection from the row", cols + `rows["public.t"].select if input.session.claims.user_id in input.row.a`, alice, "cannot be turned into SQL", true},
		{"inexact number", cols + `rows["public.t"].select if input.row.a == 0.1000000000000000000001`, alice, "cannot be passed exactly", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeDir(t, map[string]string{"decision.rego": rowsAllow, "rows.rego": "package dbal\n" + c.rules + "\n"})
			e := newEngine(t, dir, decision.ModeStrict, false)
			d, err := e.Decide(context.Background(), onTable("r", c.claims, "", "t", "select"))
			if d.Allow || len(d.Filters) != 0 || !strings.Contains(d.Reason, c.want) {
				t.Fatalf("got %+v, %v\nwant a denial containing %q", d, err, c.want)
			}
			if (err != nil) != c.logged {
				t.Errorf("err = %v, want logged %v", err, c.logged)
			}
			for _, secret := range []string{"u_alice", "o_secret"} {
				if strings.Contains(d.Reason, secret) {
					t.Errorf("reason %q carries a session value", d.Reason)
				}
			}
			// Denied again from the cache, the same way.
			d2, _ := e.Decide(context.Background(), onTable("r", c.claims, "", "t", "select"))
			if d2.Allow || d2.Reason != d.Reason {
				t.Errorf("second decision %+v, want the same denial", d2)
			}
		})
	}
	// Permissive mode lets the statement through as would_deny, as for
	// any other denial.
	dir := writeDir(t, map[string]string{"decision.rego": rowsAllow, "rows.rego": "package dbal\n" + cols +
		`rows["public.t"].select if input.row.owner == input.session.claims.user_id` + "\n"})
	e := newEngine(t, dir, decision.ModePermissive, false)
	if d, err := e.Decide(context.Background(), onTable("r", nil, "", "t", "select")); err != nil || !d.Allow || !d.WouldDeny {
		t.Errorf("permissive: %+v, %v", d, err)
	}
}

// TestRowRulesCache: a rule's condition is computed once per policy set and
// session values it reads, and reused across statements and sessions that
// differ only in what it does not read.
func TestRowRulesCache(t *testing.T) {
	e := newEngine(t, shippedDir, decision.ModeStrict, false)
	rs := e.set.Load().rows
	decide := func(user, addr string, userID any) {
		in := userInput("user", "users", "select")
		in.Session.User, in.Session.ClientAddr = user, addr
		in.Session.Claims = map[string]any{"user_id": userID, "team": user}
		in.Statement.Text = "SELECT " + user
		decideOK(t, e, in)
	}
	decide("alice", "10.0.0.1:1", "u_alice")
	if n := rs.cache.Len(); n != 1 {
		t.Fatalf("%d cached conditions after one decision, want 1", n)
	}
	decide("alice2", "10.0.0.2:2", "u_alice") // same role and user_id: same condition
	if n := rs.cache.Len(); n != 1 {
		t.Errorf("%d cached conditions, want 1: login, address and unused claims are not part of the key", n)
	}
	decide("bob", "10.0.0.1:1", "u_bob")
	if n := rs.cache.Len(); n != 2 {
		t.Errorf("%d cached conditions, want 2", n)
	}
	// A reload to new content starts afresh (the cache belongs to the set).
	if got := e.set.Load().rows; got != rs {
		t.Fatal("set changed without a reload")
	}
}

// TestRowRulesPaths: the session paths a rule reads, through helpers.
func TestRowRulesPaths(t *testing.T) {
	e := newEngine(t, shippedDir, decision.ModeStrict, false)
	r := e.set.Load().rows.tables["public.users"].rules["rows.select"]
	want := [][]string{{"claims", "user_id"}, {"role"}}
	if !reflect.DeepEqual(r.session, want) {
		t.Errorf("session paths %q, want %q", r.session, want)
	}
	if d := e.set.Load().rows.tables["public.users"].rules["rows.delete"]; !d.defined {
		t.Error("rows.delete should be defined")
	}
	if got, want := e.RowColumns(), map[string][]string{"public.users": {"id", "role"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("RowColumns() = %v, want %v", got, want)
	}
	if got := newEngine(t, writeDir(t, map[string]string{"p.rego": allowAll}), decision.ModeStrict, false).RowColumns(); got != nil {
		t.Errorf("RowColumns() without row rules = %v", got)
	}
}

// TestRowRulesConcurrent: concurrent decisions for many sessions (cache
// misses and hits at once) each get their own condition.
func TestRowRulesConcurrent(t *testing.T) {
	e := newEngine(t, shippedDir, decision.ModeStrict, false)
	done := make(chan error, 8)
	for g := range 8 {
		go func() {
			for i := range 50 {
				id := "u_" + strconv.Itoa((g*50+i)%37)
				in := userInput("user", "users", "update")
				in.Session.Claims = map[string]any{"user_id": id}
				d, err := e.Decide(context.Background(), in)
				want := decision.Filter{SQL: `"id" = $1`, Args: []any{id}}
				if err != nil || !reflect.DeepEqual(d.Filters["public.users"], want) || !reflect.DeepEqual(d.Checks["public.users"], want) {
					done <- fmt.Errorf("%s: %+v, %v", id, d, err)
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// BenchmarkRowRules: the cost row rules add to a decision, with the
// condition cached (a session seen before) and computed (a new session
// each time: partial evaluation and translation).
func BenchmarkRowRules(b *testing.B) {
	e, err := New(Options{Dir: shippedDir})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Run("cached", func(b *testing.B) {
		in := userInput("user", "users", "update")
		b.ReportAllocs()
		cpu := processCPU()
		for b.Loop() {
			if d, err := e.Decide(ctx, in); err != nil || len(d.Filters) != 1 {
				b.Fatal(d, err)
			}
		}
		reportCPU(b, cpu)
	})
	b.Run("computed", func(b *testing.B) {
		in := userInput("user", "users", "update")
		i := 0
		b.ReportAllocs()
		cpu := processCPU()
		for b.Loop() {
			i++
			in.Session.Claims = map[string]any{"user_id": "u_" + strconv.Itoa(i)}
			if d, err := e.Decide(ctx, in); err != nil || len(d.Filters) != 1 {
				b.Fatal(d, err)
			}
		}
		reportCPU(b, cpu)
	})
	b.Run("no_row_rules_touched", func(b *testing.B) {
		in := userInput("user", "page_views", "select")
		b.ReportAllocs()
		for b.Loop() {
			if d, err := e.Decide(ctx, in); err != nil || len(d.Filters) != 0 {
				b.Fatal(d, err)
			}
		}
	})
}
