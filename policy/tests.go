package policy

import (
	"context"
	"fmt"
	"io"

	"github.com/open-policy-agent/opa/v1/tester"
)

// RunTests runs the Rego unit tests (the test_* rules, as `opa test dir`
// would) of the policy set in dir with OPA's embedded tester; no opa binary
// is needed. It writes a readable report to w (with verbose, every test and
// its print output; otherwise the failures) and returns the counts. err is
// set when the set cannot be loaded or compiled; failing tests are counted,
// not an error.
func RunTests(ctx context.Context, dir string, w io.Writer, verbose bool) (passed, failed int, err error) {
	s, err := readDir(dir)
	if err != nil {
		return 0, 0, fmt.Errorf("policy: read %s: %w", dir, err)
	}
	l, err := s.load()
	if err != nil {
		return 0, 0, fmt.Errorf("policy: load %s: %w", dir, err)
	}
	results, err := runTests(ctx, l, true)
	if err != nil {
		return 0, 0, fmt.Errorf("policy: test %s: %w", dir, err)
	}
	passed, failed = count(results)
	ch := make(chan *tester.Result, len(results))
	for _, r := range results {
		ch <- r
	}
	close(ch)
	rep := tester.PrettyReporter{Output: w, Verbose: verbose, FailureLine: true, LocalVars: true}
	if err := rep.Report(ch); err != nil {
		return passed, failed, fmt.Errorf("policy: report: %w", err)
	}
	return passed, failed, nil
}
