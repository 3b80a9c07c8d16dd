package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dbalproxy/dbalproxy/admin"
	"github.com/dbalproxy/dbalproxy/audit"
	"github.com/dbalproxy/dbalproxy/bridge"
	"github.com/dbalproxy/dbalproxy/catalog"
	"github.com/dbalproxy/dbalproxy/console"
	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/dbalproxy/dbalproxy/metrics"
	"github.com/dbalproxy/dbalproxy/policy"
	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/wire"
	"github.com/rs/zerolog"
)

// serveOptions are serve's hooks; the zero value serves with no reload.
type serveOptions struct {
	// ready, if set, receives the client listener's address once it is up.
	ready func(addr net.Addr)
	// bridgeReady, if set, receives the WebSocket listener's address (when
	// websocket.listen is set) once it is up.
	bridgeReady func(addr net.Addr)
	// adminReady, if set, receives the admin listener's address (when one
	// is configured) once it is up.
	adminReady func(addr net.Addr)
	// reload delivers reload requests (SIGHUP); load reads the configuration
	// again for them.
	reload <-chan struct{}
	load   func() (*Config, error)
	// stdout, if set, receives the audit records of audit.output stdout
	// (the command's standard output; os.Stdout when nil).
	stdout io.Writer
	// listener, if set, is the client listener (the demo opens it before
	// it starts PostgreSQL); serve closes it.
	listener net.Listener
}

// loginSource is the server's LoginSource; a reload swaps its logins.
type loginSource struct{ p atomic.Pointer[wire.Logins] }

// Login implements wire.LoginSource.
func (s *loginSource) Login(name string) (*wire.Login, bool) { return (*s.p.Load()).Login(name) }

// proxy is a running proxy: what serve builds and what a reload may change.
type proxy struct {
	log     zerolog.Logger
	metrics *metrics.Metrics
	logins  loginSource
	pools   loginPools    // logins' own backend roles
	gate    *console.Gate // the console's PAUSE, around every pool
	srv     *wire.Server
	engine  *policy.Engine
	audit   *metrics.Auditor

	mu struct {
		sync.Mutex
		cfg      *Config       // the configuration in force
		auditLog *audit.Logger // the current audit sink
	}
	auditDropped atomic.Uint64 // records dropped by audit sinks already replaced
	listening    atomic.Bool
	policyQuiet  quietHook // on the policy engine's log
	stdout       io.Writer // serveOptions.stdout

	reloadMu   sync.Mutex                   // one reload at a time (SIGHUP, console RELOAD)
	lastReload atomic.Pointer[reloadResult] // SHOW POLICY (consolecmd.go)
}

// openAudit opens the audit sink c names; stdout, if not nil, stands for
// the process's standard output.
func openAudit(c AuditConfig, stdout io.Writer) (*audit.Logger, error) {
	ac := audit.Config{
		Output: c.Output, Format: c.Format, QueueSize: c.QueueSize,
		BlockTimeout: c.BlockTimeout.D(), LogLiterals: c.LogLiterals,
	}
	if stdout != nil && (c.Output == "stdout" || c.Output == "") {
		ac.Writer = stdout
	}
	l, err := audit.New(ac)
	if err != nil {
		return nil, &configError{key: "audit", msg: err.Error()}
	}
	return l, nil
}

// serverLimits are the wire limits a configuration asks for.
func serverLimits(cfg *Config) wire.Limits {
	l := wire.Limits{MaxClientConns: cfg.Limits.MaxClientConns, MaxLoginConns: cfg.Limits.MaxConnsPerLogin}
	for _, lc := range cfg.Logins {
		if lc.MaxConns != 0 {
			if l.LoginMaxConns == nil {
				l.LoginMaxConns = map[string]int{}
			}
			l.LoginMaxConns[lc.Name] = lc.MaxConns
		}
	}
	return l
}

// logLevel is the configured level of the proxy's own log. serve applies it
// as zerolog's global level, so that a reload can change it for every
// component's logger at once (the loggers themselves are built at trace).
// Audit records are written without a level and are not affected.
func logLevel(c LogConfig) zerolog.Level {
	lvl, err := zerolog.ParseLevel(c.Level)
	if err != nil || c.Level == "" {
		return zerolog.InfoLevel
	}
	return lvl
}

// serve runs the proxy until ctx ends, then drains: no new connections,
// idle sessions closed with 57P01, open transactions given up to
// limits.shutdown_timeout.
func serve(ctx context.Context, cfg *Config, log zerolog.Logger, opts serveOptions) error {
	zerolog.SetGlobalLevel(logLevel(cfg.Log))
	ctx, shutdown := context.WithCancel(ctx) // the console's SHUTDOWN drains as SIGTERM does
	defer shutdown()
	px := &proxy{log: log, metrics: metrics.New(), stdout: opts.stdout}
	px.mu.cfg = cfg
	logins, err := buildLogins(cfg)
	if err != nil {
		return err
	}
	px.logins.p.Store(&logins)
	px.metrics.SetLogins(loginNames(cfg))
	var tlsCfg *tls.Config
	if cfg.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return &configError{key: "tls", msg: "cannot load the certificate and key: " + err.Error()}
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	auditLog, err := openAudit(cfg.Audit, opts.stdout)
	if err != nil {
		return err
	}
	px.mu.auditLog = auditLog
	px.audit = px.metrics.Auditor(auditLog)
	defer px.closeAudit()
	// Decision logs see every record the audit log does (restart-only).
	var auditor wire.Auditor = px.audit
	dlog, err := openDecisionLog(cfg.DecisionLog)
	if err != nil {
		return err
	}
	if dlog != nil {
		auditor = teeAuditor{px.audit, dlog}
		defer func() {
			if err := dlog.Close(); err != nil {
				log.Warn().Err(err).Msg("decision log: not everything was sent")
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
	defer px.pools.close()
	// PAUSE (the console) holds every pool's new transactions.
	gate, stats := console.NewGate(), console.NewStats()
	gate.WaitPastDeadline = cfg.Pool.Mode == "transaction"
	defer gate.Close()
	px.gate = gate
	if err := px.pools.attach(cfg, logins, log, px.wrapPool); err != nil {
		return err
	}
	// Functions are resolved in each database's catalog, read with the
	// proxy's credentials; a policy reload reads it again.
	cat := catalog.NewCache(catalog.CacheConfig{Connector: p})
	onReload := func(err error) {
		px.noteReload(err)
		px.metrics.PolicyReloaded(err)
		if err == nil {
			cat.Invalidate()
		}
	}
	pln, engine, err := newPlanner(cfg, log, &px.policyQuiet, onReload, cat)
	if err != nil {
		return err
	}
	px.engine = engine
	if engine != nil && (cfg.Policy.Watch || cfg.Policy.Bundle.URL != "") {
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			if err := engine.Watch(wctx); err != nil && wctx.Err() == nil {
				log.Warn().Err(err).Msg("watching the policies stopped; SIGHUP still reloads")
			}
		}()
	}
	// The admin console (consolecmd.go): PAUSE holds new transactions in
	// front of the pool; SHOW STATS counts the audit records.
	con := px.newConsole(cfg, p, consoleParts{gate: gate, stats: stats, shutdown: shutdown}, opts.load)
	srv, err := wire.NewServer(wire.Config{
		Logins:          &px.logins,
		AuthMethod:      cfg.Auth.Method,
		TokenTransport:  cfg.Auth.TokenTransport,
		TLS:             tlsCfg,
		RequireTLS:      cfg.TLS.Required,
		Backends:        gate.Backends(px.metrics.Backends(p)),
		DefaultDatabase: p.DefaultDatabase(),
		Databases:       cfg.Backend.Databases,
		StartupTimeout:  cfg.Limits.StartupTimeout.D(),
		MaxMessageSize:  cfg.Limits.MaxMessageBytes,
		MaxClientConns:  cfg.Limits.MaxClientConns,
		PeerID:          cfg.Peering.ID,
		Peers:           cfg.Peering.Peers,
		Decider:         pln,
		Parser:          pln.Parser(),
		// In transaction pooling a backend connection is shared between
		// transactions of different clients (see the README).
		TransactionPooling: cfg.Pool.Mode == "transaction",
		Auditor:            stats.Auditor(auditor),
		Logger:             log,
		Console:            con,
	})
	if err != nil {
		return err
	}
	srv.SetLimits(serverLimits(cfg))
	px.srv = srv
	px.metrics.SetSources(metrics.Sources{
		Server: srv, Pool: p,
		PolicyVersion: func() string {
			if engine == nil {
				return ""
			}
			return engine.Version()
		},
		PolicyRevision: px.policyRevision(),
		AuditDropped:   px.droppedAudit,
		Build:          metricsBuildInfo(),
	})
	if dlog != nil {
		px.metrics.SetDecisionLog(dlog.Dropped, dlog.Failures)
	}
	ln := opts.listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return &configError{key: "listen", msg: err.Error()}
		}
	}
	if a := cfg.Admin.Listen; a != "" && a != "off" {
		as, err := admin.Start(admin.Config{
			Addr:    a,
			Metrics: px.metrics.Handler(),
			Ready:   px.readyChecks(p),
			Info:    px.readyInfo,
		})
		if err != nil {
			ln.Close()
			return &configError{key: "admin.listen", msg: err.Error()}
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = as.Close(cctx)
		}()
		log.Info().Str("admin_listen", as.Addr().String()).Msg("admin listener ready: /metrics /healthz /readyz")
		if opts.adminReady != nil {
			opts.adminReady(as.Addr())
		}
	}
	log.Info().Str("listen", ln.Addr().String()).Str("database", p.DefaultDatabase()).
		Str("pool_mode", cfg.Pool.Mode).Str("version", readBuildInfo().Version).Msg("dbalproxy ready")
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	br, err := startBridge(cfg, srv, tlsCfg, log, opts)
	if err != nil {
		_ = srv.Close()
		<-errc
		return err
	}
	if br != nil {
		defer br.Close()
	}
	px.listening.Store(true)
	if opts.ready != nil {
		opts.ready(ln.Addr())
	}
	for {
		select {
		case err := <-errc:
			return err
		case <-opts.reload:
			_ = px.reload(opts.load)
			continue
		case <-ctx.Done():
		}
		break
	}
	px.mu.Lock()
	timeout := px.mu.cfg.Limits.ShutdownTimeout.D()
	px.mu.Unlock()
	log.Info().Str("shutdown_timeout", timeout.String()).Int("sessions", srv.ClientConns()).
		Msg("draining: no new connections; idle sessions are closed, open transactions may finish")
	dctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	gate.Close() // clients held by PAUSE go on and meet the drain
	if br != nil {
		// No new WebSockets or HTTP requests; open WebSockets are sessions
		// that Drain closes like any other.
		go func() { _ = br.Shutdown(dctx) }()
	}
	if err := srv.Drain(dctx); err != nil {
		log.Warn().Msg("shutdown_timeout passed: the remaining sessions were closed and their transactions rolled back")
	}
	<-errc
	log.Info().Msg("stopped")
	return nil
}

// startBridge starts the WebSocket and HTTP bridge when websocket.listen is
// set; it returns nil otherwise.
func startBridge(cfg *Config, srv *wire.Server, tlsCfg *tls.Config, log zerolog.Logger, opts serveOptions) (*bridge.Bridge, error) {
	wc := cfg.WebSocket
	if wc.Listen == "" || wc.Listen == "off" {
		return nil, nil
	}
	br, err := bridge.New(bridge.Config{
		Server: srv, TLS: tlsCfg, AllowedOrigins: wc.AllowedOrigins,
		MaxFrameSize: int64(wc.MaxFrameBytes), MaxBodySize: int64(wc.MaxBodyBytes),
		IdleTimeout: wc.IdleTimeout.D(), RequestTimeout: wc.RequestTimeout.D(), DisableHTTP: wc.DisableHTTP,
		Logger: log.With().Str("component", "bridge").Logger(),
	})
	if err != nil {
		return nil, &configError{key: "websocket", msg: err.Error()}
	}
	wln, err := net.Listen("tcp", wc.Listen)
	if err != nil {
		return nil, &configError{key: "websocket.listen", msg: err.Error()}
	}
	scheme := "ws"
	if tlsCfg != nil {
		scheme = "wss"
	}
	log.Info().Str("websocket_listen", wln.Addr().String()).Str("scheme", scheme).Bool("sql_over_http", !wc.DisableHTTP).
		Msg("bridge ready: PostgreSQL over WebSocket, SQL over HTTP at /sql")
	go func() {
		if err := br.Serve(wln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("the WebSocket listener stopped")
		}
	}()
	if opts.bridgeReady != nil {
		opts.bridgeReady(wln.Addr())
	}
	return br, nil
}

// readyChecks are /readyz's conditions, in order.
func (px *proxy) readyChecks(p *pool.Pool) []admin.Check {
	return []admin.Check{
		func(context.Context) error {
			switch {
			case px.srv.Draining():
				return errors.New("draining for shutdown")
			case !px.listening.Load():
				return errors.New("not listening yet")
			}
			return nil
		},
		func(context.Context) error {
			if px.engine != nil && px.engine.Mode() != decision.ModeDisabled && px.engine.Version() == "" {
				return errors.New("no policy set loaded")
			}
			return nil
		},
		admin.Cached(func(ctx context.Context) error {
			if err := p.Ping(ctx); err != nil {
				return errors.New("backend unreachable")
			}
			return nil
		}, 2*time.Second),
	}
}

// openDecisionLog opens the OPA-format decision log c asks for; nil when
// it is off.
func openDecisionLog(c DecisionLogConfig) (*audit.DecisionLog, error) {
	if c.File == "" && c.URL == "" {
		return nil, nil
	}
	id := c.InstanceID
	if id == "" {
		id, _ = os.Hostname()
	}
	d, err := audit.NewDecisionLog(audit.DecisionLogConfig{
		File: c.File, URL: c.URL, Token: c.Token,
		Labels:    map[string]string{"id": id, "version": version, "app": "dbalproxy"},
		BatchSize: c.BatchSize, FlushInterval: c.FlushInterval.D(), BufferSize: c.BufferSize,
		RetryMax: c.RetryMax.D(), LogLiterals: c.LogLiterals,
	})
	if err != nil {
		return nil, &configError{key: "decision_log", msg: err.Error()}
	}
	return d, nil
}

// teeAuditor gives every record to the audit sink and then the decision
// log.
type teeAuditor struct {
	audit wire.Auditor
	dlog  *audit.DecisionLog
}

// Log implements wire.Auditor.
func (t teeAuditor) Log(r *audit.Record) {
	t.audit.Log(r)
	t.dlog.Log(r)
}

// policyRevision is the metrics' source of the bundle revision in force;
// nil unless the policies come from a bundle service.
func (px *proxy) policyRevision() func() string {
	if px.engine == nil {
		return nil
	}
	if _, ok := px.engine.BundleStatus(); !ok {
		return nil
	}
	return px.engine.Revision
}

// readyInfo are /readyz's lines after the verdict when the policies come
// from a bundle service: the policy version, the bundle's revision and URL,
// and the last poll's error.
func (px *proxy) readyInfo() []string {
	if px.engine == nil {
		return nil
	}
	st, ok := px.engine.BundleStatus()
	if !ok {
		return nil
	}
	lines := []string{"policy_version: " + px.engine.Version(), "policy_revision: " + st.Revision, "policy_bundle: " + st.URL}
	if st.LastError != nil {
		lines = append(lines, "policy_bundle_error: "+st.LastError.Error())
	}
	return lines
}

// droppedAudit is the number of audit records dropped by every audit sink
// this process had.
func (px *proxy) droppedAudit() uint64 {
	px.mu.Lock()
	l := px.mu.auditLog
	px.mu.Unlock()
	return px.auditDropped.Load() + l.Dropped()
}

// closeAudit flushes and closes the current audit sink at exit.
func (px *proxy) closeAudit() {
	px.mu.Lock()
	l := px.mu.auditLog
	px.mu.Unlock()
	_ = l.Close()
	if n := px.droppedAudit(); n > 0 {
		px.log.Warn().Uint64("dropped", n).Msg("audit records were dropped because the audit sink was too slow")
	}
}

// restartKeys are the keys, and groups of keys, a reload cannot change; a
// change is logged key by key (pool.max_conns, not pool) and takes effect at
// the next start.
var restartKeys = []string{
	"listen", "backend", "pool", "auth.method", "tls", "limits.startup_timeout", "limits.max_message_bytes",
	"log.format", "policy", "admin.listen", "peering", "decision_log", "console", "websocket",
}

// configValue is the field of c at a key path (dots between yaml names).
func configValue(c *Config, key string) reflect.Value {
	v := reflect.ValueOf(c).Elem()
	for name := range strings.SplitSeq(key, ".") {
		f, ok := fieldByTag(v.Type(), name)
		if !ok {
			panic("configValue: no key " + key)
		}
		v = v.FieldByIndex(f.Index)
	}
	return v
}

// changedRestartKeys lists the restart-only keys whose values differ
// between old and cfg, leaf by leaf.
func changedRestartKeys(old, cfg *Config) []string {
	var out []string
	var diff func(key string, a, b reflect.Value)
	diff = func(key string, a, b reflect.Value) {
		if a.Kind() == reflect.Struct && a.Type() != reflect.TypeOf(Duration(0)) {
			for i := 0; i < a.NumField(); i++ {
				tag, _, _ := strings.Cut(a.Type().Field(i).Tag.Get("yaml"), ",")
				diff(join(key, tag), a.Field(i), b.Field(i))
			}
			return
		}
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			out = append(out, key)
		}
	}
	for _, k := range restartKeys {
		diff(k, configValue(old, k), configValue(cfg, k))
	}
	return out
}

// quietHook drops the policy engine's own error lines while a SIGHUP reload
// runs: the reload reports a refused policy set in its one line.
type quietHook struct{ on atomic.Bool }

// Run implements zerolog.Hook.
func (h *quietHook) Run(e *zerolog.Event, level zerolog.Level, _ string) {
	if level >= zerolog.ErrorLevel && h.on.Load() {
		e.Discard()
	}
}

// reload reads the configuration again and applies what can change while
// sessions run: logins, limits, log level, audit settings and the policy
// files. A configuration with problems, or policies that do not compile or
// fail their tests, are refused with one log line per problem, and the
// running configuration stays. Open sessions are never closed by a reload.
// It returns the reload's error (the console's RELOAD reports it).
func (px *proxy) reload(load func() (*Config, error)) error {
	px.reloadMu.Lock()
	defer px.reloadMu.Unlock()
	// Log rotation: the audit file is opened again by its path whatever
	// the new configuration says (a changed audit section opens a new sink
	// in apply anyway).
	px.mu.Lock()
	auditLog := px.mu.auditLog
	px.mu.Unlock()
	if err := auditLog.Reopen(); err != nil {
		px.log.Error().Err(err).Msg("reopening the audit file failed; records still go to the old one")
	}
	err := px.apply(load)
	px.metrics.ConfigReloaded(err)
	px.noteReload(err)
	if err != nil {
		for _, e := range splitErrors(err) {
			px.log.Error().Str("problem", e.Error()).Msg("configuration reload refused; the running configuration stays")
		}
	}
	return err
}

func (px *proxy) apply(load func() (*Config, error)) error {
	if load == nil {
		return errors.New("no configuration file to reload")
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	logins, err := buildLogins(cfg)
	if err != nil {
		return err
	}
	if err := px.pools.attach(cfg, logins, px.log, px.wrapPool); err != nil {
		return err
	}
	px.mu.Lock()
	old := px.mu.cfg
	px.mu.Unlock()
	var newAudit *audit.Logger
	if cfg.Audit != old.Audit {
		if newAudit, err = openAudit(cfg.Audit, px.stdout); err != nil {
			return err
		}
	}
	if px.engine != nil {
		px.policyQuiet.on.Store(true)
		err := px.engine.Reload()
		px.policyQuiet.on.Store(false)
		if err != nil {
			if newAudit != nil {
				_ = newAudit.Close()
			}
			return fmt.Errorf("policies: %w", err)
		}
	}
	// Everything checked: apply.
	for _, k := range changedRestartKeys(old, cfg) {
		px.log.Warn().Str("key", k).Msg("configuration key changed; it takes effect only after a restart")
	}
	px.logins.p.Store(&logins)
	px.metrics.SetLogins(loginNames(cfg))
	px.srv.SetLimits(serverLimits(cfg))
	zerolog.SetGlobalLevel(logLevel(cfg.Log))
	if newAudit != nil {
		oldSink := px.audit.Swap(newAudit)
		px.mu.Lock()
		px.mu.auditLog = newAudit
		px.mu.Unlock()
		if l, ok := oldSink.(*audit.Logger); ok {
			_ = l.Close()
			px.auditDropped.Add(l.Dropped())
		}
	}
	kept := *cfg
	restoreRestartKeys(&kept, old)
	px.mu.Lock()
	px.mu.cfg = &kept
	px.mu.Unlock()
	ev := px.log.Info().Int("logins", len(logins)).Str("log_level", logLevel(cfg.Log).String())
	if px.engine != nil {
		ev = ev.Str("policy_version", px.engine.Version())
	}
	ev.Msg("configuration reloaded")
	return nil
}

// restoreRestartKeys puts the running values of the restart-only keys back
// into c, so that the configuration in force says what actually runs.
func restoreRestartKeys(c, running *Config) {
	for _, k := range restartKeys {
		configValue(c, k).Set(configValue(running, k))
	}
}

// splitErrors undoes errors.Join.
func splitErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// checkConfig validates a configuration and everything it names without
// serving: every key, the logins' secrets, the TLS files, the audit output,
// the backend URL's syntax, and the policy set (compiled, and its Rego tests
// run). It reports every problem it finds, one per line.
func checkConfig(load func() (*Config, error)) error {
	cfg, err := load()
	if err != nil && (cfg == nil || !onlyKeyProblems(err)) {
		return err
	}
	// The file decoded: check what it names too, even if some keys are wrong.
	problems := []error{err}
	if _, err := buildLogins(cfg); err != nil {
		problems = append(problems, err)
	}
	if cfg.TLS.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
			problems = append(problems, &configError{key: "tls", msg: "cannot load the certificate and key: " + err.Error()})
		}
	}
	// The listen hosts must be this machine's (the ports may be taken by
	// the proxy being checked, so any port is tried).
	for _, ka := range [][2]string{{"listen", cfg.Listen}, {"admin.listen", cfg.Admin.Listen}} {
		key, a := ka[0], ka[1]
		if host, _, err := net.SplitHostPort(a); err == nil && checkHostPort(a) == nil {
			if ln, err := net.Listen("tcp", net.JoinHostPort(host, "0")); err != nil {
				problems = append(problems, &configError{key: key, msg: fmt.Sprintf("cannot listen on host %q: %v", host, err)})
			} else {
				ln.Close()
			}
		}
	}
	if cfg.Audit.Output != "stdout" && cfg.Audit.Output != "stderr" && cfg.Audit.Output != "off" && cfg.Audit.Output != "" {
		if l, err := openAudit(cfg.Audit, nil); err != nil {
			problems = append(problems, err)
		} else {
			_ = l.Close()
		}
	}
	if cfg.Backend.URL == "" {
		// Already reported: required, or its variable is not set.
	} else if p, err := pool.New(pool.Config{ConnString: cfg.Backend.URL}); err != nil {
		problems = append(problems, &configError{key: "backend.url", msg: err.Error()})
	} else {
		p.Close()
	}
	if cfg.Policy.Mode != "disabled" && (cfg.Policy.Dir != "" || cfg.Policy.Bundle.URL != "") {
		opts := policyOptions(cfg)
		opts.Mode, _ = decision.ParseMode(cfg.Policy.Mode)
		opts.RunTests = true
		key := "policy.dir"
		if opts.Bundle != nil {
			key = "policy.bundle" // downloaded, verified, compiled and tested
		}
		if _, err := policy.New(opts); err != nil {
			problems = append(problems, &configError{key: key, msg: err.Error()})
		}
	}
	return errors.Join(withoutUnsetEchoes(problems)...)
}

// withoutUnsetEchoes drops the problems that only follow from a ${NAME}
// that is not set (a login without its secret, TLS without its cert): the
// unset variable is reported already, at a key inside the one the echo
// names (or the other way round).
func withoutUnsetEchoes(problems []error) []error {
	var unset []string
	for _, p := range problems {
		for _, e := range splitErrors(p) {
			var ce *configError
			if errors.As(e, &ce) && ce.unsetVar != "" {
				unset = append(unset, ce.key)
			}
		}
	}
	related := func(a, b string) bool {
		return a == b || strings.HasPrefix(b, a+".") || strings.HasPrefix(b, a+"[") ||
			strings.HasPrefix(a, b+".") || strings.HasPrefix(a, b+"[")
	}
	var out []error
	for _, p := range problems {
		for _, e := range splitErrors(p) {
			var ce *configError
			if e != nil && errors.As(e, &ce) && ce.unsetVar == "" && slices.ContainsFunc(unset, func(u string) bool { return related(ce.key, u) }) {
				continue
			}
			out = append(out, e)
		}
	}
	return out
}

// onlyKeyProblems reports whether err consists of problems at named keys
// only (the file itself was read and decoded).
func onlyKeyProblems(err error) bool {
	for _, e := range splitErrors(err) {
		var ce *configError
		if !errors.As(e, &ce) || ce.key == "" {
			return false
		}
	}
	return true
}
