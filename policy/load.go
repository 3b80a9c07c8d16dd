package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing/fstest"
	"time"

	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/print"
)

// decisionQuery is the entry point every policy set must define.
const decisionQuery = "data.dbal.decision"

var decisionRef = ast.MustParseRef(decisionQuery)

// snapshot is the content of a policy directory, read once so that hashing,
// compiling and testing all see the same bytes even if files change
// meanwhile.
type snapshot struct {
	dir     string
	fsys    fstest.MapFS // relative slash paths -> content
	names   []string     // sorted keys of fsys
	version string
	// revision is a bundle's .manifest revision; "" for a directory.
	revision string
}

// readDir reads the policy files under dir: *.rego, *.json, *.yaml and *.yml,
// recursively. Hidden files and directories (".git", Kubernetes' "..data")
// and editor droppings ("#x#", "x~") are skipped. Symbolic links to files are
// followed.
func readDir(dir string) (*snapshot, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", dir)
	}
	s := &snapshot{dir: dir, fsys: fstest.MapFS{}}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if path != dir && skipName(name) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !policyFile(name) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		s.fsys[rel] = &fstest.MapFile{Data: b, Mode: 0o444}
		s.names = append(s.names, rel)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.seal(); err != nil {
		return nil, fmt.Errorf("%w in %s", err, dir)
	}
	return s, nil
}

// seal sorts the names and computes the version, a hash of the names and
// contents; a snapshot without .rego files is an error.
func (s *snapshot) seal() error {
	sort.Strings(s.names)
	h := sha256.New()
	regos := 0
	for _, n := range s.names {
		if strings.HasSuffix(n, ".rego") {
			regos++
		}
		data := s.fsys[n].Data
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(data))
		h.Write(data)
	}
	if regos == 0 {
		return errors.New("no .rego files")
	}
	s.version = hex.EncodeToString(h.Sum(nil))[:12]
	return nil
}

func skipName(name string) bool {
	return strings.HasPrefix(name, ".") || strings.HasPrefix(name, "#") || strings.HasSuffix(name, "~")
}

func policyFile(name string) bool {
	switch filepath.Ext(name) {
	case ".rego", ".json", ".yaml", ".yml":
		return true
	}
	return false
}

func isTestFile(name string) bool { return strings.HasSuffix(name, "_test.rego") }

// loaded is a snapshot parsed by OPA's loader: modules and data documents,
// as `opa eval -d dir` and `opa test dir` would see them.
type loaded struct {
	modules map[string]*ast.Module // every .rego file, tests included
	docs    map[string]any
}

func (s *snapshot) load() (*loaded, error) {
	res, err := loader.NewFileLoader().
		WithFS(s.fsys).
		WithRegoVersion(ast.RegoV1).
		WithProcessAnnotation(true).
		Filtered([]string{"."}, nil)
	if err != nil {
		return nil, err
	}
	return &loaded{modules: res.ParsedModules(), docs: res.Documents}, nil
}

// policySet is one compiled, prepared policy set. It is immutable.
type policySet struct {
	query rego.PreparedEvalQuery
	// rows are the set's Rego row rules; nil if it has none.
	rows     *rowRuleSet
	use      *decision.InputUse // what the rules can read of the input
	version  string
	revision string // the bundle's revision; "" for a directory
	files    int
	tests    int // tests passed at load; 0 if not run
}

// build compiles a snapshot and prepares the decision query; with runTests,
// it refuses a set whose own tests fail (withTests). The decisions' print()
// output goes to hook (nil: discarded).
func build(ctx context.Context, s *snapshot, withTests bool, hook print.Hook) (*policySet, error) {
	l, err := s.load()
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	modules := make(map[string]*ast.Module, len(l.modules))
	for name, m := range l.modules {
		if !isTestFile(name) {
			modules[name] = m
		}
	}
	compiler := ast.NewCompiler().WithDefaultRegoVersion(ast.RegoV1).WithEnablePrintStatements(hook != nil)
	if compiler.Compile(modules); compiler.Failed() {
		return nil, fmt.Errorf("compile: %w", compiler.Errors)
	}
	if len(compiler.GetRulesExact(decisionRef)) == 0 && !hasDocument(l.docs, "dbal", "decision") {
		return nil, fmt.Errorf("no rule defines %s (want `package dbal` and a `decision` rule)", decisionQuery)
	}
	store := inmem.NewFromObjectWithOpts(l.docs, inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
	pq, err := rego.New(
		rego.Query(decisionQuery),
		rego.Compiler(compiler),
		rego.Store(store),
		rego.StrictBuiltinErrors(true),
		rego.EnablePrintStatements(hook != nil),
		rego.PrintHook(hook),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("prepare %s: %w", decisionQuery, err)
	}
	rows, err := buildRowRules(ctx, compiler, store)
	if err != nil {
		return nil, err
	}
	set := &policySet{query: pq, rows: rows, use: analyzeInput(compiler, s.version), version: s.version, revision: s.revision, files: len(s.names)}
	if withTests {
		results, err := runTests(ctx, l, false, nil)
		if err != nil {
			return nil, fmt.Errorf("tests: %w", err)
		}
		passed, failed := count(results)
		if failed > 0 {
			return nil, fmt.Errorf("%d of %d tests failed: %s", failed, passed+failed, failedNames(results))
		}
		set.tests = passed
	}
	return set, nil
}

func hasDocument(docs map[string]any, path ...string) bool {
	var cur any = docs
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = m[p]; !ok {
			return false
		}
	}
	return true
}

// runTests runs the test_* rules of l with OPA's tester. Built-in errors fail
// a test, as they fail a decision.
// With trace, failures carry the trace the report shows the failing line
// from.
// With cov, it records coverage instead (tracing and coverage exclude each
// other).
func runTests(ctx context.Context, l *loaded, trace bool, cov *cover.Cover) ([]*tester.Result, error) {
	store := inmem.NewFromObject(l.docs)
	ch, err := tester.NewRunner().
		EnableTracing(trace && cov == nil).
		SetCoverageQueryTracer(coverTracer(cov)).
		SetStore(store).
		SetModules(l.modules).
		SetDefaultRegoVersion(ast.RegoV1).
		RaiseBuiltinErrors(true).
		CapturePrintOutput(true).
		SetTimeout(30*time.Second).
		RunTests(ctx, nil)
	if err != nil {
		return nil, err
	}
	var results []*tester.Result
	for r := range ch {
		results = append(results, r)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sort.Slice(results, func(i, j int) bool {
		a, b := results[i], results[j]
		if a.Location == nil || b.Location == nil {
			return a.Location != nil
		}
		if a.Location.File != b.Location.File {
			return a.Location.File < b.Location.File
		}
		return a.Location.Row < b.Location.Row
	})
	return results, nil
}

// coverTracer is cov as the tester's tracer: nil (no coverage) stays an
// untyped nil.
func coverTracer(cov *cover.Cover) topdown.QueryTracer {
	if cov == nil {
		return nil
	}
	return cov
}

func count(results []*tester.Result) (passed, failed int) {
	for _, r := range results {
		switch {
		case r.Skip:
		case r.Pass():
			passed++
		default:
			failed++
		}
	}
	return passed, failed
}

// failedNames lists up to five failed tests, with the first error.
func failedNames(results []*tester.Result) string {
	var names []string
	var firstErr error
	for _, r := range results {
		if r.Skip || r.Pass() {
			continue
		}
		if len(names) < 5 {
			names = append(names, r.Package+"."+r.Name)
		}
		if firstErr == nil && r.Error != nil {
			firstErr = r.Error
		}
	}
	s := strings.Join(names, ", ")
	if firstErr != nil {
		s += " (" + firstErr.Error() + ")"
	}
	return s
}
