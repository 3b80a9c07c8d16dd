package policy

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/open-policy-agent/opa/v1/ast"
)

// Keys of the decision document, built once.
var (
	dAllow     = ast.StringTerm("allow")
	dReason    = ast.StringTerm("reason")
	dRule      = ast.StringTerm("rule")
	dFilters   = ast.StringTerm("filters")
	dChecks    = ast.StringTerm("checks")
	dColumns   = ast.StringTerm("columns")
	dTimeoutMS = ast.StringTerm("timeout_ms")
	dMaxRows   = ast.StringTerm("max_rows")
	dSQL       = ast.StringTerm("sql")
	dArgs      = ast.StringTerm("args")
	dDenyRead  = ast.StringTerm("deny_read")
	dDenyWrite = ast.StringTerm("deny_write")
)

// decodeDecision reads the value of data.dbal.decision. Anything but an
// object of the documented shape is an error: a typo such as "filter" for
// "filters" must deny, not silently drop a row filter.
func decodeDecision(v ast.Value) (decision.Decision, error) {
	obj, ok := v.(ast.Object)
	if !ok {
		return decision.Decision{}, fmt.Errorf("decision is %s, not an object", typeName(v))
	}
	var d decision.Decision
	var err error
	t := obj.Get(dAllow)
	if t == nil {
		return decision.Decision{}, errors.New("decision has no allow field")
	}
	b, ok := t.Value.(ast.Boolean)
	if !ok {
		return decision.Decision{}, fmt.Errorf("decision.allow is %s, not a boolean", typeName(t.Value))
	}
	d.Allow = bool(b)
	known := 1
	if t := obj.Get(dReason); t != nil {
		known++
		if d.Reason, err = stringField("reason", t.Value); err != nil {
			return decision.Decision{}, err
		}
	}
	if t := obj.Get(dRule); t != nil {
		known++
		if d.Rule, err = stringField("rule", t.Value); err != nil {
			return decision.Decision{}, err
		}
	}
	if t := obj.Get(dFilters); t != nil {
		known++
		if d.Filters, err = filtersField("filters", t.Value); err != nil {
			return decision.Decision{}, err
		}
	}
	if t := obj.Get(dChecks); t != nil {
		known++
		if d.Checks, err = filtersField("checks", t.Value); err != nil {
			return decision.Decision{}, err
		}
	}
	if t := obj.Get(dColumns); t != nil {
		known++
		if d.Columns, err = columnsField(t.Value); err != nil {
			return decision.Decision{}, err
		}
	}
	if t := obj.Get(dTimeoutMS); t != nil {
		known++
		if d.TimeoutMS, err = countField("timeout_ms", t.Value); err != nil {
			return decision.Decision{}, err
		}
	}
	if t := obj.Get(dMaxRows); t != nil {
		known++
		if d.MaxRows, err = countField("max_rows", t.Value); err != nil {
			return decision.Decision{}, err
		}
	}
	if known != obj.Len() {
		return decision.Decision{}, unknownKey("decision", obj, "allow, reason, rule, filters, checks, columns, timeout_ms, max_rows")
	}
	return d, nil
}

// unknownKey names the first key of obj that is not one of known (a
// comma-separated list).
func unknownKey(path string, obj ast.Object, known string) error {
	names := strings.Split(known, ", ")
	for _, k := range obj.Keys() {
		if s, ok := k.Value.(ast.String); !ok || !slices.Contains(names, string(s)) {
			return fmt.Errorf("%s has an unknown key %v (known: %s)", path, k, known)
		}
	}
	return fmt.Errorf("%s has unknown keys", path)
}

func stringField(name string, v ast.Value) (string, error) {
	s, ok := v.(ast.String)
	if !ok {
		return "", fmt.Errorf("decision.%s is %s, not a string", name, typeName(v))
	}
	return string(s), nil
}

// countField reads a non-negative integer that fits an int32 (milliseconds
// or rows; larger values are certainly mistakes).
func countField(name string, v ast.Value) (int, error) {
	n, ok := v.(ast.Number)
	if !ok {
		return 0, fmt.Errorf("decision.%s is %s, not a number", name, typeName(v))
	}
	i, ok := n.Int64()
	if !ok || i < 0 || i > math.MaxInt32 {
		return 0, fmt.Errorf("decision.%s is %s, not an integer between 0 and %d", name, n, math.MaxInt32)
	}
	return int(i), nil
}

// tableKey checks a "schema.table" key.
func tableKey(field string, k *ast.Term) (string, error) {
	s, ok := k.Value.(ast.String)
	if !ok {
		return "", fmt.Errorf("decision.%s has a key %v that is not a string", field, k)
	}
	schema, table, found := strings.Cut(string(s), ".")
	if !found || schema == "" || table == "" {
		return "", fmt.Errorf("decision.%s key %q is not \"schema.table\"", field, string(s))
	}
	return string(s), nil
}

func filtersField(field string, v ast.Value) (map[string]decision.Filter, error) {
	obj, ok := v.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("decision.%s is %s, not an object", field, typeName(v))
	}
	if obj.Len() == 0 {
		return nil, nil
	}
	out := make(map[string]decision.Filter, obj.Len())
	for it := obj.KeysIterator(); ; {
		k, ok := it.Next()
		if !ok {
			break
		}
		key, err := tableKey(field, k)
		if err != nil {
			return nil, err
		}
		f, err := filterValue(field+"["+key+"]", obj.Get(k).Value)
		if err != nil {
			return nil, err
		}
		out[key] = f
	}
	return out, nil
}

func filterValue(path string, v ast.Value) (decision.Filter, error) {
	obj, ok := v.(ast.Object)
	if !ok {
		return decision.Filter{}, fmt.Errorf("decision.%s is %s, not an object", path, typeName(v))
	}
	var f decision.Filter
	known := 0
	t := obj.Get(dSQL)
	if t == nil {
		return decision.Filter{}, fmt.Errorf("decision.%s has no sql", path)
	}
	known++
	s, ok := t.Value.(ast.String)
	if !ok || strings.TrimSpace(string(s)) == "" {
		return decision.Filter{}, fmt.Errorf("decision.%s.sql is %s, not a non-empty string", path, typeName(t.Value))
	}
	f.SQL = string(s)
	if t := obj.Get(dArgs); t != nil {
		known++
		arr, ok := t.Value.(*ast.Array)
		if !ok {
			return decision.Filter{}, fmt.Errorf("decision.%s.args is %s, not an array", path, typeName(t.Value))
		}
		if arr.Len() > 0 {
			f.Args = make([]any, arr.Len())
		}
		for i := range arr.Len() {
			var err error
			if f.Args[i], err = argValue(arr.Elem(i).Value); err != nil {
				return decision.Filter{}, fmt.Errorf("decision.%s.args[%d]: %w", path, i, err)
			}
		}
	}
	if known != obj.Len() {
		return decision.Filter{}, unknownKey("decision."+path, obj, "sql, args")
	}
	return f, nil
}

// argValue converts a filter argument: scalars to string, bool, int64 (for
// integers that fit), float64 or nil; arrays and objects to []any and
// map[string]any.
func argValue(v ast.Value) (any, error) {
	switch x := v.(type) {
	case ast.String:
		return string(x), nil
	case ast.Boolean:
		return bool(x), nil
	case ast.Null:
		return nil, nil
	case ast.Number:
		if i, ok := x.Int64(); ok {
			return i, nil
		}
		f, ok := x.Float64()
		if !ok {
			return nil, fmt.Errorf("number %s is out of range", x)
		}
		return f, nil
	case *ast.Array, ast.Object:
		return ast.JSON(x)
	}
	return nil, fmt.Errorf("%s is not a valid argument", typeName(v))
}

func columnsField(v ast.Value) (map[string]decision.ColumnRule, error) {
	obj, ok := v.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("decision.columns is %s, not an object", typeName(v))
	}
	if obj.Len() == 0 {
		return nil, nil
	}
	out := make(map[string]decision.ColumnRule, obj.Len())
	for it := obj.KeysIterator(); ; {
		k, ok := it.Next()
		if !ok {
			break
		}
		key, err := tableKey("columns", k)
		if err != nil {
			return nil, err
		}
		rule, ok := obj.Get(k).Value.(ast.Object)
		if !ok {
			return nil, fmt.Errorf("decision.columns[%s] is %s, not an object", key, typeName(obj.Get(k).Value))
		}
		var cr decision.ColumnRule
		known := 0
		if t := rule.Get(dDenyRead); t != nil {
			known++
			if cr.DenyRead, err = stringList("columns["+key+"].deny_read", t.Value); err != nil {
				return nil, err
			}
		}
		if t := rule.Get(dDenyWrite); t != nil {
			known++
			if cr.DenyWrite, err = stringList("columns["+key+"].deny_write", t.Value); err != nil {
				return nil, err
			}
		}
		if known != rule.Len() {
			return nil, unknownKey("decision.columns["+key+"]", rule, "deny_read, deny_write")
		}
		out[key] = cr
	}
	return out, nil
}

// stringList reads an array or a set of strings (a set comes back sorted).
func stringList(path string, v ast.Value) ([]string, error) {
	var arr *ast.Array
	switch x := v.(type) {
	case *ast.Array:
		arr = x
	case ast.Set:
		arr = x.Sorted()
	default:
		return nil, fmt.Errorf("decision.%s is %s, not an array of strings", path, typeName(v))
	}
	out := make([]string, arr.Len())
	for i := range arr.Len() {
		t := arr.Elem(i)
		s, ok := t.Value.(ast.String)
		if !ok {
			return nil, fmt.Errorf("decision.%s holds %s, not only strings", path, typeName(t.Value))
		}
		out[i] = string(s)
	}
	return out, nil
}

// typeName names a value's Rego type and, for scalars, shows it: policy
// values are not input values, so they may appear in errors.
func typeName(v ast.Value) string {
	switch x := v.(type) {
	case ast.Null:
		return "null"
	case ast.Boolean:
		return "the boolean " + x.String()
	case ast.Number:
		return "the number " + x.String()
	case ast.String:
		return "a string"
	case *ast.Array:
		return "an array"
	case ast.Set:
		return "a set"
	case ast.Object:
		return "an object"
	}
	return ast.ValueName(v)
}
