// Command dbalproxy is a PostgreSQL wire-protocol proxy that decides, rewrites
// and audits every statement. Applications change only their DATABASE_URL.
//
// Usage:
//
//	dbalproxy serve --config dbalproxy.yaml   run the proxy
//	dbalproxy demo                            a throwaway PostgreSQL with sample data behind the proxy
//	dbalproxy policy test [-v] [DIR]          run a policy directory's Rego tests
//	dbalproxy explain --login NAME 'SQL'      a statement's facts, decision and plan
//	dbalproxy passwd LOGIN                    a scram_verifier from a password on stdin
//	dbalproxy completion bash|zsh|fish        a shell completion script
//	dbalproxy version                         print the version, VCS revision and Go version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/dbalproxy/dbalproxy/identity"
	"github.com/dbalproxy/dbalproxy/parser"
	"github.com/dbalproxy/dbalproxy/planner"
	"github.com/dbalproxy/dbalproxy/policy"
	"github.com/dbalproxy/dbalproxy/rewrite"
	"github.com/dbalproxy/dbalproxy/wire"
	"github.com/rs/zerolog"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// stdin is the standard input of commands that read it (passwd); tests
// replace it.
var stdin io.Reader = os.Stdin

func usage(w io.Writer) {
	fmt.Fprint(w, `dbalproxy: a PostgreSQL proxy with policies, row-level rewriting and audit.

Usage:
  dbalproxy serve --config FILE [flags]   run the proxy (serve -h lists every flag)
  dbalproxy demo [--listen ADDR]          throwaway PostgreSQL + sample schema behind the proxy
  dbalproxy policy test [-v] [DIR]        run the Rego tests of a policy directory
  dbalproxy explain --login NAME 'SQL'    show a statement's facts, decision and plan
                                          (exit status 3 when it would be denied; --json)
  dbalproxy passwd LOGIN                  print a scram_verifier for a password read on stdin
  dbalproxy completion bash|zsh|fish      print a shell completion script
  dbalproxy version                       print the version, VCS revision and Go version

Each command's -h lists its flags.
`)
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serveCmd(args[1:], stdout, stderr)
	case "demo":
		err = demoCmd(args[1:], stdout, stderr)
	case "policy":
		err = policyCmd(args[1:], stdout, stderr)
	case "explain":
		err = explainCmd(args[1:], stdout, stderr)
	case "passwd":
		err = passwdCmd(args[1:], stdin, stdout, stderr)
	case "completion":
		err = completionCmd(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, readBuildInfo())
		return 0
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "dbalproxy: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		var es exitStatus
		if errors.As(err, &es) {
			return int(es) // the command has said what it had to say
		}
		// One line per problem (a configuration check reports them all).
		for line := range strings.SplitSeq(err.Error(), "\n") {
			fmt.Fprintln(stderr, "dbalproxy:", line)
		}
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}

// exitStatus is a command's outcome that is not an error but has its own
// exit status (explain's denial); run prints nothing for it.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// usageError is a command used wrongly: exit status 2.
type usageError struct{ error }

func serveCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", os.Getenv("DBALPROXY_CONFIG"), "configuration file (env DBALPROXY_CONFIG)")
	check := fs.Bool("check", false, "validate the configuration and its policies (compile and Rego tests), print ok, and exit")
	cfg := defaultConfig()
	ov := configOverrides(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *configPath == "" {
		// Flags and the environment can give every key but the logins.
		return usageError{errors.New("serve needs a configuration file: --config FILE or DBALPROXY_CONFIG=FILE " +
			"(logins are given only in a file; the README's Configuration section has an example)\n" +
			"to try dbalproxy without one, run: dbalproxy demo")}
	}
	load := func() (*Config, error) {
		c := defaultConfig()
		// c is returned with an error too: serve --check goes on to check
		// the policies of a file with wrong keys.
		err := loadConfig(*configPath, &c, ov)
		return &c, err
	}
	if *check {
		if err := checkConfig(load); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "ok")
		return nil
	}
	c, err := load()
	if err != nil {
		return err
	}
	if path := os.Getenv("DBALPROXY_CPUPROFILE"); path != "" {
		// A CPU profile of the whole run, written when serve returns (for
		// dbalbench -cpuprofile and go tool pprof).
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("DBALPROXY_CPUPROFILE: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return fmt.Errorf("DBALPROXY_CPUPROFILE: %w", err)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	log := newLogger(LogConfig{Level: "trace", Format: c.Log.Format}, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{})
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return serve(ctx, c, log, serveOptions{load: load, reload: reload, stdout: stdout})
}

func init() {
	// The proxy's own log: times as the audit records write them (RFC 3339
	// in UTC, to the nanosecond) rather than to the second, and durations
	// with their unit ("took":"1.5ms") rather than a bare number.
	zerolog.TimeFieldFormat = time.RFC3339Nano
	zerolog.TimestampFunc = func() time.Time { return time.Now().UTC() }
	zerolog.DurationFieldFormat = zerolog.DurationFormatString
}

// newLogger is the proxy's own log on w: JSON lines, or with format console
// readable lines, coloured only when w is a terminal and NO_COLOR is unset.
func newLogger(c LogConfig, w io.Writer) zerolog.Logger {
	if c.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000", NoColor: !colorTerminal(w)}
	}
	lvl, err := zerolog.ParseLevel(c.Level)
	if err != nil || c.Level == "" {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}

// colorTerminal reports whether w is a terminal that may get ANSI colours:
// a character device, and NO_COLOR (https://no-color.org) unset.
func colorTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// buildVerifiers loads the configured token verifiers and their key files.
func buildVerifiers(cfg *Config) (map[string]*identity.Verifier, error) {
	out := map[string]*identity.Verifier{}
	for i, j := range cfg.JWT {
		key := fmt.Sprintf("jwt[%d]", i)
		ic := identity.Config{
			Name: j.Name, Algorithm: j.Algorithm, Issuer: j.Issuer, Audience: j.Audience, Leeway: j.Leeway.D(),
			RoleClaim: j.RoleClaim, DefaultRole: j.DefaultRole, Roles: j.Roles, UserIDClaim: j.UserIDClaim,
		}
		var err error
		switch {
		case j.HS256Secret != "":
			ic.HS256Secret = []byte(j.HS256Secret)
		case j.PublicKeyFile != "":
			if ic.PublicKeyPEM, err = os.ReadFile(j.PublicKeyFile); err != nil {
				return nil, &configError{key: key + ".public_key_file", msg: err.Error()}
			}
		case j.JWKSFile != "":
			if ic.JWKS, err = os.ReadFile(j.JWKSFile); err != nil {
				return nil, &configError{key: key + ".jwks_file", msg: err.Error()}
			}
		}
		v, err := identity.New(ic)
		if err != nil {
			return nil, &configError{key: key, msg: err.Error()}
		}
		out[j.Name] = v
	}
	return out, nil
}

// buildLogins turns the configured logins into the server's, deriving SCRAM
// verifiers from plain passwords once at load.
func buildLogins(cfg *Config) (wire.Logins, error) {
	verifiers, err := buildVerifiers(cfg)
	if err != nil {
		return nil, err
	}
	out := wire.Logins{}
	for i, l := range cfg.Logins {
		login := &wire.Login{Name: l.Name, Role: l.Role, Claims: l.Claims}
		if v := verifiers[l.JWT]; v != nil {
			login.Token = v
		}
		if v := verifiers[l.EndUserJWT]; v != nil {
			login.EndUserTokens = v
		}
		switch {
		case l.SCRAMVerifier != "":
			sc, err := wire.ParseSCRAMVerifier(l.SCRAMVerifier)
			if err != nil {
				return nil, &configError{key: fmt.Sprintf("logins[%d].scram_verifier", i), msg: err.Error()}
			}
			login.SCRAM = sc
		case l.Password != "":
			sc, err := wire.NewSCRAMCredentials(l.Password)
			if err != nil {
				return nil, &configError{key: fmt.Sprintf("logins[%d].password", i), msg: "cannot derive a SCRAM verifier from it"}
			}
			login.SCRAM = sc
		}
		out[l.Name] = login
	}
	return out, nil
}

// newPlanner loads the policies and builds the statement planner. hook, if
// not nil, sees the policy engine's log lines; onReload, if not nil, is told
// of every policy reload. cat resolves functions (nil: not at all).
func newPlanner(cfg *Config, log zerolog.Logger, hook zerolog.Hook, onReload func(error), cat planner.FunctionCatalog) (*planner.Planner, *policy.Engine, error) {
	mode, err := decision.ParseMode(cfg.Policy.Mode)
	if err != nil {
		return nil, nil, &configError{key: "policy.mode", msg: err.Error()}
	}
	policyLog := log.With().Str("component", "policy").Logger()
	if hook != nil {
		policyLog = policyLog.Hook(hook)
	}
	popts := policyOptions(cfg)
	popts.Mode, popts.Logger, popts.OnReload = mode, policyLog, onReload
	engine, err := policy.New(popts)
	if err != nil {
		return nil, nil, fmt.Errorf("policies in %s: %w", policySource(cfg), err)
	}
	pln, err := planner.New(planner.Config{
		Parser:    parser.New(parser.Options{}),
		Policy:    engine,
		Rewriter:  rewrite.NewRewriter(0),
		Catalog:   cat,
		CacheSize: cfg.Policy.CacheSize,
		Logger:    log.With().Str("component", "planner").Logger(),
	})
	if err != nil {
		return nil, nil, err
	}
	log.Info().Str("dir", policySource(cfg)).Str("mode", string(mode)).Str("policy_version", engine.Version()).Msg("policies loaded")
	return pln, engine, nil
}
