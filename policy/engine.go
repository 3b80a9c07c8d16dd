package policy

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/print"
	"github.com/rs/zerolog"
)

// Options configure an Engine.
type Options struct {
	// Dir is the directory of .rego files (and optional .json/.yaml data
	// files, loaded under `data` as `opa eval -d Dir` would). Required
	// unless Mode is ModeDisabled, which ignores it, or Bundle is set.
	Dir string
	// Bundle, if set, loads the policies from an OPA bundle service instead
	// of Dir (see BundleOptions). New then downloads the first bundle and
	// fails if it cannot; Watch polls for new ones; Reload polls at once.
	Bundle *BundleOptions
	// Mode is how decisions are enforced; "" means ModeStrict.
	Mode decision.Mode
	// Logger receives one line per load, reload and reload failure, and
	// the output of the policies' print() calls (at info level, with the
	// file:line of the call). The zero Logger discards them. The proxy logs
	// no input values (claims, statement text) itself; a print() call
	// logs what its author passes it.
	Logger zerolog.Logger
	// RunTests, if true, runs the set's own *_test.rego tests at every
	// load and refuses a set whose tests fail. The CLI sets it by default.
	RunTests bool
	// OnReload, if set, is called after every reload that changed something
	// or failed (not at the first load, not for unchanged files), with the
	// reload's error. Metrics count reloads with it.
	OnReload func(err error)
}

// Engine decides statements with the policy set in a directory. It is safe
// for concurrent use: Decide reads the current compiled set through an
// atomic pointer and takes no lock; Reload and Watch build a new set aside
// and swap it in only if it is good.
type Engine struct {
	dir      string
	mode     decision.Mode
	runTests bool
	log      zerolog.Logger
	onReload func(error)
	// bundle is the bundle service the policies come from; nil: e.dir.
	bundle *bundleSource

	// set is the current policy set; nil only in ModeDisabled.
	set atomic.Pointer[policySet]
	// reloadMu serializes loads (Reload, Watch). Decide never takes it.
	reloadMu sync.Mutex
	// backends caches the input's backend part (see backendCache).
	backends backendCache
}

// New loads, compiles and (with Options.RunTests) tests the policy set in
// opts.Dir and prepares data.dbal.decision once. It returns an error if the
// directory cannot be read, the set does not compile, defines no decision,
// or fails its tests. In ModeDisabled nothing is loaded.
func New(opts Options) (*Engine, error) {
	mode, err := decision.ParseMode(string(opts.Mode))
	if err != nil {
		return nil, err
	}
	e := &Engine{dir: filepath.Clean(opts.Dir), mode: mode, runTests: opts.RunTests, log: opts.Logger, onReload: opts.OnReload}
	if mode == decision.ModeDisabled {
		e.log.Warn().Str("policy_mode", string(mode)).Msg("policy enforcement is disabled: every statement is allowed")
		return e, nil
	}
	if opts.Bundle != nil {
		if e.bundle, err = newBundleSource(*opts.Bundle); err != nil {
			return nil, err
		}
	} else if opts.Dir == "" {
		return nil, errors.New("policy: Options.Dir is required")
	}
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	if err := e.load(context.Background(), "load"); err != nil {
		return nil, err
	}
	return e, nil
}

// Mode returns the engine's enforcement mode.
func (e *Engine) Mode() decision.Mode { return e.mode }

// Version returns a short hash of the current set's files and data (12 hex
// digits), for a bundle with a revision preceded by the revision and "@"
// ("2024-06-01.3@a5bb44986f1c"). It changes whenever a reload loads
// different content, and only then. It is "disabled" in ModeDisabled.
func (e *Engine) Version() string {
	if s := e.set.Load(); s != nil {
		return s.version
	}
	return "disabled"
}

// Revision returns the .manifest revision of the bundle in force; "" when
// the policies come from a directory or the bundle has none.
func (e *Engine) Revision() string {
	if s := e.set.Load(); s != nil {
		return s.revision
	}
	return ""
}

// Reload re-reads the directory (or polls the bundle service now) and, if its content changed, compiles (and
// with Options.RunTests, tests) it and swaps it in. On any failure (a compile
// error, failing tests, a vanished directory) the running set stays in
// place, one error line is logged, and the error is returned. Reloading
// unchanged content is a no-op. In ModeDisabled it does nothing.
func (e *Engine) Reload() error {
	if e.mode == decision.ModeDisabled {
		return nil
	}
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	old := e.set.Load()
	err := e.load(context.Background(), "reload")
	if e.onReload != nil && (err != nil || e.set.Load() != old) {
		e.onReload(err)
	}
	return err
}

// load builds the set in e.dir (or, with a bundle, downloads it) and swaps
// it in; reloadMu must be held.
func (e *Engine) load(ctx context.Context, what string) error {
	if e.bundle != nil {
		return e.poll(ctx, what)
	}
	snap, err := readDir(e.dir)
	if err != nil {
		return e.failed(what, err)
	}
	return e.install(ctx, snap, what)
}

// failed wraps a load's error and, if a set is running, logs that it stays.
func (e *Engine) failed(what string, err error) error {
	err = fmt.Errorf("policy: %s %s: %w", what, e.source(), err)
	if old := e.set.Load(); old != nil {
		e.log.Error().Err(err).Str(e.sourceKey(), e.source()).Str("policy_version", old.version).
			Msg("policy reload failed; the running policy set stays in force")
	}
	return err
}

// source names where the policies come from: the directory or the bundle's
// URL; sourceKey is its log key.
func (e *Engine) source() string {
	if e.bundle != nil {
		return e.bundle.opts.URL
	}
	return e.dir
}

func (e *Engine) sourceKey() string {
	if e.bundle != nil {
		return "policy_bundle"
	}
	return "policy_dir"
}

// install builds snap and swaps it in, unless it is what runs already;
// reloadMu must be held.
func (e *Engine) install(ctx context.Context, snap *snapshot, what string) error {
	start := time.Now()
	old := e.set.Load()
	if old != nil && snap.version == old.version {
		e.log.Debug().Str(e.sourceKey(), e.source()).Str("policy_version", old.version).Msg("policy files unchanged")
		return nil
	}
	set, err := build(ctx, snap, e.runTests, logPrint{e.log})
	if err != nil {
		return e.failed(what, err)
	}
	e.set.Store(set)
	ev := e.log.Info().Str(e.sourceKey(), e.source()).Str("policy_version", set.version).
		Str("policy_mode", string(e.mode)).Int("files", set.files).
		Dur("took", time.Since(start))
	if set.revision != "" {
		ev = ev.Str("policy_revision", set.revision)
	}
	if old != nil {
		ev = ev.Str("previous_version", old.version)
	}
	if e.runTests {
		ev = ev.Int("tests_passed", set.tests)
	}
	ev.Msg("policy set " + what + "ed")
	return nil
}

// Decide evaluates data.dbal.decision for in.
//
// It fails closed: if the decision is undefined, is not an object of the
// documented shape, or evaluation fails (a built-in error, conflicting rule
// values, a cancelled ctx), it returns a Decision with Allow false and a
// Reason for the client, and a non-nil error with the details for the log.
//
// In ModePermissive a statement the policy denies (or fails to decide) is
// allowed: the Decision has Allow and WouldDeny set, the Reason of the
// denial, and a nil error. In ModeDisabled every statement is allowed
// without evaluation.
func (e *Engine) Decide(ctx context.Context, in *decision.Input) (decision.Decision, error) {
	set := e.set.Load()
	if set == nil {
		return decision.Decision{Allow: true, Rule: "disabled", Reason: "allowed: policy enforcement is disabled"}, nil
	}
	d, err := set.decide(ctx, in, &e.backends)
	if e.mode == decision.ModePermissive && (err != nil || !d.Allow) {
		if err != nil {
			e.log.Warn().Err(err).Str("policy_version", set.version).
				Msg("policy evaluation failed; permissive mode allows the statement")
		}
		return decision.Decision{Allow: true, WouldDeny: true, Reason: d.Reason, Rule: d.Rule, Version: set.version}, nil
	}
	return d, err
}

// evalOptions that never change: no metrics, and result terms kept as AST
// values (decodeDecision reads them without a conversion to Go).
var (
	noMetrics  = rego.EvalMetrics(metrics.NoOp())
	keepASTOpt = rego.EvalGenerateJSON(keepAST)
	// neverCancel serves contexts that cannot be cancelled; nobody calls
	// its Cancel.
	neverCancel = topdown.NewCancel()
)

func keepAST(t *ast.Term, _ *rego.EvalContext) (any, error) { return t.Value, nil }

func (s *policySet) decide(ctx context.Context, in *decision.Input, bc *backendCache) (decision.Decision, error) {
	deny := func(reason string, err error) (decision.Decision, error) {
		return decision.Decision{Reason: reason, Rule: "error", Version: s.version},
			fmt.Errorf("policy %s: %w", s.version, err)
	}
	if in == nil {
		return deny("denied: the proxy gave the policy no input", errors.New("nil input"))
	}
	if err := ctx.Err(); err != nil {
		return deny("denied: the policy decision was cancelled", err)
	}
	v, err := inputValue(in, bc)
	if err != nil {
		return deny("denied: the statement could not be described to the policy", fmt.Errorf("input: %w", err))
	}

	// Cancel evaluation when ctx is done, without the goroutine per call
	// that rego starts when it is not given a Cancel.
	cancel := neverCancel
	if ctx.Done() != nil {
		cancel = topdown.NewCancel()
		defer context.AfterFunc(ctx, cancel.Cancel)()
	}
	rs, err := s.query.Eval(ctx, rego.EvalParsedInput(v), rego.EvalExternalCancel(cancel), noMetrics, keepASTOpt)
	if err != nil {
		if ctx.Err() != nil {
			return deny("denied: the policy decision was cancelled", fmt.Errorf("eval: %w (%w)", err, ctx.Err()))
		}
		return deny("denied: the policy failed while deciding", fmt.Errorf("eval: %w", err))
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return deny("denied: the policy defines no decision for this statement", errors.New(decisionQuery+" is undefined"))
	}
	val, ok := rs[0].Expressions[0].Value.(ast.Value)
	if !ok {
		return deny("denied: the policy failed while deciding", fmt.Errorf("unexpected result %T", rs[0].Expressions[0].Value))
	}
	d, err := decodeDecision(val)
	if err != nil {
		return deny("denied: the policy's decision is malformed: "+err.Error(), err)
	}
	d.Version = s.version
	if d.Allow && s.rows != nil {
		if deny, err := s.rows.apply(ctx, in, v.(ast.Object).Get(kSession).Value, &d); deny != "" {
			d := decision.Decision{Reason: deny, Rule: "row_rules", Version: s.version}
			if err != nil {
				return d, fmt.Errorf("policy %s: row rules: %w", s.version, err)
			}
			return d, nil
		}
	}
	if d.Reason == "" {
		if d.Allow {
			d.Reason = "allowed by policy"
		} else {
			d.Reason = "denied by policy"
		}
	}
	return d, nil
}

// logPrint sends the policies' print() output to the engine's log.
type logPrint struct{ log zerolog.Logger }

// Print implements print.Hook.
func (h logPrint) Print(ctx print.Context, msg string) error {
	ev := h.log.Info().Str("print", msg)
	if l := ctx.Location; l != nil {
		ev = ev.Str("at", fmt.Sprintf("%s:%d", l.File, l.Row))
	}
	ev.Msg("policy print()")
	return nil
}
