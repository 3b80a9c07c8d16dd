package parser

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

func mustParse(t *testing.T, p *Parser, sql string) *Result {
	t.Helper()
	res, err := p.Parse(sql)
	if err != nil {
		t.Fatalf("Parse(%q): %v", sql, err)
	}
	return res
}

func TestSplit(t *testing.T) {
	type span struct {
		text string
		loc  int
	}
	tests := []struct {
		name string
		sql  string
		want []span
	}{
		{"one", "SELECT 1", []span{{"SELECT 1", 0}}},
		{"trailing semicolon", "SELECT 1;", []span{{"SELECT 1", 0}}},
		{"surrounding space", "  \n SELECT 1 ;;\n", []span{{"SELECT 1", 4}}},
		{"three", "SELECT 1; SELECT 2 ;  /* c */ SELECT 3 -- x", []span{
			{"SELECT 1", 0}, {"SELECT 2", 10}, {"SELECT 3 -- x", 30}}},
		{"leading comment", "-- hello\nSELECT 1; /* a /* nested */ b */ UPDATE t SET a = 1", []span{
			{"SELECT 1", 9}, {"UPDATE t SET a = 1", 42}}},
		{"empty statements between", "SELECT 1;;; ; SELECT 2", []span{{"SELECT 1", 0}, {"SELECT 2", 14}}},
		{"multibyte", "SELECT 'é'; SELECT 'ü' AS x", []span{{"SELECT 'é'", 0}, {"SELECT 'ü' AS x", 13}}},
		{"semicolon in literal", "SELECT ';'; SELECT $$;$$", []span{{"SELECT ';'", 0}, {"SELECT $$;$$", 12}}},
		{"mixed kinds", "BEGIN; INSERT INTO t VALUES (1); COMMIT", []span{
			{"BEGIN", 0}, {"INSERT INTO t VALUES (1)", 7}, {"COMMIT", 33}}},
		{"function body with semicolons", "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END; SELECT 3", []span{
			{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END", 0}, {"SELECT 3", 83}}},
	}
	p := New(Options{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := mustParse(t, p, tc.sql)
			if len(res.Statements) != len(tc.want) {
				t.Fatalf("%d statements, want %d", len(res.Statements), len(tc.want))
			}
			for i, st := range res.Statements {
				w := tc.want[i]
				if st.Text != w.text || st.Location != w.loc || st.Length != len(w.text) {
					t.Errorf("statement %d: Text %q at %d len %d, want %q at %d len %d",
						i, st.Text, st.Location, st.Length, w.text, w.loc, len(w.text))
				}
				if got := tc.sql[st.Location : st.Location+st.Length]; got != st.Text {
					t.Errorf("statement %d: input slice %q != Text %q", i, got, st.Text)
				}
			}
		})
	}
}

func TestMultiStatementFacts(t *testing.T) {
	p := New(Options{})
	res := mustParse(t, p, "BEGIN; SET LOCAL dbal.token = 'tok'; DELETE FROM t WHERE id = $1; COMMIT")
	var got []string
	for _, st := range res.Statements {
		got = append(got, fmt.Sprintf("%s/%s/%d", st.Command, st.Class, st.ParamCount))
	}
	want := "BEGIN/transaction/0 SET/utility/0 DELETE/write/1 COMMIT/transaction/0"
	if s := strings.Join(got, " "); s != want {
		t.Errorf("got %s, want %s", s, want)
	}
	if s := res.Statements[1].Setting; s == nil || s.Name != "dbal.token" || !s.Local || s.Value != "tok" {
		t.Errorf("Setting = %+v", s)
	}
	if tb := fmtTables(res.Statements[2].Tables); tb != "t(delete,select) select:id" {
		t.Errorf("Tables = %s", tb)
	}
}

func TestEmptyInput(t *testing.T) {
	p := New(Options{})
	for _, sql := range []string{"", "   \n\t", ";", ";;  ;", "-- only a comment", "/* block */", "/* a */ -- b\n ; "} {
		res, err := p.Parse(sql)
		if err != nil {
			t.Errorf("Parse(%q): %v", sql, err)
			continue
		}
		if res == nil || len(res.Statements) != 0 {
			t.Errorf("Parse(%q): %d statements, want 0", sql, len(res.Statements))
		}
	}
}

func TestSyntaxError(t *testing.T) {
	tests := []struct {
		sql string
		pos int
	}{
		{"SELECT * FORM users", 10},
		{"SELECT * FROM", 14},
		{"SELECT 1; SELEC 2", 11},
		{"SELECT 'é' FROMM x", 18}, // a character position, not a byte offset
		{"SELECT 'unterminated", 8},
		{"SELECT 1\x00; DROP TABLE users", 9},
	}
	p := New(Options{})
	for _, tc := range tests {
		_, err := p.Parse(tc.sql)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Parse(%q): error %v, want *SyntaxError", tc.sql, err)
			continue
		}
		if se.SQLState() != "42601" {
			t.Errorf("Parse(%q): SQLState %q", tc.sql, se.SQLState())
		}
		if se.Position != tc.pos {
			t.Errorf("Parse(%q): Position %d, want %d (%s)", tc.sql, se.Position, tc.pos, se.Message)
		}
		if se.Message == "" || !strings.Contains(se.Error(), se.Message) {
			t.Errorf("Parse(%q): Error() %q lacks message %q", tc.sql, se.Error(), se.Message)
		}
	}
}

func TestCache(t *testing.T) {
	p := New(Options{})
	const sql = "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
	r1 := mustParse(t, p, sql)
	r2 := mustParse(t, p, sql)
	if r1 != r2 {
		t.Error("second Parse returned a different Result")
	}
	if h, m := p.CacheStats(); h != 1 || m != 1 {
		t.Errorf("CacheStats = %d hits, %d misses; want 1, 1", h, m)
	}

	// Errors are cached too.
	_, e1 := p.Parse("SELEC 1")
	_, e2 := p.Parse("SELEC 1")
	if e1 == nil || e1 != e2 {
		t.Errorf("errors %v, %v: want the same cached error", e1, e2)
	}
	if h, m := p.CacheStats(); h != 2 || m != 2 {
		t.Errorf("CacheStats = %d hits, %d misses; want 2, 2", h, m)
	}

	// A different text (even by whitespace) is a different entry.
	if r3 := mustParse(t, p, sql+" "); r3 == r1 {
		t.Error("different text returned the cached Result")
	}
}

func TestCacheBounds(t *testing.T) {
	p := New(Options{CacheSize: 2, MaxCachedTextLen: 20})
	mustParse(t, p, "SELECT 1")
	mustParse(t, p, "SELECT 2")
	mustParse(t, p, "SELECT 3") // evicts SELECT 1
	mustParse(t, p, "SELECT 1")
	if h, m := p.CacheStats(); h != 0 || m != 4 {
		t.Errorf("after eviction: %d hits, %d misses; want 0, 4", h, m)
	}
	long := "SELECT 1234567890123456789"
	a, b := mustParse(t, p, long), mustParse(t, p, long)
	if a == b {
		t.Error("text longer than MaxCachedTextLen was cached")
	}
	if h, m := p.CacheStats(); h != 0 || m != 6 {
		t.Errorf("long text: %d hits, %d misses; want 0, 6", h, m)
	}
}

func TestParamCount(t *testing.T) {
	p := New(Options{})
	for sql, want := range map[string]int{
		"SELECT 1":                               0,
		"SELECT $1":                              1,
		"SELECT * FROM t WHERE a = $3 OR b = $1": 3,
		"UPDATE t SET a = $2 WHERE id = $12":     12,
		"INSERT INTO t VALUES ($1, $2, $3)":      3,
		"SELECT * FROM t LIMIT $1 OFFSET $2":     2,
	} {
		st := mustParse(t, p, sql).Statements[0]
		if st.ParamCount != want {
			t.Errorf("%s: ParamCount %d, want %d", sql, st.ParamCount, want)
		}
		hasFlag := strings.Contains(strings.Join(st.Flags, ","), FlagHasParams)
		if hasFlag != (want > 0) {
			t.Errorf("%s: has_params flag %v, want %v", sql, hasFlag, want > 0)
		}
	}
}

func TestNormalizedHidesLiterals(t *testing.T) {
	p := New(Options{})
	tests := []struct {
		sql    string
		secret []string
	}{
		{"SELECT * FROM users WHERE name = 'alice' AND age > 42 AND id = $1", []string{"alice", "42"}},
		{"SET LOCAL dbal.token = 'eyJhbGciOiJIUzI1NiJ9.secret.sig'", []string{"eyJhbGciOiJIUzI1NiJ9", "secret"}},
		{"CREATE ROLE bob LOGIN PASSWORD 'hunter2'", []string{"hunter2"}},
		{"INSERT INTO cards (number) VALUES ('4111111111111111')", []string{"4111111111111111"}},
	}
	for _, tc := range tests {
		st := mustParse(t, p, tc.sql).Statements[0]
		for _, s := range tc.secret {
			if strings.Contains(st.Normalized, s) {
				t.Errorf("Normalized %q contains %q", st.Normalized, s)
			}
		}
	}
	st := mustParse(t, p, "SELECT * FROM users WHERE name = 'alice' AND id = $1").Statements[0]
	if !strings.Contains(st.Normalized, "$1") || !strings.Contains(st.Normalized, "$2") {
		t.Errorf("Normalized %q: want the parameter kept and the literal numbered after it", st.Normalized)
	}
}

func TestFingerprint(t *testing.T) {
	p := New(Options{})
	fp := func(sql string) string {
		t.Helper()
		st := mustParse(t, p, sql).Statements
		return st[len(st)-1].Fingerprint
	}
	a, b, c := fp("SELECT * FROM t WHERE a = 1"), fp("select *  from t where a = 2"), fp("SELECT * FROM u WHERE a = 1")
	if a == "" || a != b {
		t.Errorf("fingerprints %q, %q: want equal and non-empty", a, b)
	}
	if a == c {
		t.Errorf("different tables share fingerprint %q", a)
	}
	// Each statement of a multi-statement text is fingerprinted on its own.
	if m := fp("SELECT 1; SELECT * FROM t WHERE a = 3"); m != a {
		t.Errorf("fingerprint of second statement %q, want %q", m, a)
	}
}

func TestTree(t *testing.T) {
	p := New(Options{})
	res := mustParse(t, p, "SELECT 1; DELETE FROM t")
	if res.Statements[0].Tree.GetStmt().GetSelectStmt() == nil {
		t.Error("statement 1: Tree is not a SelectStmt")
	}
	if res.Statements[1].Tree.GetStmt().GetDeleteStmt() == nil {
		t.Error("statement 2: Tree is not a DeleteStmt")
	}
}

func TestNeverNil(t *testing.T) {
	p := New(Options{})
	st := mustParse(t, p, "LOCK t").Statements[0]
	if st.Tables == nil || st.Functions == nil || st.Flags == nil {
		t.Fatalf("nil slices in %+v", st)
	}
	tb := st.Tables[0]
	if tb.Access == nil || tb.Star == nil || tb.Columns == nil {
		t.Errorf("nil fields in %+v", tb)
	}
}

func TestConcurrentParse(t *testing.T) {
	p := New(Options{CacheSize: 8})
	texts := make([]string, 16)
	for i := range texts {
		texts[i] = fmt.Sprintf("SELECT a%d FROM t%d WHERE id = $1", i, i%3)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				sql := texts[(g+i)%len(texts)]
				res, err := p.Parse(sql)
				if err != nil {
					t.Errorf("Parse(%q): %v", sql, err)
					return
				}
				if res.Statements[0].Text != sql {
					t.Errorf("Text %q, want %q", res.Statements[0].Text, sql)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	if h, m := p.CacheStats(); h+m != 8*200 {
		t.Errorf("hits+misses = %d, want %d", h+m, 8*200)
	}
}

// ConfigNames names what each set_config call changes, wherever the call
// is; DefaultSetting is the setting of ALTER SYSTEM/ROLE/DATABASE.
func TestConfigNamesAndDefaultSetting(t *testing.T) {
	p := New(Options{})
	for _, c := range []struct {
		sql, configs, deflt string
	}{
		{"SELECT 1", "", ""},
		{"SELECT set_config('App.X', '1', false)", "app.x", ""},
		{"SELECT pg_catalog.set_config('standard_conforming_strings'::text, 'off', true)", "standard_conforming_strings", ""},
		{"SELECT * FROM set_config('client_encoding', 'SJIS', false)", "client_encoding", ""},
		{"SELECT set_config($1, 'off', false)", ConfigUnknown, ""},
		{"SELECT set_config(name, 'off', false) FROM pg_settings", ConfigUnknown, ""},
		{"SELECT set_config(setting_name => 'a', new_value => 'b', is_local => false)", ConfigUnknown, ""},
		{"SELECT set_config('a', '1', false), (SELECT set_config('b', '2', false))", "a,b", ""},
		{"PREPARE p AS SELECT set_config('standard_conforming_strings', $1, false)", "standard_conforming_strings", ""},
		{"WITH s AS (SELECT set_config('b', '1', true)) SELECT * FROM s", "b", ""},
		{"ALTER SYSTEM SET standard_conforming_strings = off", "", "standard_conforming_strings=off"},
		{"ALTER SYSTEM RESET client_encoding", "", "client_encoding= reset"},
		{"ALTER ROLE app SET client_encoding = 'SJIS'", "", "client_encoding=SJIS"},
		{"ALTER ROLE app IN DATABASE d SET standard_conforming_strings TO false", "", "standard_conforming_strings=false"},
		{"ALTER DATABASE d SET standard_conforming_strings = 'off'", "", "standard_conforming_strings=off"},
		{"ALTER ROLE app RENAME TO app2", "", ""},
	} {
		st := mustParse(t, p, c.sql).Statements[0]
		if got := strings.Join(st.ConfigNames, ","); got != c.configs {
			t.Errorf("%s: ConfigNames %q, want %q", c.sql, got, c.configs)
		}
		if got := fmtSetting(st.DefaultSetting); got != c.deflt {
			t.Errorf("%s: DefaultSetting %q, want %q", c.sql, got, c.deflt)
		}
		if st.DefaultSetting != nil && st.Setting != nil {
			t.Errorf("%s: both Setting and DefaultSetting", c.sql)
		}
	}
}

// ParseNormalized gives what Parse gives, and takes the caller's
// normalized text only for a text of one statement that spans it.
func TestParseNormalized(t *testing.T) {
	for _, sql := range []string{
		"SELECT abalance FROM pgbench_accounts WHERE aid = 42",
		"SELECT 1 /* 7 */",
		" SELECT 'x' ",
		"SELECT 1;",
		"SELECT 1; SELECT 2",
		"UPDATE users SET email = 'a@b' WHERE id = 3",
	} {
		norm, err := Normalize(sql)
		if err != nil {
			t.Fatal(err)
		}
		want, err := New(Options{}).Parse(sql)
		if err != nil {
			t.Fatal(err)
		}
		got, err := New(Options{}).ParseNormalized(sql, norm)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Statements) != len(want.Statements) {
			t.Fatalf("%q: %d statements, want %d", sql, len(got.Statements), len(want.Statements))
		}
		for i := range want.Statements {
			if got.Statements[i].Normalized != want.Statements[i].Normalized || got.Statements[i].Fingerprint != want.Statements[i].Fingerprint {
				t.Errorf("%q statement %d: normalized %q, want %q", sql, i+1, got.Statements[i].Normalized, want.Statements[i].Normalized)
			}
		}
	}
	// The given form is used (not computed again) exactly when the text is
	// one statement spanning it.
	const marker = "normalized by the caller"
	for sql, used := range map[string]bool{"SELECT 1": true, "SELECT 1;": false, "SELECT 1; SELECT 2": false} {
		res, err := New(Options{}).ParseNormalized(sql, marker)
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Statements[0].Normalized == marker; got != used {
			t.Errorf("%q: caller's form used %v, want %v", sql, got, used)
		}
	}
}
