package planner

import (
	"strconv"
	"strings"

	"github.com/dbalproxy/dbalproxy/decision"
	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// splice is the rewrite of one statement shape with its constants left as
// placeholders, so that a new text of the shape is rewritten by putting its
// own constants back in, without parsing, deciding or rewriting it: the
// rewritten normalized text is cut at its placeholders once, and each text's
// constants are found by scanning it beside the normalized text.
type splice struct {
	norm []normToken // the normalized text's tokens
	// segments of the rewritten normalized text: text, then the constant
	// that stands for placeholder param (0: none).
	segments []segment
	params   int // the number of placeholders
}

type normToken struct {
	text  string
	param int // placeholder number, 0 for any other token
}

type segment struct {
	text  string
	param int
}

// newSplice prepares the splice of a shape from its normalized text. It
// returns nil where splicing might not give what a rewrite of the text
// would: a statement that writes (the rewrite treats a parameter and some
// constants differently there), a normalized text that does not parse (a
// constant where a parameter cannot stand, e.g. DATE '2020-01-01'), or a
// first text whose spliced rewrite differs from its own rewrite, want.
func (p *Planner) newSplice(norm string, d *decision.Decision, sql, want string) *splice {
	if p.cfg.Rewriter == nil {
		return nil
	}
	res, err := p.cfg.Parser.Parse(norm)
	if err != nil || len(res.Statements) != 1 {
		return nil
	}
	st := res.Statements[0]
	for _, t := range st.Tables {
		for _, a := range t.Access {
			if a != "select" {
				return nil
			}
		}
	}
	out, changed, err := p.cfg.Rewriter.Rewrite(st, d, nil) // reads only: no INSERT needs the catalog
	if err != nil || !changed {
		return nil
	}
	sp := &splice{}
	nt, ok := scanTokens(norm)
	if !ok {
		return nil
	}
	for _, t := range nt {
		sp.norm = append(sp.norm, normToken{text: norm[t.Start:t.End], param: paramNumber(norm, t)})
	}
	ot, ok := scanTokens(out)
	if !ok {
		return nil
	}
	last := 0
	for _, t := range ot {
		n := paramNumber(out, t)
		if n == 0 {
			continue
		}
		sp.segments = append(sp.segments, segment{text: out[last:t.Start], param: n})
		sp.params = max(sp.params, n)
		last = int(t.End)
	}
	sp.segments = append(sp.segments, segment{text: out[last:]})
	for _, t := range sp.norm {
		sp.params = max(sp.params, t.param)
	}
	if got, ok := sp.apply(sql); !ok || got != want {
		return nil
	}
	return sp
}

// apply returns the rewrite of sql, a text of the splice's shape, or false
// when sql's tokens do not line up with the shape's.
func (sp *splice) apply(sql string) (string, bool) {
	tokens, ok := scanTokens(sql)
	if !ok {
		return "", false
	}
	consts := make([]string, sp.params+1)
	j := 0
	for _, nt := range sp.norm {
		if j >= len(tokens) {
			return "", false
		}
		t := tokens[j]
		if nt.param == 0 {
			if sql[t.Start:t.End] != nt.text {
				return "", false
			}
			j++
			continue
		}
		start := t.Start
		if t.Token == pg_query.Token_ASCII_45 { // a negative number: "-" and the number
			j++
			if j >= len(tokens) {
				return "", false
			}
			t = tokens[j]
			if t.Token != pg_query.Token_ICONST && t.Token != pg_query.Token_FCONST {
				return "", false
			}
		}
		switch t.Token {
		case pg_query.Token_ICONST, pg_query.Token_FCONST, pg_query.Token_SCONST, pg_query.Token_USCONST,
			pg_query.Token_BCONST, pg_query.Token_XCONST, pg_query.Token_TRUE_P, pg_query.Token_FALSE_P, pg_query.Token_NULL_P:
		default:
			return "", false
		}
		consts[nt.param] = sql[start:t.End]
		j++
	}
	if j != len(tokens) {
		return "", false
	}
	return sp.fill(consts[1:])
}

// fill returns the shape's rewrite with consts[k-1] in place of
// placeholder k. A negative number is put in parentheses, so that it never
// makes "--", a comment, after an operator.
func (sp *splice) fill(consts []string) (string, bool) {
	if len(consts) != sp.params {
		return "", false
	}
	size := 0
	for _, s := range sp.segments {
		size += len(s.text)
		if s.param > 0 {
			size += len(consts[s.param-1]) + 2
		}
	}
	var b strings.Builder
	b.Grow(size)
	for _, s := range sp.segments {
		b.WriteString(s.text)
		if s.param > 0 {
			c := consts[s.param-1]
			switch {
			case c == "":
				return "", false
			case c[0] == '-':
				b.WriteByte('(')
				b.WriteString(c)
				b.WriteByte(')')
			default:
				b.WriteString(c)
			}
		}
	}
	return b.String(), true
}

// scanTokens returns the tokens of sql without comments.
func scanTokens(sql string) ([]*pg_query.ScanToken, bool) {
	res, err := pg_query.Scan(sql)
	if err != nil {
		return nil, false
	}
	out := res.Tokens[:0]
	for _, t := range res.Tokens {
		if t.Token == pg_query.Token_SQL_COMMENT || t.Token == pg_query.Token_C_COMMENT {
			continue
		}
		if t.Start < 0 || t.End > int32(len(sql)) || t.Start > t.End {
			return nil, false
		}
		out = append(out, t)
	}
	return out, true
}

// paramNumber is n for a token $n, else 0.
func paramNumber(sql string, t *pg_query.ScanToken) int {
	if t.Token != pg_query.Token_PARAM {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimPrefix(sql[t.Start:t.End], "$"))
	if err != nil || n < 1 {
		return 0
	}
	return n
}
