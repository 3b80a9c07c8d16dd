package parser

import (
	"fmt"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// MaxDepth bounds how deep a statement's parse tree may be, in the units
// of CheckDepth's estimate, for the text to reach pg_query's C code.
//
// pg_query converts, normalizes, fingerprints and deparses trees with
// recursive C functions that run on the calling thread's stack with no
// depth check of their own: a deep enough tree overflows that stack and
// kills the whole process. One unit is one level of a left-deep operator
// chain (1+1+...+1). Measured on linux/amd64 with pg_query_go v6 (the same
// with and without -race, on the main thread and on others), the C code
// overflows an 8 MB thread stack (glibc's default under the usual
// `ulimit -s 8192`) at about 21,800 units when normalizing, 23,800 when
// parsing and 4,400 when deparsing (the rewriter deparses trees it adds
// filters to); a 2 MB stack (glibc's default when the limit is unlimited)
// overflows at a quarter of that, about 1,100 for deparsing. 1000 leaves
// wide margins on 8 MB stacks and keeps every path safe on 2 MB ones, and
// the estimate itself counts high. PostgreSQL 15 with its default
// max_stack_depth (2 MB) refuses a sum of about 4,000 terms.
const MaxDepth = 1000

// DepthMessage is the message of a DepthError: PostgreSQL's own for a
// statement nested too deeply.
const DepthMessage = "stack depth limit exceeded"

// DepthHint tells a client what to do about a DepthError.
const DepthHint = "The statement nests too deeply for the proxy to analyze safely (long chains of operators, " +
	"joins or set operations, or deeply nested parentheses, subqueries or CASE). " +
	"Flatten it, for example with IN lists, VALUES, arrays, or fewer levels of nesting."

// DepthError is returned for a text whose parse tree could be deeper than
// MaxDepth. Nothing of the text reached pg_query.
type DepthError struct {
	// Depth is the estimated depth at which the check stopped; it exceeds
	// MaxDepth.
	Depth int
}

// Error implements error.
func (e *DepthError) Error() string {
	return fmt.Sprintf("parser: %s (the statement nests about %d levels deep; the limit is %d)", DepthMessage, e.Depth, MaxDepth)
}

// SQLState returns "54001" (statement_too_complex), PostgreSQL's code for
// "stack depth limit exceeded".
func (e *DepthError) SQLState() string { return "54001" }

// CheckDepth returns a *DepthError when the parse tree of sql could be
// deeper than MaxDepth, and nil otherwise. It is a single pass over the
// text in Go and calls no C code.
//
// The estimate is an upper bound on the depth of any tree PostgreSQL's
// grammar can build from the text (including the partial trees of a text
// it rejects halfway). It lexes the text as PostgreSQL's scanner does
// (string constants of every kind, dollar quotes, quoted identifiers,
// nested comments), so nothing inside a literal or comment is taken for an
// operator or a bracket, and it then counts, per bracket level:
//
//   - every operator token and every word (keyword or identifier), since
//     each can make at most one node above its neighbours: left-deep
//     chains (1+1+1, a::t::t, x COLLATE c COLLATE c) and right-deep ones
//     (NOT NOT x, - - x) are both counted in full;
//   - joins and set operations (JOIN, UNION, INTERSECT, EXCEPT), which
//     chain whole FROM items and SELECTs, for the whole statement;
//   - each bracket ( [ and CASE ... END or BEGIN ATOMIC ... END as a
//     nested level weighing a few nodes.
//
// What the grammar builds as a flat list does not add up: items separated
// by commas (select lists, IN lists, VALUES rows, arguments), the operands
// of AND and OR (PostgreSQL flattens a chain of either into one node; the
// AND of a BETWEEN is told apart) and the arms of a CASE (WHEN, THEN,
// ELSE) each count on their own, and a level counts its deepest item, not
// their sum. A 10,000-row VALUES or a WHERE of 5,000 ORs is shallow.
func CheckDepth(sql string) error {
	if d, over := estimateDepth(sql, MaxDepth); over {
		return &DepthError{Depth: d}
	}
	return nil
}

// Normalize is pg_query.Normalize (constants replaced by $1, $2, ...) for a
// text that passes CheckDepth; it returns CheckDepth's error otherwise.
// Use it, not pg_query.Normalize, on any text a client sent.
func Normalize(sql string) (string, error) {
	if err := CheckDepth(sql); err != nil {
		return "", err
	}
	return pg_query.Normalize(sql)
}

// ParseTree is pg_query.Parse for a text that passes CheckDepth; it returns
// CheckDepth's error otherwise. It does not cache: use Parser.Parse for the
// facts of a statement, and ParseTree (not pg_query.Parse) where the raw
// tree of a client's text is needed.
func ParseTree(sql string) (*pg_query.ParseResult, error) {
	if err := CheckDepth(sql); err != nil {
		return nil, err
	}
	return pg_query.Parse(sql)
}

// fingerprint is pg_query.Fingerprint behind CheckDepth.
func fingerprint(sql string) (string, error) {
	if err := CheckDepth(sql); err != nil {
		return "", err
	}
	return pg_query.Fingerprint(sql)
}

// Weights of the estimate, in units of one level of an operator chain.
// Measured per level against such a chain, the costliest constructs are a
// scalar subquery, (SELECT ...), at 3 units; a function call, ARRAY[...],
// ROW(...) or CASE at 2; NOT at 2; a join at 1; a set operation at under 1.
const (
	weightTop     = 10 // statement nodes above the expressions: RawStmt, EXPLAIN, CREATE TABLE AS, INSERT ... SELECT, ...
	weightBracket = 4  // ( or [: a subquery, call, array, row, list
	weightCase    = 4  // CASE ... END: CaseExpr, its list of arms, an arm
	weightAtomic  = 8  // BEGIN ATOMIC ... END: a function body of statements
	weightNot     = 2  // NOT: a BoolExpr with its list of one argument
	weightAnd     = 2  // the flat BoolExpr of an AND chain, with its list
	weightOr      = 2  // the flat BoolExpr of an OR chain, with its list
)

// Frame kinds.
const (
	frameTop     = iota
	frameBracket // ( or [
	frameCase    // CASE ... END
	frameAtomic  // BEGIN ATOMIC ... END
)

// depthFrame is one open bracket level of the estimate.
type depthFrame struct {
	kind   int
	weight int
	// span counts the joins and set operations of the current statement
	// at this level: they nest across every separator.
	span int
	// seg counts the operators and words of the current segment (the text
	// since the last separator at this level); child is the deepest
	// bracket closed within it.
	seg, child int
	// best is the deepest finished segment of the current statement.
	best int
	// and, or record an AND or OR chain in the current statement.
	and, or bool
	// between counts the BETWEENs still waiting for their AND.
	between int
	// done is the deepest finished statement at this level (the statements
	// of a BEGIN ATOMIC body, or of a query string, are siblings).
	done int
	// below is the pathBase of the level under this one when this one
	// opened: below + value() never exceeds the final estimate.
	below int
}

// endSegment closes the current segment.
func (f *depthFrame) endSegment() {
	if v := f.seg + f.child; v > f.best {
		f.best = v
	}
	f.seg, f.child = 0, 0
}

// stmt is the depth of the current statement so far.
func (f *depthFrame) stmt() int {
	v := f.span + max(f.best, f.seg+f.child)
	if f.and {
		v += weightAnd
	}
	if f.or {
		v += weightOr
	}
	return v
}

// endStatement closes the current statement.
func (f *depthFrame) endStatement() {
	f.done = max(f.done, f.stmt())
	f.span, f.seg, f.child, f.best, f.between = 0, 0, 0, 0, 0
	f.and, f.or = false, false
}

// pathBase is a lower bound of the depth of whatever a level opened now
// sits under: the levels below this one, this one's weight, and what of
// the current statement and segment will be above it.
func (f *depthFrame) pathBase() int {
	v := f.below + f.weight + f.span + f.seg
	if f.and {
		v += weightAnd
	}
	if f.or {
		v += weightOr
	}
	return v
}

// value is the depth of the level so far: its own weight and its deepest
// statement. It never decreases as the level goes on.
func (f *depthFrame) value() int {
	return f.weight + max(f.done, f.stmt())
}

// estimateDepth returns the estimated depth of sql's parse trees. It stops
// early, with over set, as soon as the estimate exceeds limit.
func estimateDepth(sql string, limit int) (depth int, over bool) {
	stack := []depthFrame{{kind: frameTop, weight: weightTop}}
	top := &stack[0]
	push := func(kind, weight int) {
		below := top.pathBase()
		stack = append(stack, depthFrame{kind: kind, weight: weight, below: below})
		top = &stack[len(stack)-1]
	}
	pop := func() {
		v := top.value()
		stack = stack[:len(stack)-1]
		top = &stack[len(stack)-1]
		top.child = max(top.child, v)
	}
	n := len(sql)
	prevDot := false   // the previous token was "." (so this word is a label)
	prevBegin := false // the previous token was the word BEGIN
	for i := 0; i < n; {
		c := sql[i]
		dot, begin := false, false
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
			continue
		case c == '-' && i+1 < n && sql[i+1] == '-':
			i = skipLineComment(sql, i)
			continue
		case c == '/' && i+1 < n && sql[i+1] == '*':
			i = skipBlockComment(sql, i)
			continue
		case c == '\'':
			i = skipQuoted(sql, i+1, false)
		case c == '"':
			i = skipDoubleQuoted(sql, i+1)
			top.seg++
		case c == '$':
			switch j := i + 1; {
			case j < n && isDigit(sql[j]):
				for j < n && isDigit(sql[j]) {
					j++
				}
				i = j // a parameter; what follows is the next token ($1a is $1 AS a)
			default:
				if end, ok := dollarDelim(sql, i); ok {
					i = skipDollarQuoted(sql, i, end)
				} else {
					top.seg++ // a lone $
					i++
				}
			}
		case isDigit(c) || (c == '.' && i+1 < n && isDigit(sql[i+1])):
			i = skipNumber(sql, i)
		case isIdentStart(c):
			j := skipIdentCont(sql, i+1)
			if end, ident, ok := prefixedConstant(sql, i, j); ok {
				if ident {
					top.seg++
				}
				i = end
				break
			}
			word := sql[i:j]
			i = j
			if prevDot {
				top.seg++ // after ".", any keyword is a name
				break
			}
			switch kw := keywordOf(word); kw {
			case "and":
				if top.between > 0 {
					top.between--
					top.seg++
				} else {
					top.and = true
					top.endSegment()
				}
			case "or":
				top.or = true
				top.endSegment()
			case "when", "then", "else":
				top.endSegment()
			case "union", "intersect", "except":
				top.span++
				top.endSegment()
			case "join":
				top.span++
			case "not":
				top.seg += weightNot
			case "between":
				top.between++
				top.seg++
			case "case":
				push(frameCase, weightCase)
			case "end":
				if top.kind == frameCase || top.kind == frameAtomic {
					pop()
				} else {
					top.seg++
				}
			case "atomic":
				if prevBegin {
					push(frameAtomic, weightAtomic)
				} else {
					top.seg++
				}
			case "begin":
				begin = true
				top.seg++
			default:
				top.seg++
			}
		case c == '(' || c == '[':
			push(frameBracket, weightBracket)
			i++
		case c == ')' || c == ']':
			if hasBracket(stack) {
				for top.kind != frameBracket {
					pop()
				}
				pop()
			} else {
				top.seg++
			}
			i++
		case c == ',':
			top.endSegment()
			i++
		case c == ';':
			top.endStatement()
			i++
		case c == '.':
			dot = true
			i++
			if i < n && sql[i] == '.' {
				i++ // ".." (a range in PL/pgSQL); no node
				dot = false
			}
		case c == ':':
			top.seg++ // "::" and ":=" are one token, ":" another
			i++
			if i < n && (sql[i] == ':' || sql[i] == '=') {
				i++
			}
		case isOpChar(c):
			j := i
			for j < n && isOpChar(sql[j]) {
				if sql[j] == '-' && j+1 < n && sql[j+1] == '-' || sql[j] == '/' && j+1 < n && sql[j+1] == '*' {
					break // a comment starts inside the operator
				}
				j++
			}
			top.seg += opTokens(sql[i:j])
			i = j
		default:
			top.seg++ // anything else is a one-character token
			i++
		}
		prevDot, prevBegin = dot, begin
		if d := top.below + top.value(); d > limit {
			return d, true
		}
	}
	for len(stack) > 1 {
		pop()
	}
	d := top.value()
	return d, d > limit
}

// prefixedConstant reports whether the word sql[i:j] is the one-letter
// prefix of a constant (E'x', B'1', X'f', N'x', U&'x') or of a quoted
// identifier (U&"x"), and returns the offset after it.
func prefixedConstant(sql string, i, j int) (end int, ident, ok bool) {
	if j != i+1 || j >= len(sql) {
		return 0, false, false
	}
	switch c, next := sql[i], sql[j]; {
	case next == '\'' && (c == 'e' || c == 'E'):
		return skipQuoted(sql, j+1, true), false, true
	case next == '\'' && strings.IndexByte("bBxXnN", c) >= 0:
		return skipQuoted(sql, j+1, false), false, true
	case next == '&' && (c == 'u' || c == 'U') && j+1 < len(sql) && sql[j+1] == '\'':
		return skipQuoted(sql, j+2, false), false, true
	case next == '&' && (c == 'u' || c == 'U') && j+1 < len(sql) && sql[j+1] == '"':
		return skipDoubleQuoted(sql, j+2), true, true
	}
	return 0, false, false
}

// hasBracket reports whether a ( or [ level is open.
func hasBracket(stack []depthFrame) bool {
	for i := len(stack) - 1; i > 0; i-- {
		if stack[i].kind == frameBracket {
			return true
		}
	}
	return false
}

// keywordOf returns word in lower case if it is one of the keywords the
// estimate treats specially, else "".
func keywordOf(word string) string {
	var candidates []string
	switch len(word) {
	case 2:
		candidates = []string{"or"}
	case 3:
		candidates = []string{"and", "not", "end"}
	case 4:
		candidates = []string{"when", "then", "else", "join", "case"}
	case 5:
		candidates = []string{"union", "begin"}
	case 6:
		candidates = []string{"except", "atomic"}
	case 7:
		candidates = []string{"between"}
	case 9:
		candidates = []string{"intersect"}
	}
	for _, kw := range candidates {
		if strings.EqualFold(kw, word) {
			return kw
		}
	}
	return ""
}

// opTokens returns how many tokens PostgreSQL's scanner makes of run, a
// run of operator characters without a comment start: one, unless it ends
// in + or - and has none of ~ ! @ # ^ & | ` ? %, in which case the trailing
// + and - are split off and scanned again (1+-+-1 is five tokens).
func opTokens(run string) int {
	k := len(run)
	if k < 2 || (run[k-1] != '+' && run[k-1] != '-') || strings.ContainsAny(run[:k-1], "~!@#^&|`?%") {
		return 1
	}
	for k > 1 && (run[k-1] == '+' || run[k-1] == '-') {
		k--
	}
	// The first token is run[:k]; each + and - after it is one more.
	return 1 + len(run) - k
}

// skipLineComment skips the -- comment at i, up to its newline.
func skipLineComment(sql string, i int) int {
	for i < len(sql) && sql[i] != '\n' && sql[i] != '\r' {
		i++
	}
	return i
}

// skipBlockComment skips the /* comment at i; such comments nest. An
// unterminated one runs to the end (PostgreSQL rejects the text there).
func skipBlockComment(sql string, i int) int {
	depth := 0
	for i < len(sql) {
		switch {
		case sql[i] == '/' && i+1 < len(sql) && sql[i+1] == '*':
			depth++
			i += 2
		case sql[i] == '*':
			for i < len(sql) && sql[i] == '*' {
				i++
			}
			if i < len(sql) && sql[i] == '/' {
				i++
				if depth--; depth == 0 {
					return i
				}
			}
		default:
			i++
		}
	}
	return i
}

// skipQuoted skips a single-quoted string constant whose body starts at i
// (after the opening quote), and returns the offset after it. With escapes
// (E'...') a backslash escapes the next character; in every kind, two
// quotes in a row stand for one (in B'1' and X'f' constants they end the
// constant and start another, which skips the same text). A constant
// continues after whitespace that holds a newline and another quote, in the
// same kind: E'a', a newline, then '\'x' is one constant.
func skipQuoted(sql string, i int, escapes bool) int {
	n := len(sql)
	for i < n {
		switch sql[i] {
		case '\\':
			if escapes {
				i += 2
				continue
			}
			i++
		case '\'':
			if i+1 < n && sql[i+1] == '\'' {
				i += 2
				continue
			}
			i++
			j, ok := quoteContinues(sql, i)
			if !ok {
				return i
			}
			i = j
		default:
			i++
		}
	}
	return n
}

// quoteContinues reports whether a string constant that closed just before
// i continues, as PostgreSQL's {quotecontinue}: whitespace (and -- comments)
// holding at least one newline, then a quote. It returns the offset after
// that quote.
func quoteContinues(sql string, i int) (int, bool) {
	n := len(sql)
	// Whitespace and comments on the same line.
	for i < n {
		if c := sql[i]; c == ' ' || c == '\t' || c == '\f' || c == '\v' {
			i++
		} else if c == '-' && i+1 < n && sql[i+1] == '-' {
			i = skipLineComment(sql, i)
		} else {
			break
		}
	}
	if i >= n || (sql[i] != '\n' && sql[i] != '\r') {
		return 0, false
	}
	i++
	// Any whitespace, and comments that end in a newline.
	for i < n {
		if c := sql[i]; c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' {
			i++
		} else if c == '-' && i+1 < n && sql[i+1] == '-' {
			j := skipLineComment(sql, i)
			if j >= n {
				return 0, false
			}
			i = j + 1
		} else {
			break
		}
	}
	if i < n && sql[i] == '\'' {
		return i + 1, true
	}
	return 0, false
}

// skipDoubleQuoted skips a quoted identifier whose body starts at i; ""
// is a quote.
func skipDoubleQuoted(sql string, i int) int {
	for i < len(sql) {
		if sql[i] == '"' {
			if i+1 < len(sql) && sql[i+1] == '"' {
				i += 2
				continue
			}
			return i + 1
		}
		i++
	}
	return len(sql)
}

// dollarDelim reports whether a dollar-quote delimiter ($$ or $tag$) starts
// at i, and returns the offset after it.
func dollarDelim(sql string, i int) (int, bool) {
	j := i + 1
	if j < len(sql) && isIdentStart(sql[j]) {
		j++
		for j < len(sql) && (isIdentStart(sql[j]) || isDigit(sql[j])) {
			j++
		}
	}
	if j < len(sql) && sql[j] == '$' {
		return j + 1, true
	}
	return 0, false
}

// skipDollarQuoted skips a dollar-quoted constant whose delimiter is
// sql[start:body]: it ends at the first repetition of the delimiter.
func skipDollarQuoted(sql string, start, body int) int {
	delim := sql[start:body]
	if k := strings.Index(sql[body:], delim); k >= 0 {
		return body + k + len(delim)
	}
	return len(sql)
}

// skipNumber skips a numeric constant at i. PostgreSQL rejects letters
// right after a number (0x1F and 1e5 aside), so the trailing identifier
// characters are taken with it; "1..2" stops before "..".
func skipNumber(sql string, i int) int {
	n := len(sql)
	for i < n && (isDigit(sql[i]) || sql[i] == '_') {
		i++
	}
	if i < n && sql[i] == '.' && !(i+1 < n && sql[i+1] == '.') {
		i++
		for i < n && (isDigit(sql[i]) || sql[i] == '_') {
			i++
		}
	}
	if i < n && (sql[i] == 'e' || sql[i] == 'E') {
		j := i + 1
		if j < n && (sql[j] == '+' || sql[j] == '-') {
			j++
		}
		if j < n && isDigit(sql[j]) {
			i = j
			for i < n && (isDigit(sql[i]) || sql[i] == '_') {
				i++
			}
		}
	}
	if i < n && isIdentStart(sql[i]) {
		i = skipIdentCont(sql, i)
	}
	return i
}

// skipIdentCont skips identifier characters (letters, digits, _, $ and
// bytes of multibyte characters) from i.
func skipIdentCont(sql string, i int) int {
	for i < len(sql) && (isIdentStart(sql[i]) || isDigit(sql[i]) || sql[i] == '$') {
		i++
	}
	return i
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isIdentStart reports whether c may start an identifier (as PostgreSQL's
// ident_start: letters, _, and any byte >= 0x80).
func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= 0x80
}

// isOpChar reports whether c is one of PostgreSQL's operator characters.
func isOpChar(c byte) bool {
	switch c {
	case '~', '!', '@', '#', '^', '&', '|', '`', '?', '+', '-', '*', '/', '%', '<', '>', '=':
		return true
	}
	return false
}
