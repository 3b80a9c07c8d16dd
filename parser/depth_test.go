package parser

import (
	"errors"
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

var rep = strings.Repeat

// deepKinds make, for n levels, a statement of each way of nesting; at 3000
// levels every one is far deeper than MaxDepth, and most of them crashed
// (or, given a smaller thread stack, crash) pg_query's C code.
var deepKinds = map[string]func(n int) string{
	"sum":               func(n int) string { return "SELECT 1" + rep("+1", n) },
	"concat":            func(n int) string { return "SELECT 'a'" + rep("||'a'", n) },
	"unary minus":       func(n int) string { return "SELECT " + rep("- ", n) + "x" },
	"unary minus const": func(n int) string { return "SELECT " + rep("- ", n) + "1" },
	"split operators":   func(n int) string { return "SELECT 1 " + rep("+-", n) + "1" }, // + - + - ... are separate tokens
	"operators":         func(n int) string { return "SELECT x" + rep(" @> x", n) },
	"not":               func(n int) string { return "SELECT " + rep("NOT ", n) + "true" },
	"cast":              func(n int) string { return "SELECT 1" + rep("::int", n) },
	"collate":           func(n int) string { return "SELECT 'a'" + rep(` COLLATE "C"`, n) },
	"at time zone":      func(n int) string { return "SELECT now()" + rep(" AT TIME ZONE 'UTC'", n) },
	"parentheses":       func(n int) string { return "SELECT " + rep("(", n) + "1" + rep(")", n) },
	"brackets":          func(n int) string { return "SELECT " + rep("ARRAY[", n) + "1" + rep("]", n) },
	"function calls":    func(n int) string { return "SELECT " + rep("f(", n) + "1" + rep(")", n) },
	"rows":              func(n int) string { return "SELECT " + rep("ROW(", n) + "1" + rep(")", n) },
	"subqueries":        func(n int) string { return "SELECT " + rep("(SELECT ", n) + "1" + rep(")", n) },
	"from subqueries":   func(n int) string { return "SELECT * FROM " + rep("(SELECT * FROM ", n) + "t" + rep(") s", n) },
	"exists":            func(n int) string { return "SELECT " + rep("EXISTS (SELECT ", n) + "1" + rep(")", n) },
	"case":              func(n int) string { return "SELECT " + rep("CASE WHEN true THEN ", n) + "1" + rep(" END", n) },
	"union":             func(n int) string { return "SELECT 1" + rep(" UNION ALL SELECT 1", n) },
	"intersect":         func(n int) string { return "SELECT 1" + rep(" INTERSECT SELECT 1", n) },
	"except with lists": func(n int) string { return "SELECT 1, 2 WHERE a AND b" + rep(" EXCEPT SELECT 1, 2 WHERE a AND b", n) },
	"joins":             func(n int) string { return "SELECT * FROM t0" + rep(" JOIN t ON a AND b", n) },
	"nested atomic": func(n int) string {
		return rep("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC ", n) + "SELECT 1;" + rep(" END;", n)
	},
	"right-deep and":     func(n int) string { return "SELECT 1 WHERE " + rep("a AND (", n) + "true" + rep(")", n) },
	"between nesting":    func(n int) string { return "SELECT 1 WHERE x" + rep(" BETWEEN 1 AND NOT x", n) },
	"qualified keywords": func(n int) string { return "SELECT t.x" + rep(" + t.and + t.union + t.join + t.when", n) },
	"is distinct":        func(n int) string { return "SELECT x" + rep(" IS DISTINCT FROM NOT x", n) },
	"indirection":        func(n int) string { return "SELECT " + rep("(", n) + "x" + rep(").a", n) },
	"mixed": func(n int) string {
		return "SELECT " + rep("1 + (", n) + "1" + rep(")", n) + " + " + rep("NOT ", n) + "true"
	},
	"second statement": func(n int) string { return "SELECT 1; SELECT 1" + rep("+1", n) },
}

// deepTexts are deepKinds at 3000 levels, and a few more.
var deepTexts = func() map[string]string {
	m := map[string]string{
		"sum of 30000":  "SELECT 1" + rep("+1", 29999),
		"unclosed":      "SELECT " + rep("(", 3000),
		"unclosed case": "SELECT " + rep("CASE WHEN ", 3000),
	}
	for name, gen := range deepKinds {
		m[name] = gen(3000)
	}
	return m
}()

func TestCheckDepthRefusesDeepTrees(t *testing.T) {
	for name, sql := range deepTexts {
		err := CheckDepth(sql)
		var de *DepthError
		if !errors.As(err, &de) {
			t.Errorf("%s: CheckDepth = %v, want a *DepthError", name, err)
			continue
		}
		if de.Depth <= MaxDepth || de.SQLState() != "54001" || !strings.Contains(de.Error(), DepthMessage) {
			t.Errorf("%s: %+v (%q, %s)", name, de, de.Error(), de.SQLState())
		}
		// The parser refuses it the same way, before any C code.
		if _, err := New(Options{}).Parse(sql); !errors.As(err, &de) {
			t.Errorf("%s: Parse = %v, want a *DepthError", name, err)
		}
		if _, err := Normalize(sql); !errors.As(err, &de) {
			t.Errorf("%s: Normalize = %v, want a *DepthError", name, err)
		}
		if _, err := ParseTree(sql); !errors.As(err, &de) {
			t.Errorf("%s: ParseTree = %v, want a *DepthError", name, err)
		}
	}
}

// TestCheckDepthAcceptsWideTrees: what PostgreSQL's grammar builds as a flat
// list does not add up, however long.
func TestCheckDepthAcceptsWideTrees(t *testing.T) {
	for name, sql := range map[string]string{
		"or chain":       "SELECT * FROM t WHERE a = 1" + rep(" OR a = 2", 5000),
		"and chain":      "SELECT * FROM t WHERE a = 1" + rep(" AND b <> 'x'", 5000),
		"orm or of ands": "SELECT * FROM t WHERE (a = $1 AND b = $2)" + rep(" OR (a = $1 AND b IS NOT NULL)", 3000),
		"in list":        "SELECT * FROM t WHERE id IN (1" + rep(", 1", 20000) + ")",
		"not in list":    "SELECT * FROM t WHERE id NOT IN ('a'" + rep(", 'b'", 20000) + ")",
		"values":         "INSERT INTO t (a, b, c) VALUES (1, 'x', now())" + rep(", (2, 'y', now() - interval '1 day')", 10000),
		"select list":    "SELECT a + 1" + rep(", b * 2 + c", 10000) + " FROM t",
		"case arms":      "SELECT CASE x" + rep(" WHEN 1 THEN 'a' || b", 5000) + " ELSE 'z' END FROM t",
		"between":        "SELECT * FROM t WHERE x BETWEEN 1 AND 2" + rep(" AND y BETWEEN SYMMETRIC 3 AND 4", 3000),
		"arguments":      "SELECT greatest(1" + rep(", 2", 20000) + ")",
		"array":          "SELECT ARRAY[1" + rep(", 2", 20000) + "]",
		"statements":     rep("SELECT 1 + 1 + 1; ", 10000),
		"update sets":    "UPDATE t SET a = 1" + rep(", b = b + 1", 5000) + " WHERE id = $1",
		"window":         "SELECT sum(x) OVER (ORDER BY y ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)" + rep(", 1", 5000) + " FROM t",
		"merge":          "MERGE INTO t USING s ON t.id = s.id" + rep(" WHEN MATCHED AND s.a > 1 THEN UPDATE SET a = 1", 2000),
		"nested parens":  "SELECT " + rep("(", 100) + "1" + rep(")", 100),
		"many joins":     "SELECT * FROM t0" + rep(" LEFT JOIN t ON t.a = t0.a AND t.b = t0.b", 100),
		"union":          "SELECT 1" + rep(" UNION ALL SELECT 1", 500),
		"long sum":       "SELECT 1" + rep(" + 1", 900),
	} {
		if d, over := estimateDepth(sql, MaxDepth); over {
			t.Errorf("%s: estimated %d, refused", name, d)
		}
	}
}

// TestCheckDepthLexing: text inside string constants, quoted identifiers
// and comments is no operator and no bracket; text that only looks quoted
// is counted.
func TestCheckDepthLexing(t *testing.T) {
	for _, c := range lexingCases {
		d, over := estimateDepth(c.sql, MaxDepth)
		if over != c.deep {
			t.Errorf("%s: estimated %d (over %v), want over %v", c.name, d, over, c.deep)
		}
	}
}

var chain, parens = rep("+1", 3000), rep("(", 3000)

// lexingCases are texts with deep-looking parts that PostgreSQL's scanner
// reads as constants or comments (deep false), or as tokens (deep true).
var lexingCases = []struct {
	name string
	sql  string
	deep bool
}{
	{"string", "SELECT '" + chain + parens + "'", false},
	{"doubled quotes", "SELECT 'it''s " + chain + "'", false},
	{"standard backslash", `SELECT 'a\' ` + chain, true}, // the backslash is a character; the string ends
	{"escape string", `SELECT E'a\' ` + chain + "'", false},
	{"escape string backslashes", `SELECT E'a\\' ` + chain, true},
	{"escape string lower case", `SELECT e'\'` + chain + "'", false},
	{"escape string after a word", `SELECT xe'\' ` + chain, true}, // xe is a word; '\' is a standard string
	{"unicode string", `SELECT U&'\' ` + chain, true},
	{"unicode identifier", `SELECT U&"` + chain + `"`, false},
	{"national string", `SELECT N'\' ` + chain, true},
	{"bit string", `SELECT B'1''` + chain + "'", false},
	{"hex string", `SELECT X'1f'` + chain, true},
	{"continued escape string", "SELECT E'a'\n'\\'" + chain + "'", false},
	{"continued escape string, escape ends", "SELECT E'a'\n'\\''" + chain, true},
	{"continuation over a comment", "SELECT E'a' -- c\n  -- d\n'\\'" + chain + "'", false},
	{"no continuation without a newline", "SELECT E'a' '\\'" + chain + "'", true},
	{"no continuation over a block comment", "SELECT E'a'\n/* */'\\'" + chain + "'", true},
	{"quoted identifier", `SELECT "a""` + chain + `"`, false},
	{"dollar quote", "SELECT $$" + chain + "$$", false},
	{"tagged dollar quote", "SELECT $a$ $b$ $$" + chain + "$a$", false},
	{"dollar quote ends at its tag", "SELECT $a$ x $a$" + chain, true},
	{"dollar quote in a longer tag", "SELECT $a$ $ba$" + chain, false},
	{"dollar in an identifier", "SELECT x$$, 1" + chain + " --$$", true},
	{"dollar after a number", "SELECT 1$$" + chain + "$$", false},
	{"parameter then dollar quote", "SELECT $1 $$" + chain + "$$", false},
	{"parameter then dollar quote, no space", "SELECT $1$$" + chain + "$$", false},
	{"parameter then junk", "SELECT $1a$$" + chain + "$$", true},
	{"line comment", "SELECT 1 -- " + chain + parens + "\n", false},
	{"line comment ends", "SELECT 1 -- x\n" + chain, true},
	{"line comment ends at carriage return", "SELECT 1 -- x\r" + chain, true},
	{"block comment", "SELECT 1 /* " + chain + " */", false},
	{"nested block comment", "SELECT 1 /* /* */ " + chain + " */", false},
	{"block comment ends", "SELECT 1 /* /* */ */" + chain, true},
	{"comment inside an operator", "SELECT 1" + rep("+/**/1", 3000), true},
	{"dash comment inside an operator", "SELECT 1 +-- " + chain + "\n1", false},
	{"unterminated string", "SELECT '" + chain, false},
	{"unterminated comment", "SELECT /* " + chain, false},
}

func TestOpTokens(t *testing.T) {
	for run, want := range map[string]int{
		"+": 1, "||": 1, "<>": 1, ">=": 1, "@>": 1, "=-": 2, "+-+-": 4, "*-": 2, "@-": 1, "?-+": 1, "<=+": 2, "~~*": 1,
	} {
		if got := opTokens(run); got != want {
			t.Errorf("opTokens(%q) = %d, want %d", run, got, want)
		}
	}
}

// treeDepth is the nesting depth of the protobuf messages of sql's parse
// tree: pg_query's C code recurses about once per message, and one level
// of a chain of operators (the estimate's unit) is two of them.
func treeDepth(t testing.TB, sql string) (int, bool) {
	res, err := pg_query.Parse(sql)
	if err != nil {
		return 0, false
	}
	return messageDepth(res.ProtoReflect()), true
}

func messageDepth(m protoreflect.Message) int {
	d := 0
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Kind() != protoreflect.MessageKind || fd.IsMap():
		case fd.IsList():
			for i, l := 0, v.List(); i < l.Len(); i++ {
				d = max(d, messageDepth(l.Get(i).Message()))
			}
		default:
			d = max(d, messageDepth(v.Message()))
		}
		return true
	})
	return d + 1
}

// TestCheckDepthBoundsTrees checks the estimate against the trees pg_query
// builds, for every deep kind at sizes the estimate accepts.
func TestCheckDepthBoundsTrees(t *testing.T) {
	for name, gen := range deepKinds {
		for _, n := range []int{0, 1, 2, 10, 50, 150} {
			sql := gen(n)
			est, over := estimateDepth(sql, MaxDepth)
			if over {
				continue
			}
			if d, ok := treeDepth(t, sql); ok && d > 2*est {
				t.Errorf("%s (%d): tree depth %d, estimate %d", name, n, d, est)
			}
		}
	}
}

// canonical rebuilds sql from the tokens PostgreSQL's scanner (pg_query.Scan)
// finds in it, with every string constant written 's', every quoted
// identifier "x" and every comment left out, one space between tokens. If
// the estimate lexes as PostgreSQL does, it makes the same of both texts.
func canonical(sql string) (string, bool) {
	res, err := pg_query.Scan(sql)
	if err != nil {
		return "", false
	}
	var b strings.Builder
	for _, tok := range res.Tokens {
		text := sql[tok.Start:tok.End]
		switch tok.Token {
		case pg_query.Token_SQL_COMMENT, pg_query.Token_C_COMMENT:
			continue
		case pg_query.Token_SCONST, pg_query.Token_USCONST, pg_query.Token_BCONST, pg_query.Token_XCONST:
			text = "'s'"
		case pg_query.Token_IDENT, pg_query.Token_UIDENT:
			if text != "" && (text[0] == '"' || text[0] == 'u' || text[0] == 'U') && strings.ContainsRune(text, '"') {
				text = `"x"`
			}
		case pg_query.Token_NCHAR:
			if int(tok.End) < len(sql) && sql[tok.End] == '\'' {
				continue // N'x': one constant
			}
		}
		b.WriteString(text)
		b.WriteByte(' ')
	}
	return b.String(), true
}

// checkLexing fails unless the estimate of sql equals that of its
// canonical form.
func checkLexing(t *testing.T, sql string) {
	t.Helper()
	c, ok := canonical(sql)
	if !ok {
		return
	}
	got, _ := estimateDepth(sql, 1<<30)
	want, _ := estimateDepth(c, 1<<30)
	if got != want {
		t.Fatalf("estimate %d of %q, but %d of the tokens PostgreSQL sees in it: %q", got, sql, want, c)
	}
}

func TestCheckDepthLexesAsPostgreSQL(t *testing.T) {
	for _, c := range lexingCases {
		checkLexing(t, c.sql)
	}
	for _, gen := range deepKinds {
		checkLexing(t, gen(20))
	}
}

// FuzzCheckDepth: CheckDepth never panics, and whatever it accepts,
// pg_query's C code parses, normalizes and fingerprints without crashing,
// into a tree no deeper than the estimate says.
func FuzzCheckDepth(f *testing.F) {
	for _, s := range deepTexts {
		f.Add(s[:min(len(s), 400)])
	}
	for _, s := range []string{
		"SELECT 1+1+1+1+1", "SELECT ((((1))))", "SELECT NOT NOT NOT true", "SELECT - - - x", "SELECT 'a'::text::text",
		"SELECT ARRAY[ARRAY[1]]", "SELECT (SELECT (SELECT 1))", "SELECT 1 UNION SELECT 2 INTERSECT SELECT 3",
		"SELECT * FROM a JOIN b ON x AND y JOIN c USING (z)", "SELECT CASE WHEN a THEN CASE WHEN b THEN 1 END END",
		"SELECT x BETWEEN 1 AND 2 AND y", "SELECT E'\\'' || 1", "SELECT $a$ ) $a$, U&'\\' || 1", "SELECT 1 /* /* */ */ + 2",
		"SELECT t.and + t.or", "CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1; END", "SELECT 1 +-+- 1",
		"SELECT E'a'\n'\\'' + 1", "SELECT x$$ + 1 --$$",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		if len(sql) > 8<<10 {
			return // deep enough to exceed the limit several times over
		}
		est, over := estimateDepth(sql, MaxDepth)
		if err := CheckDepth(sql); (err != nil) != over {
			t.Fatalf("CheckDepth = %v, estimate %d over %v", err, est, over)
		}
		if strings.IndexByte(sql, 0) >= 0 {
			return
		}
		checkLexing(t, sql)
		if over {
			return
		}
		if d, ok := treeDepth(t, sql); ok && d > 2*est {
			t.Fatalf("tree depth %d, estimate %d: %q", d, est, sql)
		}
		_, _ = pg_query.Normalize(sql)
		_, _ = pg_query.Fingerprint(sql)
	})
}
