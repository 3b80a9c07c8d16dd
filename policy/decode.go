package policy

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// decodeDecision reads the value of data.dbal.decision. Anything but an
// object of the documented shape is an error: a typo such as "filter" for
// "filters" must deny, not silently drop a row filter.
func decodeDecision(v ast.Value) (Decision, error) {
	obj, ok := v.(ast.Object)
	if !ok {
		return Decision{}, fmt.Errorf("decision is %s, not an object", typeName(v))
	}
	var d Decision
	var err error
	seenAllow := false
	obj.Until(func(k, val *ast.Term) bool {
		key, ok := k.Value.(ast.String)
		if !ok {
			err = fmt.Errorf("decision has a non-string key %v", k)
			return true
		}
		switch string(key) {
		case "allow":
			b, ok := val.Value.(ast.Boolean)
			if !ok {
				err = fmt.Errorf("decision.allow is %s, not a boolean", typeName(val.Value))
				return true
			}
			d.Allow, seenAllow = bool(b), true
		case "reason":
			d.Reason, err = stringField("reason", val.Value)
		case "rule":
			d.Rule, err = stringField("rule", val.Value)
		case "filters":
			d.Filters, err = filtersField("filters", val.Value)
		case "checks":
			d.Checks, err = filtersField("checks", val.Value)
		case "columns":
			d.Columns, err = columnsField(val.Value)
		case "timeout_ms":
			d.TimeoutMS, err = countField("timeout_ms", val.Value)
		case "max_rows":
			d.MaxRows, err = countField("max_rows", val.Value)
		default:
			err = fmt.Errorf("decision has an unknown key %q (known: allow, reason, rule, filters, checks, columns, timeout_ms, max_rows)", string(key))
		}
		return err != nil
	})
	if err != nil {
		return Decision{}, err
	}
	if !seenAllow {
		return Decision{}, errors.New("decision has no allow field")
	}
	return d, nil
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

func filtersField(field string, v ast.Value) (map[string]Filter, error) {
	obj, ok := v.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("decision.%s is %s, not an object", field, typeName(v))
	}
	if obj.Len() == 0 {
		return nil, nil
	}
	out := make(map[string]Filter, obj.Len())
	var err error
	obj.Until(func(k, val *ast.Term) bool {
		var key string
		if key, err = tableKey(field, k); err != nil {
			return true
		}
		var f Filter
		if f, err = filterValue(field+"["+key+"]", val.Value); err != nil {
			return true
		}
		out[key] = f
		return false
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func filterValue(path string, v ast.Value) (Filter, error) {
	obj, ok := v.(ast.Object)
	if !ok {
		return Filter{}, fmt.Errorf("decision.%s is %s, not an object", path, typeName(v))
	}
	var f Filter
	var err error
	obj.Until(func(k, val *ast.Term) bool {
		key, _ := k.Value.(ast.String)
		switch string(key) {
		case "sql":
			s, ok := val.Value.(ast.String)
			if !ok || strings.TrimSpace(string(s)) == "" {
				err = fmt.Errorf("decision.%s.sql is %s, not a non-empty string", path, typeName(val.Value))
				return true
			}
			f.SQL = string(s)
		case "args":
			arr, ok := val.Value.(*ast.Array)
			if !ok {
				err = fmt.Errorf("decision.%s.args is %s, not an array", path, typeName(val.Value))
				return true
			}
			f.Args = make([]any, arr.Len())
			for i := range arr.Len() {
				if f.Args[i], err = argValue(arr.Elem(i).Value); err != nil {
					err = fmt.Errorf("decision.%s.args[%d]: %w", path, i, err)
					return true
				}
			}
		default:
			err = fmt.Errorf("decision.%s has an unknown key %v (known: sql, args)", path, k)
		}
		return err != nil
	})
	if err != nil {
		return Filter{}, err
	}
	if f.SQL == "" {
		return Filter{}, fmt.Errorf("decision.%s has no sql", path)
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

func columnsField(v ast.Value) (map[string]ColumnRule, error) {
	obj, ok := v.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("decision.columns is %s, not an object", typeName(v))
	}
	if obj.Len() == 0 {
		return nil, nil
	}
	out := make(map[string]ColumnRule, obj.Len())
	var err error
	obj.Until(func(k, val *ast.Term) bool {
		var key string
		if key, err = tableKey("columns", k); err != nil {
			return true
		}
		rule, ok := val.Value.(ast.Object)
		if !ok {
			err = fmt.Errorf("decision.columns[%s] is %s, not an object", key, typeName(val.Value))
			return true
		}
		var cr ColumnRule
		rule.Until(func(rk, rv *ast.Term) bool {
			name, _ := rk.Value.(ast.String)
			path := "columns[" + key + "]." + string(name)
			switch string(name) {
			case "deny_read":
				cr.DenyRead, err = stringList(path, rv.Value)
			case "deny_write":
				cr.DenyWrite, err = stringList(path, rv.Value)
			default:
				err = fmt.Errorf("decision.columns[%s] has an unknown key %v (known: deny_read, deny_write)", key, rk)
			}
			return err != nil
		})
		if err != nil {
			return true
		}
		out[key] = cr
		return false
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// stringList reads an array or a set of strings (a set comes back sorted).
func stringList(path string, v ast.Value) ([]string, error) {
	var out []string
	var bad ast.Value
	add := func(t *ast.Term) bool {
		s, ok := t.Value.(ast.String)
		if !ok {
			bad = t.Value
			return true
		}
		out = append(out, string(s))
		return false
	}
	switch x := v.(type) {
	case *ast.Array:
		out = make([]string, 0, x.Len())
		x.Until(add)
	case ast.Set:
		out = make([]string, 0, x.Len())
		x.Until(add)
		sort.Strings(out)
	default:
		return nil, fmt.Errorf("decision.%s is %s, not an array of strings", path, typeName(v))
	}
	if bad != nil {
		return nil, fmt.Errorf("decision.%s holds %s, not only strings", path, typeName(bad))
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
