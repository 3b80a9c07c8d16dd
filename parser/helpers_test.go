package parser

import (
	"strings"
)

// fmtTables renders tables compactly for table tests:
// "schema.name(access,...) kind:*,col,col kind:col; next".
func fmtTables(ts []Table) string {
	parts := make([]string, 0, len(ts))
	for _, t := range ts {
		var b strings.Builder
		if t.Schema != "" {
			b.WriteString(t.Schema + ".")
		}
		b.WriteString(t.Name + "(")
		for i, a := range t.Access {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(string(a))
		}
		b.WriteByte(')')
		for _, k := range accessKinds {
			var cols []string
			for _, s := range t.Star {
				if s == k {
					cols = append(cols, "*")
				}
			}
			cols = append(cols, t.Columns[k]...)
			if len(cols) > 0 {
				b.WriteString(" " + string(k) + ":" + strings.Join(cols, ","))
			}
		}
		parts = append(parts, b.String())
	}
	return strings.Join(parts, "; ")
}

func fmtFuncs(fs []Function) string {
	parts := make([]string, 0, len(fs))
	for _, f := range fs {
		if f.Field || f.Operator {
			continue // field selections and operators: see functions_test.go
		}
		if f.Schema != "" {
			parts = append(parts, f.Schema+"."+f.Name)
		} else {
			parts = append(parts, f.Name)
		}
	}
	return strings.Join(parts, ",")
}

// fmtSetting renders a Setting as "name=value[ local][ reset]", "" for nil.
func fmtSetting(s *Setting) string {
	if s == nil {
		return ""
	}
	out := s.Name + "=" + s.Value
	if s.Local {
		out += " local"
	}
	if s.IsReset {
		out += " reset"
	}
	return out
}
