package main

import (
	"bufio"
	"bytes"
	"context"
	"debug/buildinfo"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// key names one cell: a protocol mode, a client count and a target.
type key struct {
	mode    string
	clients int
	target  string
}

// results collects the measurements of every run.
type results struct {
	runs     map[key][]*measurement
	errs     map[key][]error
	failures int
}

func newResults() *results {
	return &results{runs: map[key][]*measurement{}, errs: map[key][]error{}}
}

func (r *results) add(mode string, clients int, target string, m *measurement) {
	k := key{mode, clients, target}
	r.runs[k] = append(r.runs[k], m)
}

func (r *results) fail(mode string, clients int, target string, err error) {
	k := key{mode, clients, target}
	r.errs[k] = append(r.errs[k], err)
	r.failures++
}

// median returns the per-metric medians of a cell, or nil if it has no
// successful run.
func (r *results) median(k key) *measurement {
	ms := r.runs[k]
	if len(ms) == 0 {
		return nil
	}
	pick := func(f func(*measurement) float64) float64 {
		v := make([]float64, len(ms))
		for i, m := range ms {
			v[i] = f(m)
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return &measurement{
		tps:            pick(func(m *measurement) float64 { return m.tps }),
		meanMS:         pick(func(m *measurement) float64 { return m.meanMS }),
		p99MS:          pick(func(m *measurement) float64 { return m.p99MS }),
		auditPerTx:     pick(func(m *measurement) float64 { return m.auditPerTx }),
		cpuPerTx:       pick(func(m *measurement) float64 { return m.cpuPerTx }),
		clientCPUPerTx: pick(func(m *measurement) float64 { return m.clientCPUPerTx }),
	}
}

// report prints the header and one table per protocol mode, as aligned text
// or as markdown.
func report(w io.Writer, o *options, e *env, targets []string, r *results, markdown bool) {
	secs := int(o.duration.Round(time.Second) / time.Second)
	header := [][2]string{
		{"date", e.started.UTC().Format("2006-01-02 15:04 UTC") + " (start)"},
		{"machine", e.machine},
		{"software", e.software()},
		{"workload", fmt.Sprintf("pgbench -n -S -M <mode> -c <clients> -j min(clients,2) -T %d, scale %d; median of %d run(s); targets interleaved per mode and client count", secs, o.scale, o.runs)},
		{"p99", "99th percentile (nearest rank) of the per-transaction latencies pgbench --log writes"},
		{"pools", fmt.Sprintf("dbalproxy pool.max_conns %d (%s), PgBouncer default_pool_size %d (transaction)", poolSize, o.poolMode, poolSize)},
	}
	for _, n := range e.notes {
		header = append(header, [2]string{"note", n})
	}
	if markdown {
		for _, h := range header {
			fmt.Fprintf(w, "- **%s**: %s\n", h[0], mdEscape(h[1]))
		}
	} else {
		fmt.Fprintln(w, "dbalbench results")
		for _, h := range header {
			fmt.Fprintf(w, "  %-9s %s\n", h[0]+":", h[1])
		}
	}
	hasRelay := slices.Contains(targets, tRelay)
	hasBouncer := slices.Contains(targets, tPgBouncer)
	hasDirect := slices.Contains(targets, tDirect)
	cols := []string{"target", "clients", "TPS", "mean ms", "p99 ms"}
	if hasDirect {
		cols = append(cols, "/direct")
	}
	if hasRelay {
		cols = append(cols, "/relay")
	}
	if hasBouncer {
		cols = append(cols, "/pgbouncer")
	}
	cols = append(cols, "CPU µs/tx", "pgbench µs/tx")
	hasProxy := hasProxyTarget(targets)
	if hasProxy {
		cols = append(cols, "audit rec/tx")
	}
	var auditNote bool
	for _, mode := range o.modes {
		var rows [][]string
		for _, c := range o.clients {
			base := func(t string) float64 {
				if m := r.median(key{mode, c, t}); m != nil {
					return m.tps
				}
				return 0
			}
			direct, rel, bouncer := base(tDirect), base(tRelay), base(tPgBouncer)
			for _, t := range targets {
				k := key{mode, c, t}
				m := r.median(k)
				row := []string{t, strconv.Itoa(c)}
				if m == nil {
					row = append(row, "failed")
					for len(row) < len(cols) {
						row = append(row, "")
					}
					rows = append(rows, row)
					continue
				}
				row = append(row, fmt.Sprintf("%.0f", m.tps), fmt.Sprintf("%.3f", m.meanMS), fmt.Sprintf("%.3f", m.p99MS))
				ratio := func(b float64, show bool) string {
					if !show || b == 0 {
						return ""
					}
					return fmt.Sprintf("%.2f", m.tps/b)
				}
				isProxy := strings.HasPrefix(t, tProxy)
				if hasDirect {
					row = append(row, ratio(direct, t != tDirect))
				}
				if hasRelay {
					row = append(row, ratio(rel, isProxy))
				}
				if hasBouncer {
					row = append(row, ratio(bouncer, isProxy))
				}
				cpu := ""
				if m.cpuPerTx > 0 {
					cpu = fmt.Sprintf("%.1f", m.cpuPerTx)
				}
				row = append(row, cpu, fmt.Sprintf("%.1f", m.clientCPUPerTx))
				audit := ""
				if m.auditPerTx > 0 {
					audit = fmt.Sprintf("%.2f", m.auditPerTx)
					auditNote = true
				}
				if hasProxy {
					row = append(row, audit)
				}
				rows = append(rows, row)
			}
		}
		printTable(w, fmt.Sprintf("-M %s", mode), "", cols, rows, markdown)
		for _, c := range o.clients {
			if line := layerCosts(r, mode, c); line != "" {
				if markdown {
					fmt.Fprintf(w, "\n%s\n", line)
				} else {
					fmt.Fprintf(w, "  %s\n", line)
				}
			}
		}
	}
	fmt.Fprintln(w)
	legend := "/direct, /relay, /pgbouncer: TPS divided by that target's TPS at the same client count in the same run. CPU µs/tx: CPU time (user + system) of the target's own process per transaction (the relay's is dbalbench's; none for direct); pgbench µs/tx: pgbench's own."
	if auditNote {
		legend += " audit rec/tx: lines in the audit file per pgbench transaction (approximate: the audit queue drains asynchronously)."
	}
	fmt.Fprintln(w, legend)
	var errKeys []key
	for k := range r.errs {
		errKeys = append(errKeys, k)
	}
	slices.SortFunc(errKeys, func(a, b key) int {
		return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
	})
	for _, k := range errKeys {
		fmt.Fprintf(w, "\nFAILED %s -M %s -c %d: %v\n", k.target, k.mode, k.clients, r.errs[k][0])
	}
}

// layerCosts describes what each layer of dbalproxy costs at one mode and
// client count, from the variants measured in the same run: TLS against
// plaintext, the audit log, the policy layer.
func layerCosts(r *results, mode string, c int) string {
	tps := func(t string) float64 {
		if m := r.median(key{mode, c, t}); m != nil {
			return m.tps
		}
		return 0
	}
	full := tps(tProxy)
	if full == 0 {
		return ""
	}
	var parts []string
	if v := tps(tProxyTLS); v > 0 {
		parts = append(parts, fmt.Sprintf("TLS/plaintext %.2f (%s / %s)", v/full, tProxyTLS, tProxy))
	}
	if ws, tcp := r.median(key{mode, c, tProxyWS}), r.median(key{mode, c, tProxy}); ws != nil && tcp != nil && ws.tps > 0 {
		p := fmt.Sprintf("WebSocket/TCP %.2f (%s / %s; mean latency %+.3f ms", ws.tps/full, tProxyWS, tProxy, ws.meanMS-tcp.meanMS)
		if ws.cpuPerTx > 0 && tcp.cpuPerTx > 0 {
			p += fmt.Sprintf(", proxy CPU %.0f vs %.0f µs/tx", ws.cpuPerTx, tcp.cpuPerTx)
		}
		parts = append(parts, p+")")
	}
	if v := tps(tProxyNoAud); v > 0 {
		parts = append(parts, fmt.Sprintf("audit costs %.0f%% (%s / %s = %.2f)", 100*(1-full/v), tProxy, tProxyNoAud, full/v))
	}
	if v := tps(tProxyNoPol); v > 0 {
		parts = append(parts, fmt.Sprintf("policy layer costs %.0f%% (%s / %s = %.2f)", 100*(1-full/v), tProxy, tProxyNoPol, full/v))
	}
	if len(parts) == 0 {
		return ""
	}
	return fmt.Sprintf("c=%d: %s", c, strings.Join(parts, "; "))
}

// printTable prints a table with its heading (and an introduction, if
// any), as aligned text or as markdown.
func printTable(w io.Writer, heading, intro string, cols []string, rows [][]string, markdown bool) {
	if markdown {
		fmt.Fprintf(w, "\n#### %s\n\n", heading)
		if intro != "" {
			fmt.Fprintf(w, "%s\n\n", intro)
		}
		printMarkdown(w, cols, rows)
		return
	}
	fmt.Fprintf(w, "\n%s\n", heading)
	if intro != "" {
		fmt.Fprintf(w, "%s\n", intro)
	}
	printText(w, cols, rows)
}

func printText(w io.Writer, cols []string, rows [][]string) {
	// Numbers align right; the target names are padded to align left.
	width := len(cols[0])
	for _, r := range rows {
		width = max(width, len(r[0]))
	}
	pad := func(r []string) string {
		return fmt.Sprintf("%-*s\t%s\t", width, r[0], strings.Join(r[1:], "\t"))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, pad(cols))
	for _, r := range rows {
		fmt.Fprintln(tw, pad(r))
	}
	tw.Flush()
}

func printMarkdown(w io.Writer, cols []string, rows [][]string) {
	fmt.Fprintf(w, "| %s |\n", strings.Join(cols, " | "))
	seps := make([]string, len(cols))
	for i := range cols {
		seps[i] = "---:"
	}
	seps[0] = "---"
	fmt.Fprintf(w, "| %s |\n", strings.Join(seps, " | "))
	for _, r := range rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
	}
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func (e *env) software() string {
	parts := []string{"Go " + e.goVersion, "PostgreSQL " + e.pgVersion}
	if e.pgbench != "" {
		parts = append(parts, firstLine(e.pgbench))
	}
	if e.pgbouncer != "" {
		parts = append(parts, e.pgbouncer)
	} else {
		parts = append(parts, "PgBouncer not measured")
	}
	if e.proxy != "" {
		parts = append(parts, e.proxy)
	}
	return strings.Join(parts, "; ")
}

// machineLine describes the machine: CPUs, CPU model, memory, kernel and
// the load average when the benchmark started.
func machineLine() string {
	model := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	mem := "unknown memory"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64); err == nil {
					mem = fmt.Sprintf("%.1f GiB RAM", kb/(1<<20))
				}
			}
		}
	}
	s := fmt.Sprintf("%d CPUs (nproc), %s, %s, %s/%s", runtime.NumCPU(), model, mem, runtime.GOOS, runtime.GOARCH)
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		s += " " + strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			s += ", load " + f[0] + " at start"
		}
	}
	return s
}

// goVersion is the version of the go command that builds the proxy.
func goVersion(ctx context.Context) string {
	if out, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output(); err == nil {
		if v := strings.TrimSpace(string(out)); v != "" {
			return v
		}
	}
	return runtime.Version()
}

// commandVersion runs bin with arg and returns its trimmed output ("" on
// failure).
func commandVersion(ctx context.Context, bin, arg string) string {
	out, err := exec.CommandContext(ctx, bin, arg).CombinedOutput()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// proxyVersion describes the built proxy: its embedded VCS stamp, or, when
// it was built without one (GOFLAGS=-buildvcs=false), what git says about
// the module at root.
func proxyVersion(ctx context.Context, bin, root string) string {
	rev, modified := "", false
	if bi, err := buildinfo.ReadFile(bin); err == nil {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if rev == "" {
		out, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "HEAD").Output()
		if err != nil {
			return "dbalproxy (revision unknown)"
		}
		rev = strings.TrimSpace(string(out))
		if st, err := exec.CommandContext(ctx, "git", "-C", root, "status", "--porcelain", "--untracked-files=normal").Output(); err == nil {
			modified = len(bytes.TrimSpace(st)) > 0
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified {
		rev += " + uncommitted changes"
	}
	return "dbalproxy at " + rev
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

// loadAverage is the 1-minute load average (0 if unknown).
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
