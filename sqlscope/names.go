package sqlscope

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// nodeOneof is the "node" oneof of pg_query.Node (an immutable descriptor).
var nodeOneof = (&pg_query.Node{}).ProtoReflect().Descriptor().Oneofs().ByName("node")

// Unwrap returns the message inside a pg_query.Node, or nil.
func Unwrap(n *pg_query.Node) proto.Message {
	if n == nil {
		return nil
	}
	m := n.ProtoReflect()
	fd := m.WhichOneof(nodeOneof)
	if fd == nil {
		return nil
	}
	return m.Get(fd).Message().Interface()
}

// Children calls visit for every message held by a message-typed field of
// m (each element of a list), in field order: the generic step of a walk
// over a parse tree, for the node kinds a walker has no case of its own
// for. A nil or invalid m has none.
func Children(m proto.Message, visit func(proto.Message)) {
	if m == nil {
		return
	}
	r := m.ProtoReflect()
	if !r.IsValid() {
		return
	}
	r.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind || fd.IsMap() {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				visit(l.Get(i).Message().Interface())
			}
		} else {
			visit(v.Message().Interface())
		}
		return true
	})
}

// Walk calls fn for m and every message below it (through Children), in
// depth-first order, while fn returns true; it reports whether the walk
// went to the end. It is the generic walk for questions about a whole
// tree (does it create a temporary table, which functions does it call)
// that need no name resolution.
func Walk(m proto.Message, fn func(proto.Message) bool) bool {
	if m == nil {
		return true
	}
	if !fn(m) {
		return false
	}
	cont := true
	Children(m, func(c proto.Message) {
		if cont {
			cont = Walk(c, fn)
		}
	})
	return cont
}

// Strings returns the String values of ns (a qualified name, a USING
// list), or nil if any of them is not a String.
func Strings(ns []*pg_query.Node) []string {
	out := make([]string, 0, len(ns))
	for _, n := range ns {
		s, ok := n.GetNode().(*pg_query.Node_String_)
		if !ok {
			return nil
		}
		out = append(out, s.String_.Sval)
	}
	return out
}

// ColumnRefNames splits a column reference into its names and whether it
// ends in * (t.*, or a bare *).
func ColumnRefNames(c *pg_query.ColumnRef) (names []string, star bool) {
	names = make([]string, 0, len(c.Fields))
	for _, f := range c.Fields {
		switch v := f.GetNode().(type) {
		case *pg_query.Node_String_:
			names = append(names, v.String_.Sval)
		case *pg_query.Node_AStar:
			star = true
		}
	}
	return names, star
}

// FunctionName is the name a function in FROM is known by: its alias,
// else (as PostgreSQL names it) the unqualified name of its first
// function; "" when it has neither.
func FunctionName(rf *pg_query.RangeFunction) string {
	if a := rf.Alias.GetAliasname(); a != "" {
		return a
	}
	if len(rf.Functions) == 0 {
		return ""
	}
	items := rf.Functions[0].GetList().GetItems()
	if len(items) == 0 {
		return ""
	}
	if names := Strings(items[0].GetFuncCall().GetFuncname()); len(names) > 0 {
		return names[len(names)-1]
	}
	return ""
}

// IsSetOperation reports whether s is a UNION, INTERSECT or EXCEPT (whose
// own query level has no range table: its ORDER BY names output columns).
func IsSetOperation(s *pg_query.SelectStmt) bool {
	switch s.Op {
	case pg_query.SetOperation_SETOP_UNION, pg_query.SetOperation_SETOP_INTERSECT, pg_query.SetOperation_SETOP_EXCEPT:
		return true
	}
	return false
}

// QuoteIdent quotes s as an SQL identifier, as PostgreSQL's quote_ident
// always would (NUL bytes, which no identifier may hold, are dropped).
func QuoteIdent(s string) string {
	return `"` + strings.ReplaceAll(strings.ReplaceAll(s, "\x00", ""), `"`, `""`) + `"`
}
