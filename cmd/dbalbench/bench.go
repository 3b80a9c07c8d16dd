package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/dbalproxy/dbalproxy/testenv"
)

const (
	benchDB       = "bench"
	benchLogin    = "bench" // the proxy's and PgBouncer's client login
	benchPassword = "bench" // a throwaway credential for loopback-only processes
	poolSize      = 40      // dbalproxy pool.max_conns and PgBouncer pool_size
)

// target is one endpoint pgbench can connect to.
type target struct {
	name     string
	port     int
	user     string
	password string
	db       string
	// preparedDB, if set, is the database name for -M prepared (PgBouncer
	// before 1.21 cannot keep prepared statements in transaction pooling).
	preparedDB string
	// auditPath, if set, is the audit file that is counted and truncated
	// after each run.
	auditPath string
	// sslmode is what pgbench and the readiness check connect with
	// ("disable" when empty).
	sslmode string
	// proc is the subprocess behind the target, if any.
	proc *proc
	// wsAddr is the dbalproxy-ws target's WebSocket listener.
	wsAddr string
}

func (t *target) dbFor(mode string) string {
	if mode == "prepared" && t.preparedDB != "" {
		return t.preparedDB
	}
	return t.db
}

// env is what the benchmark learned about the machine and the software.
type env struct {
	started   time.Time
	machine   string
	goVersion string
	pgVersion string
	pgbench   string
	pgbouncer string // "" when not installed
	proxy     string
	notes     []string
}

// bench runs the whole benchmark. Every process and directory it creates is
// gone when it returns, unless -keep.
func bench(ctx context.Context, o *options, stdout, stderr io.Writer) (err error) {
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	begin := time.Now()

	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	shipped := filepath.Join(root, "policies")
	if st, err := os.Stat(shipped); err != nil || !st.IsDir() {
		return fmt.Errorf("no policy directory %s: the dbalproxy targets run with the shipped policies", shipped)
	}
	tmp, err := os.MkdirTemp("", "dbalbench-")
	if err != nil {
		return fmt.Errorf("creating a temporary directory: %w", err)
	}
	defer func() {
		if o.keep {
			logf("kept %s (it holds throwaway credentials)", tmp)
			return
		}
		if rerr := os.RemoveAll(tmp); rerr != nil && err == nil {
			err = fmt.Errorf("removing %s: %w", tmp, rerr)
		}
	}()
	// PgBouncer runs as the postgres OS user when we are root: it must be
	// able to traverse tmp (its own files live in a subdirectory).
	if err := os.Chmod(tmp, 0o711); err != nil {
		return fmt.Errorf("making %s traversable: %w", tmp, err)
	}

	e := &env{started: begin, machine: machineLine(), goVersion: goVersion(ctx)}
	if load := loadAverage(); load > 0.5*float64(runtime.NumCPU()) {
		msg := fmt.Sprintf("the machine was busy when the benchmark started (1-minute load %.2f on %d CPUs): expect noisy figures, and prefer -runs 3", load, runtime.NumCPU())
		logf("warning: %s", msg)
		e.notes = append(e.notes, msg)
	}

	// Every process started below inherits the raised open-file limit (for
	// -idle).
	fileLimit := raiseFileLimit()

	// The proxy is built first: a compile error should not wait for initdb.
	var proxyBin, policyDir string
	if hasProxyTarget(o.targets) {
		proxyBin = filepath.Join(tmp, "dbalproxy")
		logf("building dbalproxy (go build ./cmd/dbalproxy in %s)...", root)
		if err := buildProxy(ctx, root, proxyBin); err != nil {
			return err
		}
		e.proxy = proxyVersion(ctx, proxyBin, root)
		if policyDir, err = benchPolicies(shipped, tmp); err != nil {
			return err
		}
		plan, err := explainBench(ctx, proxyBin, policyDir)
		if err != nil {
			return err
		}
		e.notes = append(e.notes, fmt.Sprintf("dbalproxy targets: pool.mode %s; the shipped policies plus a row filter on pgbench_accounts for the bench login, so every pgbench statement is rewritten: %s", o.poolMode, plan))
		logf("the bench login's pgbench SELECT is sent as: %s", plan)
	}

	logf("starting a throwaway PostgreSQL...")
	cluster, err := testenv.Start(ctx, testenv.Options{MaxConnections: 400})
	if err != nil {
		return err
	}
	defer func() {
		if serr := cluster.Stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	e.pgVersion = cluster.Version()
	pgbench := filepath.Join(cluster.BinDir(), "pgbench")
	if _, err := os.Stat(pgbench); err != nil {
		return fmt.Errorf("no pgbench beside the server binaries in %s: on Debian it ships with the server package (apt-get install -y postgresql); elsewhere install your distribution's postgresql contrib/client package", cluster.BinDir())
	}
	e.pgbench = commandVersion(ctx, pgbench, "--version")
	if err := cluster.CreateDatabase(ctx, benchDB); err != nil {
		return err
	}
	direct := &target{name: tDirect, port: cluster.Port(), user: cluster.AppUser(), password: cluster.AppPassword(), db: benchDB}
	logf("loading pgbench data (pgbench -i -s %d)...", o.scale)
	t0 := time.Now()
	if out, err := runPgbench(ctx, pgbench, direct, []string{"-i", "-q", "-s", fmt.Sprint(o.scale)}, benchDB); err != nil {
		return fmt.Errorf("pgbench -i: %w\n%s", err, lastLines(out, 20))
	}
	logf("pgbench -i took %s", time.Since(t0).Round(100*time.Millisecond))

	// Start every target that was asked for.
	var targets []*target
	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	for _, name := range o.targets {
		var t *target
		switch name {
		case tDirect:
			t = direct
		case tRelay:
			r, err := startRelay(cluster.Port())
			if err != nil {
				return err
			}
			defer r.Close()
			t = &target{name: tRelay, port: r.Port(), user: cluster.AppUser(), password: cluster.AppPassword(), db: benchDB}
		case tPgBouncer:
			bin := findPgBouncer()
			if bin == "" {
				msg := "pgbouncer is not installed, so its column is skipped; on Debian/Ubuntu: apt-get update && apt-get install -y pgbouncer"
				logf("note: %s", msg)
				e.notes = append(e.notes, msg)
				continue
			}
			b, bt, ver, note, err := startPgBouncer(ctx, bin, tmp, cluster)
			if b != nil {
				procs = append(procs, b)
			}
			if err != nil {
				return err
			}
			e.pgbouncer = ver
			if note != "" {
				logf("note: %s", note)
				e.notes = append(e.notes, note)
			}
			t = bt
		case tProxy, tProxyNoAud, tProxyNoPol, tProxyTLS, tProxyWS:
			p, pt, err := startProxy(ctx, proxyBin, tmp, name, policyDir, cluster.AppURL(benchDB), o.poolMode, o.cpuprofile)
			if p != nil {
				procs = append(procs, p)
			}
			if err != nil {
				return err
			}
			t = pt
			if name == tProxyWS {
				a, err := startWSAdapter(pt.wsAddr)
				if err != nil {
					return err
				}
				defer a.Close()
				t.port = a.Port()
			}
		}
		if err := checkTarget(ctx, t, o.scale); err != nil {
			return err
		}
		targets = append(targets, t)
	}
	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = t.name
	}
	logf("targets ready: %s", strings.Join(names, ", "))

	// Measure: for each mode and client count, every target back to back,
	// repeated -runs times.
	res := newResults()
	total := len(o.modes) * len(o.clients) * o.runs * len(targets)
	step := 0
	estimate := time.Duration(total) * (o.duration + 700*time.Millisecond)
	logf("%d pgbench runs of %s each; about %s to go", total, o.duration, estimate.Round(time.Second))
	for _, mode := range o.modes {
		for _, c := range o.clients {
			for r := 0; r < o.runs; r++ {
				for _, t := range targets {
					step++
					m, err := measure(ctx, pgbench, tmp, t, mode, c, o.duration, step, o.verbose, stderr)
					if ctx.Err() != nil {
						return ctx.Err()
					}
					if err != nil {
						logf("[%d/%d] %-8s c=%-2d %-20s FAILED: %v", step, total, mode, c, t.name, err)
						res.fail(mode, c, t.name, err)
						continue
					}
					logf("[%d/%d] %-8s c=%-2d %-20s %9.0f tps  mean %6.3f ms  p99 %6.3f ms", step, total, mode, c, t.name, m.tps, m.meanMS, m.p99MS)
					if t.auditPath != "" {
						if n, err := countAndTruncate(t.auditPath); err == nil && m.txns > 0 {
							m.auditPerTx = float64(n) / float64(m.txns)
						}
					}
					res.add(mode, c, t.name, m)
				}
			}
		}
	}
	for _, t := range targets {
		if t.name != tProxy || o.idle <= 0 {
			continue
		}
		logf("opening %d idle connections to %s (open-file limit %d)...", o.idle, t.name, fileLimit)
		ir := measureIdle(ctx, t, o.idle)
		line := fmt.Sprintf("%s idle connections: %d opened in %s; proxy RSS %.1f MiB before, %.1f MiB after: %.1f KiB per idle connection (transaction pooling: no backend held)",
			t.name, ir.conns, ir.took.Round(time.Millisecond), float64(ir.rssBefore)/1024, float64(ir.rssAfter)/1024,
			float64(ir.rssAfter-ir.rssBefore)/float64(max(ir.conns, 1)))
		if ir.err != nil {
			line += "; stopped at " + ir.err.Error()
		}
		logf("%s", line)
		e.notes = append(e.notes, line)
	}
	var lateness []timeoutResult
	if o.timeouts > 0 {
		for _, t := range targets {
			if t.name != tProxy && t.name != tDirect {
				continue
			}
			for _, mode := range []string{"simple", "extended"} {
				logf("timeout precision: %d statements cancelled at %s through %s (-M %s)...", o.timeouts, benchTimeout, t.name, mode)
				tr := measureTimeouts(ctx, t, mode, o.timeouts)
				if tr.err != nil {
					logf("timeout precision through %s: %v", t.name, tr.err)
				}
				lateness = append(lateness, tr)
			}
		}
	}
	logf("measured in %s", time.Since(begin).Round(time.Second))
	report(stdout, o, e, names, res, false)
	reportTimeouts(stdout, lateness, false)
	if o.markdown {
		fmt.Fprintln(stdout)
		report(stdout, o, e, names, res, true)
		reportTimeouts(stdout, lateness, true)
	}
	if res.failures > 0 {
		return fmt.Errorf("%d pgbench run(s) failed; see the errors above", res.failures)
	}
	return nil
}

// hasProxyTarget reports whether any dbalproxy variant is among names.
func hasProxyTarget(names []string) bool {
	for _, n := range names {
		if strings.HasPrefix(n, tProxy) {
			return true
		}
	}
	return false
}

// benchRego adds a row filter on pgbench_accounts for the bench login to
// the shipped policies: the figures are those of a statement that is
// decided, rewritten (fenced with its filter) and audited. The filter lets
// every row through, so the work pgbench measures is the same.
const benchRego = `package dbal

# Added by dbalbench: a row filter on pgbench_accounts for the bench login (role supergod).
row_columns["public.pgbench_accounts"] := {"bid"}

rows["public.pgbench_accounts"].select if {
	input.session.role == "supergod"
	input.row.bid >= 1
}
`

// benchPolicies copies the shipped policy files (not their tests) into
// tmp/policies and adds benchRego.
func benchPolicies(shipped, tmp string) (string, error) {
	dir := filepath.Join(tmp, "policies")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	ents, err := os.ReadDir(shipped)
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || strings.HasSuffix(name, "_test.rego") || !(strings.HasSuffix(name, ".rego") || strings.HasSuffix(name, ".json") || strings.HasSuffix(name, ".yaml")) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(shipped, name))
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return "", err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "bench.rego"), []byte(benchRego), 0o644); err != nil {
		return "", err
	}
	// The timeout login (role user) gets a 100 ms policy timeout instead
	// of the shipped 5 s, for -timeouts.
	mp := filepath.Join(dir, "matrix.rego")
	b, err := os.ReadFile(mp)
	if err != nil {
		return "", err
	}
	const from = `"user": {"timeout_ms": 5000,`
	if !bytes.Contains(b, []byte(from)) {
		return "", fmt.Errorf("policies/matrix.rego no longer has %s; update dbalbench's benchPolicies", from)
	}
	b = bytes.Replace(b, []byte(from), []byte(fmt.Sprintf(`"user": {"timeout_ms": %d,`, benchTimeout.Milliseconds())), 1)
	if err := os.WriteFile(mp, b, 0o644); err != nil {
		return "", err
	}
	return dir, nil
}

// explainBench asks the proxy what it sends for pgbench -S's SELECT as the
// bench login, and fails unless the row filter is in it.
func explainBench(ctx context.Context, bin, policyDir string) (string, error) {
	out, err := exec.CommandContext(ctx, bin, "explain", "--role", "supergod", "--claims", "{}", "--policies", policyDir,
		"SELECT abalance FROM pgbench_accounts WHERE aid = 1").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("dbalproxy explain: %w\n%s", err, out)
	}
	text := string(out)
	i := strings.Index(text, "the backend receives:")
	if i < 0 || !strings.Contains(text[i:], "bid") {
		return "", fmt.Errorf("the bench policies do not filter pgbench_accounts:\n%s", out)
	}
	return strings.Join(strings.Fields(text[i+len("the backend receives:"):]), " "), nil
}

// moduleRoot is the directory of the main module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w (dbalbench needs the go command to build dbalproxy)", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the dbalproxy module: run dbalbench from the repository (go run ./cmd/dbalbench)")
	}
	return filepath.Dir(gomod), nil
}

// buildProxy builds ./cmd/dbalproxy of the module at root into bin.
func buildProxy(ctx context.Context, root, bin string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/dbalproxy")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building dbalproxy: %w\n%s", err, out)
	}
	return nil
}
