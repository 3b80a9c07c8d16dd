package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// measurement is what one pgbench run reports.
type measurement struct {
	tps        float64 // without initial connection time
	meanMS     float64 // pgbench's "latency average"
	p99MS      float64 // 99th percentile of the per-transaction log
	txns       int64   // transactions processed
	auditPerTx float64 // audit records per transaction; 0 if not audited
	// cpuPerTx is the CPU time (user + system) the target's own process
	// spent per transaction during the run, in µs; 0 when not known (direct:
	// PostgreSQL's processes come and go).
	cpuPerTx float64
	// clientCPUPerTx is pgbench's own CPU time per transaction, in µs.
	clientCPUPerTx float64
}

// runPgbench runs pgbench against t's database db with the given leading
// arguments and returns its combined output. The password goes through
// PGPASSWORD, never the command line.
func runPgbench(ctx context.Context, bin string, t *target, args []string, db string) (string, error) {
	out, _, err := runPgbenchCPU(ctx, bin, t, args, db)
	return out, err
}

// runPgbenchCPU is runPgbench, also returning the CPU time (user + system)
// pgbench itself used.
func runPgbenchCPU(ctx context.Context, bin string, t *target, args []string, db string) (string, time.Duration, error) {
	full := append(slices.Clone(args), "-h", "127.0.0.1", "-p", strconv.Itoa(t.port), "-U", t.user, db)
	cmd := exec.CommandContext(ctx, bin, full...)
	cmd.Env = childEnv("PGPASSWORD="+t.password, "PGSSLMODE="+t.sslMode(), "PGAPPNAME=dbalbench")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	var cpu time.Duration
	if ps := cmd.ProcessState; ps != nil {
		cpu = ps.UserTime() + ps.SystemTime()
	}
	return string(out), cpu, err
}

var (
	tpsRE     = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
	tpsAnyRE  = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)
	latAvgRE  = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
	txnsRE    = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
	failedRE  = regexp.MustCompile(`(?m)^number of failed transactions: ([0-9]+)`)
	pgbenchIn = regexp.MustCompile(`(?m)^pgbench: (error|fatal): .*$`)
)

// measure runs one pgbench -S run against t and parses its results; p99 comes
// from the per-transaction log (--log), which is removed afterwards.
func measure(ctx context.Context, bin, tmp string, t *target, mode string, clients int, dur time.Duration, step int, verbose bool, stderr io.Writer) (*measurement, error) {
	prefix := filepath.Join(tmp, fmt.Sprintf("txlog-%d", step))
	defer func() {
		files, _ := filepath.Glob(prefix + ".*")
		for _, f := range files {
			os.Remove(f)
		}
	}()
	secs := int(dur.Round(time.Second) / time.Second)
	pgMode := mode
	var extra []string
	if mode == "connect" {
		// Connection setup: a new connection (SCRAM login) per transaction.
		pgMode, extra = "simple", []string{"-C"}
	}
	args := append([]string{"-n", "-S", "-M", pgMode, "-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(clients, 2)),
		"-T", strconv.Itoa(secs), "--log", "--log-prefix=" + prefix}, extra...)
	if verbose {
		fmt.Fprintf(stderr, "$ pgbench %s -h 127.0.0.1 -p %d -U %s %s\n", strings.Join(args, " "), t.port, t.user, t.dbFor(mode))
	}
	// -T bounds a healthy run; the timeout bounds a target that hangs.
	rctx, cancel := context.WithTimeout(ctx, dur+60*time.Second)
	defer cancel()
	cpu0, cpuKnown := t.cpuTime()
	out, clientCPU, err := runPgbenchCPU(rctx, bin, t, args, t.dbFor(mode))
	cpu1, _ := t.cpuTime()
	if verbose {
		fmt.Fprintln(stderr, strings.TrimRight(out, "\n"))
	}
	if err != nil {
		if errors.Is(rctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, fmt.Errorf("pgbench did not finish within -T + 60s (the target hangs?)\n%s", lastLines(out, 10))
		}
		return nil, fmt.Errorf("pgbench: %w\n%s", err, lastLines(out, 10))
	}
	m := &measurement{}
	sm := tpsRE.FindStringSubmatch(out)
	if sm == nil {
		sm = tpsAnyRE.FindStringSubmatch(out)
	}
	lm := latAvgRE.FindStringSubmatch(out)
	if sm == nil || lm == nil {
		return nil, fmt.Errorf("no tps or latency average in pgbench's output:\n%s", lastLines(out, 10))
	}
	m.tps, _ = strconv.ParseFloat(sm[1], 64)
	m.meanMS, _ = strconv.ParseFloat(lm[1], 64)
	if x := txnsRE.FindStringSubmatch(out); x != nil {
		m.txns, _ = strconv.ParseInt(x[1], 10, 64)
	}
	if x := failedRE.FindStringSubmatch(out); x != nil && x[1] != "0" {
		return nil, fmt.Errorf("%s failed transactions\n%s", x[1], lastLines(out, 10))
	}
	if x := pgbenchIn.FindString(out); x != "" {
		return nil, fmt.Errorf("%s", x)
	}
	p99, n, err := logPercentile(prefix, 0.99)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, errors.New("pgbench wrote no per-transaction log")
	}
	m.p99MS = p99
	if cpuKnown && m.txns > 0 {
		m.cpuPerTx = float64((cpu1 - cpu0).Microseconds()) / float64(m.txns)
	}
	if m.txns > 0 {
		m.clientCPUPerTx = float64(clientCPU.Microseconds()) / float64(m.txns)
	}
	return m, nil
}

// cpuTime returns the CPU time (user + system) used so far by the process
// behind t: its subprocess (dbalproxy, PgBouncer), or dbalbench itself for
// the relay, which runs in it (dbalbench does little else while pgbench
// runs). known is false for direct.
func (t *target) cpuTime() (d time.Duration, known bool) {
	switch {
	case t.proc != nil && t.proc.cmd.Process != nil:
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", t.proc.cmd.Process.Pid))
		if err != nil {
			return 0, false
		}
		// Fields after the command name (which may hold spaces): state is
		// field 3; utime and stime are fields 14 and 15, in clock ticks.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			return 0, false
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 13 {
			return 0, false
		}
		ut, err1 := strconv.ParseInt(f[11], 10, 64)
		st, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, false
		}
		return time.Duration(ut+st) * time.Second / clockTicks, true
	case t.name == tRelay:
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0, false
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
	}
	return 0, false
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times (100 on
// Linux on every architecture Go supports).
const clockTicks = 100

// logPercentile reads pgbench's per-transaction logs (prefix.PID and
// prefix.PID.N, one per thread) and returns the q-quantile of the latency
// column in ms (nearest rank) and the number of transactions.
func logPercentile(prefix string, q float64) (float64, int, error) {
	files, err := filepath.Glob(prefix + ".*")
	if err != nil {
		return 0, 0, err
	}
	var lat []int64 // µs
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			return 0, 0, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// client_id transaction_no time script_no time_epoch time_us ...
			fields := strings.Fields(sc.Text())
			if len(fields) < 3 {
				continue
			}
			us, err := strconv.ParseInt(fields[2], 10, 64)
			if err != nil {
				continue // "failed" or "skipped"
			}
			lat = append(lat, us)
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return 0, 0, fmt.Errorf("reading %s: %w", path, err)
		}
	}
	if len(lat) == 0 {
		return 0, 0, nil
	}
	slices.Sort(lat)
	rank := int(math.Ceil(float64(len(lat))*q)) - 1
	rank = max(0, min(rank, len(lat)-1))
	return float64(lat[rank]) / 1000, len(lat), nil
}
