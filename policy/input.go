package policy

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"sync/atomic"

	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/open-policy-agent/opa/v1/ast"
)

// Key terms of the input document, built once. Terms are never modified by
// evaluation, so they can be shared by concurrent evaluations.
var (
	kSession     = ast.StringTerm("session")
	kStatement   = ast.StringTerm("statement")
	kTransaction = ast.StringTerm("transaction")
	kBackend     = ast.StringTerm("backend")

	kUser            = ast.StringTerm("user")
	kRole            = ast.StringTerm("role")
	kClaims          = ast.StringTerm("claims")
	kDatabase        = ast.StringTerm("database")
	kApplicationName = ast.StringTerm("application_name")
	kClientAddr      = ast.StringTerm("client_addr")
	kTLS             = ast.StringTerm("tls")

	kCommand     = ast.StringTerm("command")
	kClass       = ast.StringTerm("class")
	kTables      = ast.StringTerm("tables")
	kFunctions   = ast.StringTerm("functions")
	kFlags       = ast.StringTerm("flags")
	kSetting     = ast.StringTerm("setting")
	kFingerprint = ast.StringTerm("fingerprint")
	kText        = ast.StringTerm("text")

	kSchema  = ast.StringTerm("schema")
	kName    = ast.StringTerm("name")
	kAccess  = ast.StringTerm("access")
	kColumns = ast.StringTerm("columns")
	kLocal   = ast.StringTerm("local")
	kConfigs = ast.StringTerm("configs")

	kArgs            = ast.StringTerm("args")
	kField           = ast.StringTerm("field")
	kOperator        = ast.StringTerm("operator")
	kResolved        = ast.StringTerm("resolved")
	kCandidates      = ast.StringTerm("candidates")
	kArguments       = ast.StringTerm("arguments")
	kOID             = ast.StringTerm("oid")
	kBuiltin         = ast.StringTerm("builtin")
	kKind            = ast.StringTerm("kind")
	kVolatility      = ast.StringTerm("volatility")
	kLanguage        = ast.StringTerm("language")
	kSecurityDefiner = ast.StringTerm("security_definer")
	kReturnsSet      = ast.StringTerm("returns_set")

	kActive = ast.StringTerm("active")

	// The two possible transaction objects, shared (objects are safe for
	// concurrent reads).
	txTerms = map[bool]*ast.Term{
		false: ast.ObjectTerm(ast.Item(kActive, ast.InternedTerm(false))),
		true:  ast.ObjectTerm(ast.Item(kActive, ast.InternedTerm(true))),
	}

	kVersion    = ast.StringTerm("version")
	kVersionNum = ast.StringTerm("version_num")
	kSettings   = ast.StringTerm("settings")
)

// inputValue converts in to the ast.Value a policy sees as `input`. It builds
// the AST directly: no reflection, no JSON round trip. Nil slices and maps
// become empty arrays and objects, so that policies can iterate them. The
// backend part comes from bc when it describes the same backend (bc may be
// nil).
func inputValue(in *decision.Input, bc *backendCache) (ast.Value, error) {
	claims, err := mapValue(in.Session.Claims)
	if err != nil {
		return nil, fmt.Errorf("session.claims: %w", err)
	}
	s := &in.Session
	session := ast.NewObject(
		ast.Item(kUser, str(s.User)),
		ast.Item(kRole, str(s.Role)),
		ast.Item(kClaims, ast.NewTerm(claims)),
		ast.Item(kDatabase, str(s.Database)),
		ast.Item(kApplicationName, str(s.ApplicationName)),
		ast.Item(kClientAddr, str(s.ClientAddr)),
		ast.Item(kTLS, ast.InternedTerm(s.TLS)),
	)

	st := &in.Statement
	tables := make([]*ast.Term, len(st.Tables))
	for i := range st.Tables {
		t := &st.Tables[i]
		tables[i] = ast.ObjectTerm(
			ast.Item(kSchema, str(t.Schema)),
			ast.Item(kName, str(t.Name)),
			ast.Item(kAccess, strArray(t.Access)),
			ast.Item(kColumns, columnsTerm(t.Columns)),
		)
	}
	functions := make([]*ast.Term, len(st.Functions))
	for i := range st.Functions {
		functions[i] = functionTerm(&st.Functions[i])
	}
	items := make([][2]*ast.Term, 0, 8)
	items = append(items,
		ast.Item(kCommand, str(st.Command)),
		ast.Item(kClass, str(st.Class)),
		ast.Item(kTables, ast.ArrayTerm(tables...)),
		ast.Item(kFunctions, ast.ArrayTerm(functions...)),
		ast.Item(kFlags, strArray(st.Flags)),
		ast.Item(kConfigs, strArray(st.Configs)),
		ast.Item(kFingerprint, str(st.Fingerprint)),
		ast.Item(kText, str(st.Text)),
	)
	if st.Setting != nil {
		items = append(items, ast.Item(kSetting, ast.ObjectTerm(
			ast.Item(kName, str(st.Setting.Name)),
			ast.Item(kLocal, ast.InternedTerm(st.Setting.Local)),
		)))
	}
	statement := ast.NewObject(items...)

	return ast.NewObject(
		ast.Item(kSession, ast.NewTerm(session)),
		ast.Item(kStatement, ast.NewTerm(statement)),
		ast.Item(kTransaction, txTerms[in.Transaction.Active]),
		ast.Item(kBackend, bc.term(&in.Backend)),
	), nil
}

// functionTerm is the input object of one called function.
func functionTerm(f *decision.Function) *ast.Term {
	cands := make([]*ast.Term, len(f.Candidates))
	for i := range f.Candidates {
		c := &f.Candidates[i]
		cands[i] = ast.ObjectTerm(
			ast.Item(kSchema, str(c.Schema)),
			ast.Item(kName, str(c.Name)),
			ast.Item(kArguments, str(c.Arguments)),
			ast.Item(kOID, ast.InternedTerm(int(c.OID))),
			ast.Item(kBuiltin, ast.InternedTerm(c.Builtin)),
			ast.Item(kKind, str(c.Kind)),
			ast.Item(kVolatility, str(c.Volatility)),
			ast.Item(kLanguage, str(c.Language)),
			ast.Item(kSecurityDefiner, ast.InternedTerm(c.SecurityDefiner)),
			ast.Item(kReturnsSet, ast.InternedTerm(c.ReturnsSet)),
		)
	}
	return ast.ObjectTerm(
		ast.Item(kSchema, str(f.Schema)),
		ast.Item(kName, str(f.Name)),
		ast.Item(kArgs, ast.InternedTerm(f.Args)),
		ast.Item(kField, ast.InternedTerm(f.Field)),
		ast.Item(kOperator, ast.InternedTerm(f.Operator)),
		ast.Item(kResolved, ast.InternedTerm(f.Resolved)),
		ast.Item(kCandidates, ast.ArrayTerm(cands...)),
	)
}

// backendCache keeps the AST of the last backend description: every
// statement carries the backend's ParameterStatus values (a dozen or more),
// and they rarely change, so comparing them is cheaper than converting them.
// The zero value is ready; a nil *backendCache converts every time.
type backendCache struct {
	last atomic.Pointer[backendEntry]
}

type backendEntry struct {
	version    string
	versionNum int
	settings   map[string]string // a private copy
	term       *ast.Term
}

func (c *backendCache) term(b *decision.Backend) *ast.Term {
	if c == nil {
		return backendTerm(b)
	}
	if e := c.last.Load(); e != nil && e.version == b.Version && e.versionNum == b.VersionNum && sameSettings(e.settings, b.Settings) {
		return e.term
	}
	t := backendTerm(b)
	c.last.Store(&backendEntry{version: b.Version, versionNum: b.VersionNum, settings: maps.Clone(b.Settings), term: t})
	return t
}

func sameSettings(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range b {
		if w, ok := a[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func backendTerm(b *decision.Backend) *ast.Term {
	settings := make([][2]*ast.Term, 0, len(b.Settings))
	for k, v := range b.Settings {
		settings = append(settings, ast.Item(str(k), str(v)))
	}
	return ast.ObjectTerm(
		ast.Item(kVersion, str(b.Version)),
		ast.Item(kVersionNum, ast.InternedTerm(b.VersionNum)),
		ast.Item(kSettings, ast.ObjectTerm(settings...)),
	)
}

// str is a string term, interned when OPA has one for s (common keys and
// values such as "select" allocate nothing).
func str(s string) *ast.Term { return ast.InternedTerm(s) }

func strArray(ss []string) *ast.Term {
	ts := make([]*ast.Term, len(ss))
	for i, s := range ss {
		ts[i] = str(s)
	}
	return ast.ArrayTerm(ts...)
}

func columnsTerm(m map[string][]string) *ast.Term {
	items := make([][2]*ast.Term, 0, len(m))
	for k, cols := range m {
		items = append(items, ast.Item(str(k), strArray(cols)))
	}
	return ast.ObjectTerm(items...)
}

func mapValue(m map[string]any) (ast.Value, error) {
	items := make([][2]*ast.Term, 0, len(m))
	for k, v := range m {
		val, err := anyValue(v)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", k, err)
		}
		items = append(items, ast.Item(str(k), ast.NewTerm(val)))
	}
	return ast.NewObject(items...), nil
}

// anyValue converts a JSON-like Go value. The common claim types are
// converted directly; anything else goes through ast.InterfaceToValue.
func anyValue(v any) (ast.Value, error) {
	switch x := v.(type) {
	case nil:
		return ast.NullValue, nil
	case string:
		return str(x).Value, nil
	case bool:
		return ast.InternedTerm(x).Value, nil
	case int:
		return ast.InternedTerm(x).Value, nil
	case int64:
		return ast.InternedTerm(x).Value, nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("%v is not a JSON number", x)
		}
		return ast.FloatNumberTerm(x).Value, nil
	case json.Number:
		return ast.NumberChecked(string(x))
	case []string:
		return strArray(x).Value, nil
	case []any:
		ts := make([]*ast.Term, len(x))
		for i, e := range x {
			ev, err := anyValue(e)
			if err != nil {
				return nil, err
			}
			ts[i] = ast.NewTerm(ev)
		}
		return ast.NewArray(ts...), nil
	case map[string]any:
		return mapValue(x)
	case map[string]string:
		items := make([][2]*ast.Term, 0, len(x))
		for k, s := range x {
			items = append(items, ast.Item(str(k), str(s)))
		}
		return ast.NewObject(items...), nil
	}
	return ast.InterfaceToValue(v)
}
