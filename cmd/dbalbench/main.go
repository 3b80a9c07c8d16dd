// Command dbalbench measures what dbalproxy costs in front of PostgreSQL.
//
// In one run it starts a throwaway PostgreSQL (testenv), loads pgbench's
// tables (pgbench -i -s 10), builds and starts dbalproxy in several
// configurations (one of them reached over WebSocket), a bare TCP relay (the floor cost of one extra hop) and,
// when a pgbouncer binary is installed, PgBouncer in transaction pooling, and
// then runs the same read-only pgbench workload (pgbench -n -S) against each
// of them, interleaved so that machine noise hits every target alike. It
// prints TPS, mean and p99 latency per target and the ratios that matter:
// dbalproxy against direct PostgreSQL, against the relay and against
// PgBouncer measured in the same run.
//
// Usage, from anywhere inside the module:
//
//	go run ./cmd/dbalbench                 # full run: 3 modes x 1,8,32 clients x 10 s
//	go run ./cmd/dbalbench -quick          # 3 s per run, 8 clients only
//	go run ./cmd/dbalbench -targets direct,relay,dbalproxy -clients 8 -runs 3 -markdown
//
// Everything listens on 127.0.0.1 only, and every process it starts is
// stopped when it ends, fails or is interrupted. See docs/benchmarks.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Target names, in the order they run and are printed.
const (
	tDirect     = "direct"
	tRelay      = "relay"
	tPgBouncer  = "pgbouncer"
	tProxy      = "dbalproxy"
	tProxyNoAud = "dbalproxy-audit-off"
	tProxyNoPol = "dbalproxy-policy-off"
	tProxyTLS   = "dbalproxy-tls"
	// tProxyWS is dbalproxy reached over its WebSocket listener (the Neon
	// driver's path): pgbench talks TCP to an adapter inside dbalbench that
	// carries each connection over a WebSocket, as a relay does over TCP.
	tProxyWS = "dbalproxy-ws"
)

var allTargets = []string{tDirect, tRelay, tPgBouncer, tProxy, tProxyNoAud, tProxyNoPol, tProxyTLS, tProxyWS}

var allModes = []string{"simple", "extended", "prepared"}

// extraModes may be asked for with -modes: "connect" is -M simple with -C
// (a new connection, with its SCRAM login, per transaction).
var extraModes = []string{"connect"}

// options are the parsed flags.
type options struct {
	targets  []string
	modes    []string
	clients  []int
	duration time.Duration
	runs     int
	scale    int
	markdown bool
	keep     bool
	verbose  bool
	// poolMode is the dbalproxy targets' pool.mode.
	poolMode string
	// idle, if above 0, is how many idle client connections are opened to
	// the dbalproxy target after the pgbench runs, to measure their memory.
	idle int
	// timeouts, if above 0, is how many statements are cancelled by a
	// policy timeout (and, for reference, by statement_timeout on direct)
	// to measure how late the cancel comes.
	timeouts int
	// cpuprofile, if set, is a directory where each dbalproxy target writes
	// a CPU profile of its whole run.
	cpuprofile string
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "dbalbench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench(ctx, opts, stdout, stderr); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "dbalbench: interrupted; everything it started is stopped")
			return 130
		}
		fmt.Fprintln(stderr, "dbalbench:", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("dbalbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	targets := fs.String("targets", strings.Join(allTargets, ","), "comma list of targets: "+strings.Join(allTargets, ", "))
	modes := fs.String("modes", strings.Join(allModes, ","), "comma list of pgbench protocol modes (-M): simple, extended, prepared; or connect (-M simple -C: connection setup)")
	clients := fs.String("clients", "1,8,32", "comma list of client counts (pgbench -c)")
	duration := fs.Duration("duration", 10*time.Second, "length of each pgbench run (pgbench -T, whole seconds)")
	runs := fs.Int("runs", 1, "repetitions of each measurement; the median is reported")
	scale := fs.Int("scale", 10, "pgbench scale factor for the data (pgbench -i -s)")
	quick := fs.Bool("quick", false, "quick check: -duration 3s -clients 8 (explicit flags still win)")
	markdown := fs.Bool("markdown", false, "also print the results as markdown tables")
	keep := fs.Bool("keep", false, "keep the temporary directory (configs, logs) for inspection")
	verbose := fs.Bool("v", false, "print each pgbench command and its full output")
	timeouts := fs.Int("timeouts", 200, "after the pgbench runs, run this many statements that a 100 ms policy timeout cancels (dbalproxy target; statement_timeout on direct for reference) and report how late the cancel came (0: skip)")
	idle := fs.Int("idle", 1000, "after the pgbench runs, open this many idle connections to the dbalproxy target and report its memory per connection (0: skip)")
	cpuprofile := fs.String("cpuprofile", "", "directory for a CPU profile of each dbalproxy target (<target>.pprof; go tool pprof)")
	poolMode := fs.String("pool-mode", "transaction", "the dbalproxy targets' pool.mode: transaction (like PgBouncer's) or session")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "dbalbench: pgbench -S against PostgreSQL directly, through a bare TCP relay, PgBouncer and dbalproxy.\n\nUsage: go run ./cmd/dbalbench [flags]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (all settings are flags; -h lists them)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		if !set["duration"] {
			*duration = 3 * time.Second
		}
		if !set["clients"] {
			*clients = "8"
		}
	}
	o := &options{duration: *duration, runs: *runs, scale: *scale, markdown: *markdown, keep: *keep, verbose: *verbose, poolMode: *poolMode, cpuprofile: *cpuprofile, idle: *idle, timeouts: *timeouts}
	if o.poolMode != "transaction" && o.poolMode != "session" {
		return nil, fmt.Errorf("-pool-mode %q: want transaction or session", o.poolMode)
	}
	var err error
	if o.targets, err = pickList("-targets", *targets, allTargets); err != nil {
		return nil, err
	}
	if o.modes, err = pickList("-modes", *modes, append(slices.Clone(allModes), extraModes...)); err != nil {
		return nil, err
	}
	for s := range strings.SplitSeq(*clients, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 200 {
			return nil, fmt.Errorf("-clients: %q is not a client count between 1 and 200", s)
		}
		if !slices.Contains(o.clients, n) {
			o.clients = append(o.clients, n)
		}
	}
	switch {
	case len(o.clients) == 0:
		return nil, errors.New("-clients: name at least one client count")
	case o.duration < time.Second:
		return nil, errors.New("-duration: must be at least 1s (pgbench -T takes whole seconds)")
	case o.runs < 1:
		return nil, errors.New("-runs: must be at least 1")
	case o.scale < 1:
		return nil, errors.New("-scale: must be at least 1")
	}
	return o, nil
}

// pickList parses a comma list of names from known, keeping known's order.
func pickList(flagName, s string, known []string) ([]string, error) {
	want := map[string]bool{}
	for p := range strings.SplitSeq(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !slices.Contains(known, p) {
			return nil, fmt.Errorf("%s: unknown name %q (want some of %s)", flagName, p, strings.Join(known, ", "))
		}
		want[p] = true
	}
	var out []string
	for _, k := range known {
		if want[k] {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: name at least one of %s", flagName, strings.Join(known, ", "))
	}
	return out, nil
}
