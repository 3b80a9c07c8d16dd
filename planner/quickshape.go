package planner

import (
	"strconv"
	"unicode/utf8"
)

// quickShape finds a statement text's shape in Go, without the two calls
// into pg_query's C code (Normalize, then Scan for the splice) that a text
// with new constants otherwise costs: it returns the text with each
// constant replaced by $1, $2, ... in order, as pg_query.Normalize writes
// it, and the constants' texts, into consts (reused).
//
// It is exact for a small subset of SQL and gives up (ok false) on anything
// else, so that the caller takes the pg_query path: comments, dollar signs
// (parameters, dollar quotes), backslashes, escape, bit, hex, national and
// Unicode strings (E'x', B'1', X'f', N'x', U&'x'), string continuation across
// lines, numbers with exponents, a leading or trailing dot or an
// underscore, and anything but ASCII outside quotes. Within that subset
// every constant it reports is exactly one PostgreSQL ICONST, FCONST or
// SCONST token (FuzzQuickShape checks this against pg_query.Scan), and the
// text between constants is copied unchanged, so two texts with equal
// quickShape results lex to the same tokens but for their constants.
//
// Negative numbers are left as an operator and a constant (Normalize folds
// the sign into the constant), so such a text misses the shape its
// normalized form was stored under and is planned the slow way.
func quickShape(sql string, buf []byte, consts []string) (norm []byte, out []string, ok bool) {
	norm, out = buf[:0], consts[:0]
	last := 0     // start of the text not yet copied to norm
	ascii := true // no byte >= 0x80 (inside quotes) so far
	emit := func(start, end int) {
		norm = append(norm, sql[last:start]...)
		norm = append(norm, '$')
		norm = strconv.AppendInt(norm, int64(len(out)+1), 10)
		out = append(out, sql[start:end])
		last = end
	}
	n := len(sql)
	opRun := 0 // operator characters in a row
	for i := 0; i < n; {
		c := sql[i]
		if isOpChar(c) {
			if opRun++; opRun >= 63 {
				return nil, nil, false // "operator too long"
			}
		} else {
			opRun = 0
		}
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			i++
			continue
		case isIdentStart(c):
			j := i + 1
			for j < n && isIdentCont(sql[j]) {
				j++
			}
			if j < n && (sql[j] == '\'' || sql[j] == '"' || sql[j] == '$' || sql[j] >= 0x80) {
				return nil, nil, false // E'..', U&".." and the like, or a non-ASCII identifier
			}
			i = j
		case c >= '0' && c <= '9':
			if i > 0 && (sql[i-1] == '.' || isIdentCont(sql[i-1]) || sql[i-1] == '"') {
				return nil, nil, false
			}
			start := i
			for i < n && sql[i] >= '0' && sql[i] <= '9' {
				i++
			}
			if i < n && sql[i] == '.' {
				i++
				if i == n || sql[i] < '0' || sql[i] > '9' {
					return nil, nil, false // "1." or "1..2"
				}
				for i < n && sql[i] >= '0' && sql[i] <= '9' {
					i++
				}
			}
			if i < n && (isIdentCont(sql[i]) || sql[i] == '.' || sql[i] == '$' || sql[i] == '\'' || sql[i] == '"' || sql[i] >= 0x80) {
				return nil, nil, false // an exponent, trailing junk, 1_000, 0x1F
			}
			emit(start, i)
		case c == '\'':
			if i > 0 {
				if p := sql[i-1]; isIdentCont(p) || p == '&' || p == '"' || p == '\'' || p >= 0x80 {
					return nil, nil, false
				}
			}
			start := i
			i++
			for {
				if i >= n {
					return nil, nil, false // unterminated
				}
				b := sql[i]
				if b == '\\' || b == 0 {
					return nil, nil, false // meaning depends on standard_conforming_strings; NUL ends a C string
				}
				if b >= 0x80 {
					ascii = false
				}
				i++
				if b == '\'' {
					if i < n && sql[i] == '\'' {
						i++ // a doubled quote
						continue
					}
					break
				}
			}
			k := i
			for k < n && (sql[k] == ' ' || sql[k] == '\t' || sql[k] == '\n' || sql[k] == '\r' || sql[k] == '\f') {
				k++
			}
			if k < n && sql[k] == '\'' {
				return nil, nil, false // adjacent or continued strings
			}
			emit(start, i)
		case c == '"':
			if i > 0 && sql[i-1] == '&' {
				return nil, nil, false // U&"..." (and its UESCAPE '...')
			}
			open := i
			i++
			for {
				if i >= n {
					return nil, nil, false
				}
				b := sql[i]
				if b >= 0x80 {
					ascii = false
				} else if b == 0 {
					return nil, nil, false
				}
				i++
				if b == '"' {
					if i < n && sql[i] == '"' {
						i++
						continue
					}
					break
				}
			}
			if i == open+2 || i < n && (sql[i] == '\'' || sql[i] == '"') {
				return nil, nil, false // "" (an error), or a quote right after
			}
		case c == '-':
			if i+1 < n && sql[i+1] == '-' {
				return nil, nil, false // a comment
			}
			i++
		case c == '/':
			if i+1 < n && sql[i+1] == '*' {
				return nil, nil, false // a comment
			}
			i++
		case c == '.':
			if i+1 < n && sql[i+1] >= '0' && sql[i+1] <= '9' {
				return nil, nil, false // ".5"
			}
			i++
		case isSimplePunct(c):
			i++
		default:
			// $, \, `, control characters, bytes >= 0x80 outside quotes.
			return nil, nil, false
		}
	}
	if len(out) == 0 || !ascii && !utf8.ValidString(sql) {
		return nil, nil, false
	}
	norm = append(norm, sql[last:]...)
	return norm, out, true
}

// isOpChar reports whether c may be part of an operator.
func isOpChar(c byte) bool {
	switch c {
	case '+', '-', '*', '/', '<', '>', '=', '~', '!', '@', '#', '%', '^', '&', '|', '`', '?':
		return true
	}
	return false
}

func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
}

func isIdentCont(c byte) bool {
	return isIdentStart(c) || c >= '0' && c <= '9'
}

// isSimplePunct reports whether c is an ASCII operator or punctuation
// character that never starts a comment, a constant or a quoted token on
// its own.
func isSimplePunct(c byte) bool {
	switch c {
	case '(', ')', ',', ';', ':', '[', ']', '+', '*', '<', '>', '=', '~', '!', '@', '#', '%', '^', '&', '|', '?':
		return true
	}
	return false
}
