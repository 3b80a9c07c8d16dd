package wire

import (
	"encoding/binary"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// TestSwitchShape checks which statements are end-user switches, which are
// refused, and which are left to the policy.
func TestSwitchShape(t *testing.T) {
	cases := []struct {
		sql      string
		mentions bool
		ok       bool
		literal  string
		param    int
	}{
		{"SET LOCAL dbal.token = 'abc'", true, true, "abc", 0},
		{`SET LOCAL "dbal.token" TO 'abc'`, true, true, "abc", 0},
		{"set local DBAL.TOKEN = 'abc'", true, true, "abc", 0},
		{"SELECT set_config('dbal.token', $1, true)", true, true, "", 1},
		{"SELECT pg_catalog.set_config('dbal.token', $2::text, 'on') AS v", true, true, "", 2},
		{"select SET_CONFIG('DBAL.Token', 'abc', TRUE)", true, true, "abc", 0},
		{"SET dbal.token = 'abc'", true, false, "", 0},
		{"SET LOCAL dbal.token TO DEFAULT", true, false, "", 0},
		{"RESET dbal.token", true, false, "", 0},
		{"SET LOCAL dbal.token = abc_ident", true, true, "abc_ident", 0},
		{"SELECT set_config('dbal.token', $1, false)", true, false, "", 0},
		{"SELECT set_config('dbal.token', $1, $2)", true, false, "", 0},
		{"SELECT set_config('dbal.token', upper($1), true)", true, false, "", 0},
		{"SELECT set_config('dbal.token', $1, true) FROM users", true, false, "", 0},
		{"SELECT 1, set_config('dbal.token', $1, true)", true, false, "", 0},
		{"SELECT set_config('dbal.token', $1, true), set_config('dbal.token', $2, true)", true, false, "", 0},
		{"WITH x AS (SELECT set_config('dbal.token', $1, true)) SELECT * FROM x", true, false, "", 0},
		{"UPDATE users SET email = set_config('dbal.token', $1, true)", true, false, "", 0},
		{"SELECT current_setting('dbal.token')", false, false, "", 0},
		{"SET LOCAL dbal.other = 'x'", false, false, "", 0},
		{"SELECT set_config('search_path', 'dbal', true)", false, false, "", 0},
		{"SHOW dbal.token", false, false, "", 0},
	}
	for _, c := range cases {
		tree, err := pg_query.Parse(c.sql)
		if err != nil {
			t.Fatalf("%s: %v", c.sql, err)
		}
		_, src, mentions, problem := switchShape(tree.Stmts[0].Stmt)
		if mentions != c.mentions || (problem == "") != (c.ok || !c.mentions) {
			t.Errorf("%s: mentions %v problem %q, want mentions %v ok %v", c.sql, mentions, problem, c.mentions, c.ok)
			continue
		}
		if c.ok && (src == nil || src.Literal != c.literal || src.Param != c.param) {
			t.Errorf("%s: source %+v, want literal %q param %d", c.sql, src, c.literal, c.param)
		}
	}
}

func TestBindParam(t *testing.T) {
	// portal "", statement "s1", one format code (text), params: NULL, "tok", "x".
	b := []byte("\x00s1\x00")
	b = binary.BigEndian.AppendUint16(b, 1)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, 3)
	b = binary.BigEndian.AppendUint32(b, 0xffffffff)
	b = binary.BigEndian.AppendUint32(b, 3)
	b = append(b, "tok"...)
	b = binary.BigEndian.AppendUint32(b, 1)
	b = append(b, 'x')
	b = binary.BigEndian.AppendUint16(b, 0)
	for p, want := range map[int]string{2: "tok", 3: "x"} {
		if v, ok := bindParam(b, p); !ok || v != want {
			t.Errorf("param %d: %q %v, want %q", p, v, ok, want)
		}
	}
	for _, p := range []int{1, 4} {
		if _, ok := bindParam(b, p); ok {
			t.Errorf("param %d (NULL or missing) found", p)
		}
	}
	for i := 0; i < len(b); i++ {
		_, _ = bindParam(b[:i], 2) // truncated messages must not panic
	}
}

func TestContainsFold(t *testing.T) {
	for s, want := range map[string]bool{"SET LOCAL DBAL.token": true, "x dBaL": true, "dba": false, "": false, "select 1": false} {
		if containsFold(s, "dbal") != want {
			t.Errorf("containsFold(%q) != %v", s, want)
		}
	}
}

// FuzzSwitchShape: for every text that parses, looking for an end-user
// switch never panics, and an accepted switch is a single plain statement.
func FuzzSwitchShape(f *testing.F) {
	for _, s := range []string{
		"SET LOCAL dbal.token = 'x'", "SELECT set_config('dbal.token', $1, true)",
		"SELECT pg_catalog.set_config('dbal.token', $1::text, 'on') AS v", "RESET dbal.token",
		"WITH x AS (SELECT set_config('dbal.token', $1, true)) SELECT * FROM x",
		"SELECT 1; SET LOCAL dbal.token = 'x'", "SELECT current_setting('dbal.token')",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		tree, err := pg_query.Parse(sql)
		if err != nil {
			return
		}
		for _, raw := range tree.Stmts {
			cmd, src, mentions, problem := switchShape(raw.Stmt)
			if mentions && problem == "" {
				if src == nil || (cmd != "SET" && cmd != "SELECT") {
					t.Fatalf("%q: accepted with source %+v command %q", sql, src, cmd)
				}
				if cmd == "SELECT" && !bareSelect(raw.Stmt.GetSelectStmt()) {
					t.Fatalf("%q: accepted a SELECT with more than set_config", sql)
				}
			}
		}
		_ = containsFold(sql, "dbal")
	})
}

// mayHaveEffect, which reads the text once, agrees with looking for each
// effect word in turn.
func FuzzMayHaveEffect(f *testing.F) {
	for _, s := range []string{"SELECT 1", "set x = 1", "PREPARE p AS SELECT 1", "SeLeCt pg_advisory_lock(1)", "u&\"x\"", "U&", "discar", "LISTEN"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := false
		for _, w := range effectWords {
			want = want || containsFold(s, w)
		}
		if got := mayHaveEffect(s); got != want {
			t.Fatalf("mayHaveEffect(%q) = %v, want %v", s, got, want)
		}
	})
}
