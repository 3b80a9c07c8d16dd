package wire_test

import (
	"context"
	"net"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/audit"
	"github.com/dbalproxy/dbalproxy/catalog"
	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/dbalproxy/dbalproxy/parser"
	"github.com/dbalproxy/dbalproxy/planner"
	"github.com/dbalproxy/dbalproxy/policy"
	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/rewrite"
	"github.com/dbalproxy/dbalproxy/testenv"
	"github.com/dbalproxy/dbalproxy/wire"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"
)

func TestMain(m *testing.M) {
	code := testenv.RunMain(m)
	if nodeDir != "" {
		os.RemoveAll(nodeDir)
	}
	os.Exit(code)
}

// testLogins are the seed's four roles; each password is the login name.
var testLogins = map[string]string{"alice": "user", "bob": "admin", "carol": "god", "dave": "supergod"}

// proxy is a dbalproxy server running in the test process in front of a
// fresh database of the shared cluster.
type proxy struct {
	Addr     string // host:port of the proxy
	DB       string // the database's name
	DirectDB string // URL of the same database, straight to PostgreSQL (app user)
	Server   *wire.Server
	Pool     *pool.Pool
	Cluster  *testenv.Cluster
}

// proxyOption adjusts the configuration before the proxy starts.
type proxyOption func(*wire.Config, *pool.Config)

// startProxy starts a proxy on a free loopback port in front of a new
// database, and stops it at the end of the test.
func startProxy(t testing.TB, opts ...proxyOption) *proxy {
	t.Helper()
	c := testenv.Shared(t)
	db := testenv.NewDatabase(t)
	logins := wire.Logins{}
	for name, role := range testLogins {
		sc, err := wire.NewSCRAMCredentials(name)
		if err != nil {
			t.Fatal(err)
		}
		logins[name] = &wire.Login{Name: name, Role: role, Claims: map[string]any{"user_id": "u_" + name}, SCRAM: sc}
	}
	pcfg := pool.Config{ConnString: c.AppURL(db), MaxConns: 20, AcquireTimeout: 5 * time.Second}
	wcfg := wire.Config{Logins: logins, DefaultDatabase: db, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)}
	// DBALPROXY_TEST_POOL_MODE=transaction runs the suite in transaction pooling.
	wcfg.TransactionPooling = os.Getenv("DBALPROXY_TEST_POOL_MODE") == "transaction"
	for _, o := range opts {
		o(&wcfg, &pcfg)
	}
	p, err := pool.New(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	wcfg.Backends = p
	srv, err := wire.NewServer(wcfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
		p.Close()
	})
	return &proxy{Addr: ln.Addr().String(), DB: db, DirectDB: c.AppURL(db), Server: srv, Pool: p, Cluster: c}
}

// URL is a connection URL for a login through the proxy (password = name).
func (p *proxy) URL(login string) string {
	return p.URLWithPassword(login, login)
}

// URLWithPassword is URL with an explicit password.
func (p *proxy) URLWithPassword(login, password string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(login, password), Host: p.Addr, Path: "/" + p.DB, RawQuery: "sslmode=disable"}
	return u.String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// auditSink collects audit records in memory for assertions.
type auditSink struct {
	mu   sync.Mutex
	recs []audit.Record
}

// Log implements wire.Auditor.
func (a *auditSink) Log(r *audit.Record) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := *r
	c.Tables = append([]string(nil), r.Tables...)
	a.recs = append(a.recs, c)
}

// Records returns a copy of what was logged so far.
func (a *auditSink) Records() []audit.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]audit.Record(nil), a.recs...)
}

// policyEngine loads a policy directory (the shipped ../policies by default)
// in the given mode.
func policyEngine(t testing.TB, dir string, mode decision.Mode) *policy.Engine {
	t.Helper()
	if dir == "" {
		dir = "../policies"
	}
	e, err := policy.New(policy.Options{Dir: dir, Mode: mode, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// withPolicy makes the proxy decide every statement with engine and record
// audit records in sink (which may be nil).
func withPolicy(t testing.TB, engine planner.PolicyEngine, sink *auditSink) proxyOption {
	t.Helper()
	return func(w *wire.Config, pc *pool.Config) {
		// Functions resolve in the test database's catalog, as in serve.
		cat := catalog.NewCache(catalog.CacheConfig{Connector: connectorFunc(func(ctx context.Context, _ string) (*pgconn.PgConn, error) {
			return pgconn.Connect(ctx, pc.ConnString)
		})})
		pln, err := planner.New(planner.Config{Parser: parser.New(parser.Options{}), Policy: engine, Rewriter: rewrite.NewRewriter(0), Catalog: cat})
		if err != nil {
			t.Fatal(err)
		}
		w.Decider, w.Parser = pln, pln.Parser() // as serve does
		if sink != nil {
			w.Auditor = sink
		}
	}
}

// connectorFunc is a catalog.Connector.
type connectorFunc func(ctx context.Context, database string) (*pgconn.PgConn, error)

func (f connectorFunc) Connect(ctx context.Context, database string) (*pgconn.PgConn, error) {
	return f(ctx, database)
}

// loadDemo loads the demo schema into the proxy's database directly.
func (p *proxy) loadDemo(t testing.TB) {
	t.Helper()
	if err := testenv.LoadDemo(ctxT(t, 30*time.Second), p.DirectDB); err != nil {
		t.Fatal(err)
	}
}
