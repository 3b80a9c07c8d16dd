package rewrite

import (
	"fmt"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// verify parses the deparsed SQL again and checks that it means the tree it
// was deparsed from (node locations aside): the rewritten statement the
// server receives is the one the rewriter built.
func verify(out string, want *pg_query.Node) error {
	res, err := pg_query.Parse(out)
	if err != nil {
		return fmt.Errorf("rewrite: the rewritten statement does not parse (%v): %s", err, out)
	}
	if len(res.Stmts) != 1 {
		return fmt.Errorf("rewrite: the rewritten statement is %d statements: %s", len(res.Stmts), out)
	}
	got := res.Stmts[0].Stmt
	want = proto.Clone(want).(*pg_query.Node)
	got = proto.Clone(got).(*pg_query.Node)
	clearLocations(got.ProtoReflect())
	clearLocations(want.ProtoReflect())
	if !proto.Equal(got, want) {
		return fmt.Errorf("rewrite: the rewritten statement does not deparse faithfully: %s", out)
	}
	return nil
}

// clearLocations zeroes every "location" field below m.
func clearLocations(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Kind() == protoreflect.MessageKind && fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				clearLocations(l.Get(i).Message())
			}
		case fd.Kind() == protoreflect.MessageKind && !fd.IsMap():
			clearLocations(v.Message())
		case fd.Kind() == protoreflect.Int32Kind && (fd.Name() == "location" || fd.Name() == "arg_location"):
			m.Clear(fd)
		}
		return true
	})
}

// roundTrips reports whether pg_query can deparse st's own tree faithfully;
// when it cannot, a rewrite of st cannot be expected to either.
func roundTrips(tree *pg_query.Node) bool {
	_, version := template()
	out, err := pg_query.Deparse(&pg_query.ParseResult{Version: version, Stmts: []*pg_query.RawStmt{{Stmt: tree}}})
	return err == nil && verify(out, tree) == nil
}
