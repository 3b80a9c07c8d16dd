// Package pgbool reads boolean values as PostgreSQL does, so that every
// part of the proxy that must know whether a setting, an argument or an
// option is on agrees with the server.
//
// Parse is PostgreSQL's parse_bool (the boolean type's input and boolean
// settings): a case-insensitive prefix of true, false, yes or no, on, off
// (at least "of"), 1 or 0. Option is defGetBoolean (the options of
// EXPLAIN, COPY, VACUUM, ...): no argument, an integer 0 or 1, a boolean,
// or one of true, false, on, off.
package pgbool

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// Parse reads s as PostgreSQL's parse_bool does; ok is false when s is not
// a boolean (the server then rejects it). It does not trim: the boolean
// type's input trims white space first, a setting's value does not.
func Parse(s string) (value, ok bool) {
	if s == "" {
		return false, false
	}
	prefixOf := func(word string, atLeast int) bool {
		return len(s) >= atLeast && len(s) <= len(word) && strings.EqualFold(s, word[:len(s)])
	}
	switch {
	case prefixOf("true", 1), prefixOf("yes", 1), prefixOf("on", 2), s == "1":
		return true, true
	case prefixOf("false", 1), prefixOf("no", 1), prefixOf("off", 2), s == "0":
		return false, true
	}
	return false, false
}

// IsTrue reports whether s, with surrounding white space trimmed as the
// boolean type's input does, is a true value.
func IsTrue(s string) bool {
	v, ok := Parse(strings.TrimSpace(s))
	return ok && v
}

// Option reads an option's argument as PostgreSQL's defGetBoolean does: no
// argument is true; ok is false for anything the server rejects.
func Option(d *pg_query.DefElem) (value, ok bool) {
	switch v := d.GetArg().GetNode().(type) {
	case nil:
		return true, true
	case *pg_query.Node_Integer:
		switch v.Integer.Ival {
		case 0:
			return false, true
		case 1:
			return true, true
		}
		return false, false
	case *pg_query.Node_Boolean:
		return v.Boolean.Boolval, true
	case *pg_query.Node_String_:
		switch strings.ToLower(v.String_.Sval) {
		case "true", "on":
			return true, true
		case "false", "off":
			return false, true
		}
	}
	return false, false
}
