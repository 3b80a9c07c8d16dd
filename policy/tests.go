package policy

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/rs/zerolog"
)

// TestOptions configure Test.
type TestOptions struct {
	// Verbose lists every test and its print() output; otherwise only the
	// failures are shown (with their print() output), as `opa test` does.
	Verbose bool
	// Coverage records which lines of the policy files (not the test files)
	// the tests evaluate, with OPA's cover package; TestReport.Coverage
	// holds it. Failures are then reported without their trace.
	Coverage bool
}

// TestReport is what Test found.
type TestReport struct {
	Passed, Failed int
	// Coverage is OPA's coverage report over the policy files (test files
	// left out); nil unless TestOptions.Coverage.
	Coverage *cover.Report
}

// RunTests is Test without coverage: it returns the counts.
func RunTests(ctx context.Context, dir string, w io.Writer, verbose bool) (passed, failed int, err error) {
	rep, err := Test(ctx, dir, w, TestOptions{Verbose: verbose})
	if rep != nil {
		passed, failed = rep.Passed, rep.Failed
	}
	return passed, failed, err
}

// Test runs the Rego unit tests (the test_* rules, as `opa test dir` would)
// of the policy set in dir with OPA's embedded tester; no opa binary is
// needed. It writes a readable report to w (with print() output as opa test
// shows it) and returns the counts; failing tests are counted, not an error.
//
// It then validates the set exactly as the proxy does when it loads it: the
// set must compile, define data.dbal.decision, and its row rules must be
// turnable into SQL. A set the proxy would refuse is an error (with the
// proxy's message), even when every test passes, so that a policy
// repository's CI cannot go green on a set that will not deploy. The report
// is non-nil whenever the tests ran.
func Test(ctx context.Context, dir string, w io.Writer, opts TestOptions) (*TestReport, error) {
	s, err := readDir(dir)
	if err != nil {
		return nil, fmt.Errorf("policy: read %s: %w", dir, err)
	}
	l, err := s.load()
	if err != nil {
		return nil, fmt.Errorf("policy: load %s: %w", dir, err)
	}
	var cov *cover.Cover
	if opts.Coverage {
		cov = cover.New()
	}
	results, err := runTests(ctx, l, !opts.Coverage, cov)
	if err != nil {
		return nil, fmt.Errorf("policy: test %s: %w", dir, err)
	}
	rep := &TestReport{}
	rep.Passed, rep.Failed = count(results)
	ch := make(chan *tester.Result, len(results))
	for _, r := range results {
		ch <- r
	}
	close(ch)
	pretty := tester.PrettyReporter{Output: w, Verbose: opts.Verbose, FailureLine: !opts.Coverage, LocalVars: !opts.Coverage}
	if err := pretty.Report(ch); err != nil {
		return rep, fmt.Errorf("policy: report: %w", err)
	}
	if cov != nil {
		rep.Coverage = policyCoverage(cov, l)
	}
	// The load-time validation of Engine.load, without the tests just run.
	if _, err := build(ctx, s, false, logPrint{zerolog.Nop()}); err != nil {
		return rep, fmt.Errorf("policy: load %s: %w", dir, err)
	}
	return rep, nil
}

// policyCoverage is cov's report over the policy files of l, test files
// left out, with the totals computed over those files.
func policyCoverage(cov *cover.Cover, l *loaded) *cover.Report {
	modules := map[string]*ast.Module{}
	for name, m := range l.modules {
		if !isTestFile(name) {
			modules[name] = m
		}
	}
	full := cov.Report(modules)
	rep := &cover.Report{Files: map[string]*cover.FileReport{}}
	for name, fr := range full.Files {
		if _, ok := modules[name]; !ok {
			continue
		}
		rep.Files[name] = fr
		rep.CoveredLines += fr.CoveredLines
		rep.NotCoveredLines += fr.NotCoveredLines
	}
	if n := rep.CoveredLines + rep.NotCoveredLines; n > 0 {
		rep.Coverage = 100 * float64(rep.CoveredLines) / float64(n)
	}
	return rep
}

// WriteCoverage prints a coverage report for a reader: one line per file
// with its percentage and the lines no test reached, then the total.
func WriteCoverage(w io.Writer, rep *cover.Report) {
	names := make([]string, 0, len(rep.Files))
	width := 0
	for name := range rep.Files {
		names = append(names, name)
		width = max(width, len(name))
	}
	sort.Strings(names)
	fmt.Fprintln(w, "coverage:")
	for _, name := range names {
		fr := rep.Files[name]
		pct := 100.0
		if n := fr.CoveredLines + fr.NotCoveredLines; n > 0 {
			pct = 100 * float64(fr.CoveredLines) / float64(n)
		}
		fmt.Fprintf(w, "  %-*s %6.2f%%  %d of %d lines", width, name, pct, fr.CoveredLines, fr.CoveredLines+fr.NotCoveredLines)
		if len(fr.NotCovered) > 0 {
			var rs []string
			last := 0 // the last row listed: ranges may share rows
			for _, r := range fr.NotCovered {
				from := max(r.Start.Row, last+1)
				switch {
				case r.End.Row < from:
				case from == r.End.Row:
					rs = append(rs, fmt.Sprint(from))
				default:
					rs = append(rs, fmt.Sprintf("%d-%d", from, r.End.Row))
				}
				last = max(last, r.End.Row)
			}
			fmt.Fprintf(w, "; not covered: %s", strings.Join(rs, ", "))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "  %.2f%% total (%d of %d lines)\n", rep.Coverage, rep.CoveredLines, rep.CoveredLines+rep.NotCoveredLines)
}
