package planner

import (
	"slices"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

var quickShapeCases = []struct {
	sql    string
	norm   string // "" when quickShape must give up
	consts []string
}{
	{"SELECT abalance FROM pgbench_accounts WHERE aid = 42;", "SELECT abalance FROM pgbench_accounts WHERE aid = $1;", []string{"42"}},
	{"SELECT email FROM users WHERE id = 'it''s' AND level > 1.5", "SELECT email FROM users WHERE id = $1 AND level > $2", []string{"'it''s'", "1.5"}},
	{`SELECT "a""b".x FROM "T 1" t WHERE t.y IN (1,2, 3) LIMIT 10`, `SELECT "a""b".x FROM "T 1" t WHERE t.y IN ($1,$2, $3) LIMIT $4`, []string{"1", "2", "3", "10"}},
	{"SELECT x1, t2.y FROM t2 WHERE z='é'", "SELECT x1, t2.y FROM t2 WHERE z=$1", []string{"'é'"}},
	{"SELECT a[1:2], b::numeric(10,2) FROM t WHERE c <> 7 ORDER BY 1", "SELECT a[$1:$2], b::numeric($3,$4) FROM t WHERE c <> $5 ORDER BY $6", []string{"1", "2", "10", "2", "7", "1"}},
	{"SELECT 1", "SELECT $1", []string{"1"}},
	{"SELECT x FROM t", "", nil},                       // no constant: no shape
	{"SELECT x FROM t WHERE a = $1", "", nil},          // a parameter
	{"SELECT $$x$$", "", nil},                          // a dollar quote
	{"SELECT 1 -- c", "", nil},                         // a comment
	{"SELECT /* c */ 1", "", nil},                      // a comment
	{"SELECT E'a\\nb'", "", nil},                       // an escape string
	{"SELECT 'a\\'", "", nil},                          // a backslash
	{"SELECT B'101'", "", nil},                         // bit string
	{"SELECT X'1f'", "", nil},                          // hex string
	{"SELECT N'x'", "", nil},                           // national string
	{"SELECT U&'d\\0061t'", "", nil},                   // Unicode string
	{`SELECT U&"d\0061t" FROM t WHERE a = 1`, "", nil}, // Unicode identifier
	{"SELECT 'a'\n'b'", "", nil},                       // continued string
	{"SELECT 'a' 'b'", "", nil},                        // adjacent strings
	{"SELECT 1e5", "", nil},                            // exponent
	{"SELECT 1.", "", nil},                             // trailing dot
	{"SELECT .5", "", nil},                             // leading dot
	{"SELECT 1..2", "", nil},                           // double dot
	{"SELECT 1_000", "", nil},                          // underscore
	{"SELECT 0x1F", "", nil},                           // hex number
	{"SELECT 1abc", "", nil},                           // trailing junk
	{"SELECT 'unterminated", "", nil},                  // unterminated string
	{`SELECT "unterminated`, "", nil},                  // unterminated identifier
	{"SELECT 1 FROM tëst", "", nil},                    // non-ASCII identifier
	{"SELECT 'a\xff'", "", nil},                        // invalid UTF-8
	{"SELECT 1\x00", "", nil},                          // control character
	{"SELECT x`y FROM t WHERE a = 1", "", nil},         // backquote
	{"SELECT t.5 FROM t", "", nil},                     // a digit after a dot
	{"SELECT a-1, b - 2, -3 FROM t", "SELECT a-$1, b - $2, -$3 FROM t", []string{"1", "2", "3"}},
}

// quickShape finds exactly the constants it should, and gives up on what
// it does not lex exactly.
func TestQuickShape(t *testing.T) {
	for _, c := range quickShapeCases {
		norm, consts, ok := quickShape(c.sql, nil, nil)
		if c.norm == "" {
			if ok {
				t.Errorf("quickShape(%q) = %q %q, want it to give up", c.sql, norm, consts)
			}
			continue
		}
		if !ok || string(norm) != c.norm || !slices.Equal(consts, c.consts) {
			t.Errorf("quickShape(%q) = %q %q %v, want %q %q", c.sql, norm, consts, ok, c.norm, c.consts)
		}
	}
}

// Where quickShape finds a shape, it is the one pg_query.Normalize gives
// (but for a negative number, whose sign Normalize folds into it).
func TestQuickShapeMatchesNormalize(t *testing.T) {
	texts := []string{
		"SELECT abalance FROM pgbench_accounts WHERE aid = 42;",
		"UPDATE pgbench_accounts SET abalance = abalance + 17 WHERE aid = 99",
		"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, 4, CURRENT_TIMESTAMP)",
		"SELECT email FROM users WHERE id = 'it''s' AND level > 1.5 LIMIT 10",
		`SELECT "t"."id", "t"."name" FROM "public"."t" WHERE ("t"."id" = 5 AND "t"."name" <> 'x') LIMIT 1`,
		"SELECT a[1:2], b::text FROM t WHERE c <> 7",
		"SELECT count(*) FROM t WHERE d BETWEEN '2020-01-01'::date AND '2021-01-01'::date",
		"DELETE FROM t WHERE x IN (1, 2, 3) RETURNING *",
		"SELECT 1",
	}
	for _, sql := range texts {
		norm, _, ok := quickShape(sql, nil, nil)
		if !ok {
			t.Errorf("quickShape(%q) gave up", sql)
			continue
		}
		want, err := pg_query.Normalize(sql)
		if err != nil {
			t.Fatal(err)
		}
		if string(norm) != want {
			t.Errorf("quickShape(%q) = %q, Normalize %q", sql, norm, want)
		}
	}
	// Normalize leaves some constants alone (ORDER BY positions, type
	// modifiers) and numbers the others in the order of its tree walk:
	// such texts never meet their shape on the quick path, and take the
	// pg_query one.
	for _, sql := range []string{
		"SELECT email FROM users ORDER BY 1 LIMIT 10",
		"SELECT b::numeric(10,2) FROM t WHERE c <> 7",
		"SELECT email FROM users LIMIT 10 OFFSET 20",
	} {
		norm, _, ok := quickShape(sql, nil, nil)
		want, err := pg_query.Normalize(sql)
		if err != nil {
			t.Fatal(err)
		}
		if !ok || string(norm) == want {
			t.Errorf("quickShape(%q) = %q %v; expected it to differ from Normalize's %q", sql, norm, ok, want)
		}
	}
}

// FuzzQuickShape: whatever the text, when quickShape finds constants, they
// are exactly the ICONST, FCONST and SCONST tokens PostgreSQL's lexer finds
// (pg_query.Scan), the text has no comment, parameter or other kind of
// constant token, and the normalized text is the text with each constant
// replaced by its number.
func FuzzQuickShape(f *testing.F) {
	for _, c := range quickShapeCases {
		f.Add(c.sql)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		norm, consts, ok := quickShape(sql, nil, nil)
		if !ok {
			return
		}
		res, err := pg_query.Scan(sql)
		if err != nil {
			t.Fatalf("quickShape(%q) found a shape; the lexer refuses it: %v", sql, err)
		}
		var want []string
		var b []byte
		last := 0
		for _, tk := range res.Tokens {
			switch tk.Token {
			case pg_query.Token_ICONST, pg_query.Token_FCONST, pg_query.Token_SCONST:
				want = append(want, sql[tk.Start:tk.End])
				b = append(b, sql[last:tk.Start]...)
				b = append(b, "$"+itoa(int64(len(want)))...)
				last = int(tk.End)
			case pg_query.Token_SQL_COMMENT, pg_query.Token_C_COMMENT, pg_query.Token_PARAM,
				pg_query.Token_BCONST, pg_query.Token_XCONST, pg_query.Token_USCONST, pg_query.Token_UIDENT:
				t.Fatalf("quickShape(%q) found a shape in a text with a %v token", sql, tk.Token)
			}
		}
		b = append(b, sql[last:]...)
		if !slices.Equal(consts, want) || string(norm) != string(b) {
			t.Fatalf("quickShape(%q) = %q %q, the lexer's constants %q (%q)", sql, norm, consts, want, b)
		}
	})
}

func BenchmarkQuickShape(b *testing.B) {
	const sql = "SELECT abalance FROM pgbench_accounts WHERE aid = 1234567;"
	var buf [512]byte
	var cs [16]string
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := quickShape(sql, buf[:0], cs[:0]); !ok {
			b.Fatal("no shape")
		}
	}
}
