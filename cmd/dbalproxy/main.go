// Command dbalproxy is a PostgreSQL wire-protocol proxy that decides, rewrites
// and audits every statement. Applications change only their DATABASE_URL.
//
// Usage:
//
//	dbalproxy serve --config dbalproxy.yaml   run the proxy
//	dbalproxy demo                            a throwaway PostgreSQL with sample data behind the proxy
//	dbalproxy version                         print the version
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dbalproxy/dbalproxy/audit"
	"github.com/dbalproxy/dbalproxy/identity"
	"github.com/dbalproxy/dbalproxy/parser"
	"github.com/dbalproxy/dbalproxy/policy"
	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/rewrite"
	"github.com/dbalproxy/dbalproxy/wire"
	"github.com/rs/zerolog"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprint(w, `dbalproxy: a PostgreSQL proxy with policies, row-level rewriting and audit.

Usage:
  dbalproxy serve --config FILE [flags]   run the proxy (serve -h lists every flag)
  dbalproxy demo [--listen ADDR]          throwaway PostgreSQL + sample schema behind the proxy
  dbalproxy policy test [-v] [DIR]        run the Rego tests of a policy directory
  dbalproxy explain --login NAME 'SQL'    show a statement's facts, decision and plan
  dbalproxy version                       print the version
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
		err = serveCmd(args[1:], stderr)
	case "demo":
		err = demoCmd(args[1:], stdout, stderr)
	case "policy":
		err = policyCmd(args[1:], stdout, stderr)
	case "explain":
		err = explainCmd(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "dbalproxy", version)
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
		fmt.Fprintln(stderr, "dbalproxy:", err)
		return 1
	}
	return 0
}

func serveCmd(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", os.Getenv("DBALPROXY_CONFIG"), "configuration file (env DBALPROXY_CONFIG)")
	cfg := defaultConfig()
	apply := configFlags(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *configPath == "" && os.Getenv("DBALPROXY_BACKEND_URL") == "" {
		return errors.New("serve needs --config FILE (or DBALPROXY_BACKEND_URL and logins in a file)")
	}
	if err := loadConfig(*configPath, &cfg, apply); err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serve(ctx, &cfg, log, nil)
}

func newLogger(c LogConfig, w io.Writer) zerolog.Logger {
	if c.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	}
	lvl, err := zerolog.ParseLevel(c.Level)
	if err != nil || c.Level == "" {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
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

// newPlanner loads the policies and builds the statement planner.
func newPlanner(cfg *Config, log zerolog.Logger) (*wire.Planner, *policy.Engine, error) {
	mode, err := policy.ParseMode(cfg.Policy.Mode)
	if err != nil {
		return nil, nil, &configError{key: "policy.mode", msg: err.Error()}
	}
	engine, err := policy.New(policy.Options{
		Dir: cfg.Policy.Dir, Mode: mode, RunTests: cfg.Policy.RunTests,
		Logger: log.With().Str("component", "policy").Logger(),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("policies in %s: %w", cfg.Policy.Dir, err)
	}
	planner, err := wire.NewPlanner(wire.PlannerConfig{
		Parser:    parser.New(parser.Options{}),
		Policy:    engine,
		Rewriter:  rewrite.NewRewriter(0),
		CacheSize: cfg.Policy.CacheSize,
		Logger:    log.With().Str("component", "planner").Logger(),
	})
	if err != nil {
		return nil, nil, err
	}
	log.Info().Str("dir", cfg.Policy.Dir).Str("mode", string(mode)).Str("policy_version", engine.Version()).Msg("policies loaded")
	return planner, engine, nil
}

// serve runs the proxy until ctx ends. ready, if not nil, receives the bound
// address once the listener is up.
func serve(ctx context.Context, cfg *Config, log zerolog.Logger, ready func(addr net.Addr)) error {
	logins, err := buildLogins(cfg)
	if err != nil {
		return err
	}
	var tlsCfg *tls.Config
	if cfg.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return &configError{key: "tls", msg: "cannot load the certificate and key: " + err.Error()}
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	auditLog, err := audit.New(audit.Config{
		Output: cfg.Audit.Output, Format: cfg.Audit.Format, QueueSize: cfg.Audit.QueueSize,
		BlockTimeout: cfg.Audit.BlockTimeout.D(), LogLiterals: cfg.Audit.LogLiterals,
	})
	if err != nil {
		return &configError{key: "audit", msg: err.Error()}
	}
	defer func() {
		_ = auditLog.Close()
		if n := auditLog.Dropped(); n > 0 {
			log.Warn().Uint64("dropped", n).Msg("audit records were dropped because the audit sink was too slow")
		}
	}()
	planner, engine, err := newPlanner(cfg, log)
	if err != nil {
		return err
	}
	if engine != nil && cfg.Policy.Watch {
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			if err := engine.Watch(wctx); err != nil && wctx.Err() == nil {
				log.Warn().Err(err).Msg("watching the policy directory stopped; SIGHUP still reloads")
			}
		}()
	}
	if engine != nil {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go func() {
			for range hup {
				if err := engine.Reload(); err == nil {
					log.Info().Str("policy_version", engine.Version()).Msg("policies reloaded on SIGHUP")
				}
			}
		}()
	}
	p, err := pool.New(pool.Config{
		ConnString:     cfg.Backend.URL,
		MaxConns:       cfg.Pool.MaxConns,
		AcquireTimeout: cfg.Pool.AcquireTimeout.D(),
		IdleTimeout:    cfg.Pool.IdleTimeout.D(),
		ResetQuery:     cfg.Pool.ResetQuery,
		Logger:         log.With().Str("component", "pool").Logger(),
	})
	if err != nil {
		return &configError{key: "backend.url", msg: err.Error()}
	}
	defer p.Close()
	srv, err := wire.NewServer(wire.Config{
		Logins:          logins,
		AuthMethod:      cfg.Auth.Method,
		TokenTransport:  cfg.Auth.TokenTransport,
		TLS:             tlsCfg,
		RequireTLS:      cfg.TLS.Required,
		Backends:        p,
		DefaultDatabase: p.DefaultDatabase(),
		Databases:       cfg.Backend.Databases,
		StartupTimeout:  cfg.Limits.StartupTimeout.D(),
		MaxMessageSize:  cfg.Limits.MaxMessageBytes,
		MaxClientConns:  cfg.Limits.MaxClientConns,
		Decider:         planner,
		// In transaction pooling a backend connection is shared between
		// transactions of different clients (see the README).
		TransactionPooling: cfg.Pool.Mode == "transaction",
		Auditor:            auditLog,
		Logger:             log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return &configError{key: "listen", msg: err.Error()}
	}
	log.Info().Str("listen", ln.Addr().String()).Str("database", p.DefaultDatabase()).
		Str("pool_mode", cfg.Pool.Mode).Str("version", version).Msg("dbalproxy ready")
	if ready != nil {
		ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info().Msg("shutting down: no new connections; waiting up to 30s for sessions to end")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	<-errc
	log.Info().Msg("stopped")
	return nil
}
