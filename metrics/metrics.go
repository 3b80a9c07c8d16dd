// Package metrics exposes dbalproxy's Prometheus metrics. It keeps its own
// registry (never the global one) and takes its numbers from seams that exist
// anyway, so the statement path carries no metrics code of its own:
//
//   - Auditor wraps the audit sink: every audit record (one per statement
//     decision and per login attempt) updates decisions, latency and error
//     counts on its way to the real sink.
//   - Backends wraps the backend pool's Acquire to time how long clients wait
//     for a backend connection.
//   - Sources are read at scrape time: the server's connection counts, the
//     pool's per-database connections, the policy version, dropped audit
//     records, the build.
//
// The seams are small interfaces declared here (BackendPool, Sink,
// ServerSource), so metrics does not import the protocol server (package
// wire): the server's counts come as status.ServerStats, and cmd/dbalproxy
// connects the two.
//
// Decisions, logins and sessions carry a login label, bounded: only the
// logins of the configuration (SetLogins, at most maxLoginLabels) get their
// own value; every other name, a failed guess's included, is "other".
//
// Every metric is named dbalproxy_*; README.md lists them.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dbalproxy/dbalproxy/audit"
	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/status"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ServerSource reports client connection counts; the protocol server
// (*wire.Server) implements it.
type ServerSource interface {
	Stats() status.ServerStats
}

// PoolSource reports backend connection counts; *pool.Pool implements it.
type PoolSource interface {
	Stats() pool.Stats
	DatabaseStats() []pool.DatabaseStats
}

// Sources are read at every scrape. Any may be nil (its metrics are then
// absent); they may be set after New with SetSources.
type Sources struct {
	Server ServerSource
	Pool   PoolSource
	// PolicyVersion returns the version of the policy set in force.
	PolicyVersion func() string
	// PolicyRevision, set only when the policies come from a bundle
	// service, returns the revision of the bundle in force.
	PolicyRevision func() string
	// AuditDropped returns how many audit records were dropped so far.
	AuditDropped func() uint64
	// Build is exported as dbalproxy_build_info when its Version is set.
	Build BuildInfo
}

// BuildInfo describes the running binary, for dbalproxy_build_info.
type BuildInfo struct {
	Version   string // v1.2.3, a pseudo-version, or dev
	Revision  string // the VCS commit; empty when unknown
	GoVersion string // the Go toolchain that built it
}

// LoginCounter reports a login's open sessions; *wire.Server implements it.
// A ServerSource that also implements it gets dbalproxy_login_sessions.
type LoginCounter interface {
	LoginConns(name string) int
}

// maxSQLStates bounds the distinct values of the sqlstate label: codes past
// it are counted as "other", so a backend that invents codes cannot grow the
// metric without bound.
const maxSQLStates = 200

// maxLoginLabels bounds the distinct values of the login label: the first
// logins of the configuration get their own value, later ones and any name
// not configured are counted as otherLogin.
const maxLoginLabels = 100

// otherLogin is the login label of names without their own.
const otherLogin = "other"

// Metrics holds dbalproxy's collectors and their registry.
type Metrics struct {
	reg *prometheus.Registry

	decisions  *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	errors     *prometheus.CounterVec
	logins     *prometheus.CounterVec
	acquire    prometheus.Histogram
	acquireErr *prometheus.CounterVec
	reloads    *prometheus.CounterVec
	policyLoad *prometheus.CounterVec

	// byDecision caches the latency children for the known decisions, so
	// that a record costs no label lookup.
	byDecision map[string]prometheus.Observer
	// logins holds each labelled login's children of decisions and logins.
	loginTab   atomic.Pointer[loginTable]
	loginTabMu sync.Mutex // serializes SetLogins

	codesMu sync.Mutex
	codes   map[string]bool

	sources atomic.Pointer[Sources]
}

// New returns Metrics with a fresh registry holding the dbalproxy collectors
// and the Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), codes: map[string]bool{}}
	m.sources.Store(&Sources{})
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dbalproxy_decisions_total",
		Help: "Statement decisions by result (allow, rewrite, deny, would_deny in permissive mode) and login (configured logins; others as \"other\").",
	}, []string{"decision", "login"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "dbalproxy_statement_duration_seconds",
		Help:    "Time from receiving a statement to its completion (denials included), by decision.",
		Buckets: []float64{.0002, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"decision"})
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dbalproxy_errors_total",
		Help: "Failed statements and logins by SQLSTATE (the proxy's own and the backend's).",
	}, []string{"sqlstate"})
	m.logins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dbalproxy_logins_total",
		Help: "Login attempts by result (ok or failed) and login (configured logins; others as \"other\").",
	}, []string{"result", "login"})
	m.acquire = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "dbalproxy_pool_acquire_seconds",
		Help:    "Time a client waited for a backend connection (including dialing a new one).",
		Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})
	m.acquireErr = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dbalproxy_pool_acquire_errors_total",
		Help: "Failed backend connection acquisitions by SQLSTATE (53300: pool timeout; 08006: backend unreachable).",
	}, []string{"sqlstate"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dbalproxy_config_reloads_total",
		Help: "Configuration reloads (SIGHUP) by result: ok or failed.",
	}, []string{"result"})
	m.policyLoad = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dbalproxy_policy_reloads_total",
		Help: "Policy set reloads (SIGHUP or a file change) by result: ok or failed.",
	}, []string{"result"})
	m.byDecision = map[string]prometheus.Observer{}
	// would_deny (permissive mode only) is created on first use.
	for _, d := range knownDecisions {
		m.byDecision[d] = m.latency.WithLabelValues(d)
	}
	for _, r := range []string{"ok", "failed"} {
		m.reloads.WithLabelValues(r)
		m.policyLoad.WithLabelValues(r)
	}
	m.SetLogins(nil)
	m.reg.MustRegister(m.decisions, m.latency, m.errors, m.logins, m.acquire, m.acquireErr, m.reloads, m.policyLoad,
		&sourceCollector{m: m},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// SetSources replaces what is read at scrape time.
func (m *Metrics) SetSources(s Sources) { m.sources.Store(&s) }

// SetDecisionLog registers the OPA-format decision log's counters: events
// dropped (the oldest of a full buffer) and failed uploads.
func (m *Metrics) SetDecisionLog(dropped, failures func() uint64) {
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "dbalproxy_decision_log_dropped_total",
			Help: "Decision-log events dropped: the oldest of a full buffer while the endpoint was slow or down, or left unsent at shutdown.",
		}, func() float64 { return float64(dropped()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "dbalproxy_decision_log_upload_failures_total",
			Help: "Failed decision-log uploads (each retry counts).",
		}, func() float64 { return float64(failures()) }),
	)
}

// Registry is the registry holding every dbalproxy metric.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// ConfigReloaded counts a configuration reload.
func (m *Metrics) ConfigReloaded(err error) { m.reloads.WithLabelValues(result(err)).Inc() }

// PolicyReloaded counts a policy reload.
func (m *Metrics) PolicyReloaded(err error) { m.policyLoad.WithLabelValues(result(err)).Inc() }

func result(err error) string {
	if err != nil {
		return "failed"
	}
	return "ok"
}

// knownDecisions are the decisions whose series exist from the start.
var knownDecisions = []string{audit.DecisionAllow, audit.DecisionRewrite, audit.DecisionDeny}

// loginMetrics are one login label value's children of decisions and logins.
type loginMetrics struct {
	label      string
	decisions  map[string]prometheus.Counter // the knownDecisions
	ok, failed prometheus.Counter
}

// loginTable maps login names to their metrics; names not in it use other.
type loginTable struct {
	byName map[string]*loginMetrics
	names  []string // the labelled logins, in configuration order
	other  *loginMetrics
}

func (t *loginTable) get(name string) *loginMetrics {
	if lm, ok := t.byName[name]; ok {
		return lm
	}
	return t.other
}

func (m *Metrics) newLoginMetrics(label string) *loginMetrics {
	lm := &loginMetrics{label: label, decisions: map[string]prometheus.Counter{},
		ok: m.logins.WithLabelValues("ok", label), failed: m.logins.WithLabelValues("failed", label)}
	for _, d := range knownDecisions {
		lm.decisions[d] = m.decisions.WithLabelValues(d, label)
	}
	return lm
}

// SetLogins sets the logins that get their own login label value: the
// configured ones, called at start and on every reload. Past
// maxLoginLabels, and for any other name, records count as "other". The
// series of logins no longer listed are removed.
func (m *Metrics) SetLogins(names []string) {
	m.loginTabMu.Lock()
	defer m.loginTabMu.Unlock()
	old := m.loginTab.Load()
	t := &loginTable{byName: map[string]*loginMetrics{}}
	for _, n := range names {
		if len(t.names) == maxLoginLabels {
			break
		}
		if n == otherLogin || t.byName[n] != nil {
			continue // "other" stays the shared value
		}
		if old != nil && old.byName[n] != nil {
			t.byName[n] = old.byName[n]
		} else {
			t.byName[n] = m.newLoginMetrics(n)
		}
		t.names = append(t.names, n)
	}
	if old != nil {
		t.other = old.other
		for n := range old.byName {
			if t.byName[n] == nil {
				m.decisions.DeletePartialMatch(prometheus.Labels{"login": n})
				m.logins.DeletePartialMatch(prometheus.Labels{"login": n})
			}
		}
	} else {
		t.other = m.newLoginMetrics(otherLogin)
	}
	m.loginTab.Store(t)
}

// observe updates the metrics from one audit record.
func (m *Metrics) observe(r *audit.Record) {
	lm := m.loginTab.Load().get(r.User)
	switch r.Event {
	case audit.EventLogin:
		if r.Success {
			lm.ok.Inc()
		} else {
			lm.failed.Inc()
		}
	default:
		if c, ok := lm.decisions[r.Decision]; ok {
			c.Inc()
			m.byDecision[r.Decision].Observe(r.DurationMS / 1000)
		} else if r.Decision != "" {
			m.decisions.WithLabelValues(r.Decision, lm.label).Inc()
			m.latency.WithLabelValues(r.Decision).Observe(r.DurationMS / 1000)
		}
	}
	if r.SQLState != "" {
		m.errors.WithLabelValues(m.codeLabel(r.SQLState)).Inc()
	}
}

// codeLabel returns code if it looks like a SQLSTATE and the label set has
// room, else "other".
func (m *Metrics) codeLabel(code string) string {
	if len(code) != 5 {
		return "other"
	}
	for i := 0; i < 5; i++ {
		if c := code[i]; !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z') {
			return "other"
		}
	}
	m.codesMu.Lock()
	defer m.codesMu.Unlock()
	if !m.codes[code] {
		if len(m.codes) >= maxSQLStates {
			return "other"
		}
		m.codes[code] = true
	}
	return code
}

// Sink receives audit records; *audit.Logger implements it.
type Sink interface {
	Log(r *audit.Record)
}

// Auditor counts every record it is given and passes it on to its sink. The
// sink can be swapped while sessions log (a reload of the audit settings).
type Auditor struct {
	m    *Metrics
	sink atomic.Pointer[sinkBox]
}

type sinkBox struct{ s Sink }

// Auditor returns an Auditor that feeds m and then sink (which may be nil:
// records are only counted).
func (m *Metrics) Auditor(sink Sink) *Auditor {
	a := &Auditor{m: m}
	a.Swap(sink)
	return a
}

// Log implements Sink (and the server's wire.Auditor, which has the same
// method).
func (a *Auditor) Log(r *audit.Record) {
	if r == nil {
		return
	}
	a.m.observe(r)
	if b := a.sink.Load(); b.s != nil {
		b.s.Log(r)
	}
}

// Swap makes sink the destination of later records and returns the previous one.
func (a *Auditor) Swap(sink Sink) Sink {
	old := a.sink.Swap(&sinkBox{s: sink})
	if old == nil {
		return nil
	}
	return old.s
}

// BackendPool is what Backends wraps: the server's backend connections by
// database. *pool.Pool implements it, and so does the wrapper, Backends,
// which the server takes as its wire.Backends.
type BackendPool interface {
	// Acquire returns a connection to database, waiting as ctx allows.
	Acquire(ctx context.Context, database string) (*pool.Conn, error)
	// TryAcquire returns an idle connection to database without waiting,
	// or nil.
	TryAcquire(database string) *pool.Conn
	// Release takes back a connection left idle, resetting its session.
	Release(c *pool.Conn)
	// Put takes back a connection left idle without resetting it
	// (transaction pooling).
	Put(c *pool.Conn)
	// Destroy closes a connection in an unknown state.
	Destroy(c *pool.Conn)
}

// Backends times Acquire and TryAcquire on the wrapped backends; Release,
// Put and Destroy pass through.
type Backends struct {
	BackendPool
	m *Metrics
}

// Backends wraps b so that every Acquire is timed and its failures counted.
func (m *Metrics) Backends(b BackendPool) *Backends { return &Backends{BackendPool: b, m: m} }

// Acquire implements BackendPool.
func (b *Backends) Acquire(ctx context.Context, database string) (*pool.Conn, error) {
	start := time.Now()
	c, err := b.BackendPool.Acquire(ctx, database)
	b.m.acquire.Observe(time.Since(start).Seconds())
	if err != nil {
		code := "08006"
		var ss interface{ SQLState() string }
		if errors.As(err, &ss) {
			code = ss.SQLState()
		}
		b.m.acquireErr.WithLabelValues(b.m.codeLabel(code)).Inc()
	}
	return c, err
}

// TryAcquire returns an idle connection without waiting (see
// pool.Pool.TryAcquire), counted like an Acquire that took no time; nil when
// there is none.
func (b *Backends) TryAcquire(database string) *pool.Conn {
	c := b.BackendPool.TryAcquire(database)
	if c != nil {
		b.m.acquire.Observe(0)
	}
	return c
}
