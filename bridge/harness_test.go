package bridge_test

import (
	"context"
	"net"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/audit"
	"github.com/dbalproxy/dbalproxy/bridge"
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
	for _, dir := range nodeTmp {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// testLogins are the demo's four roles; each password is the login name.
var testLogins = map[string]string{"alice": "user", "bob": "admin", "carol": "god", "dave": "supergod"}

// proxy is a wire server with the shipped policies in front of a fresh
// demo database, listening on TCP and, through the bridge, for WebSocket
// and HTTP.
type proxy struct {
	TCPAddr, WSAddr string
	DB              string
	Server          *wire.Server
	Bridge          *bridge.Bridge
	Audit           *auditSink
}

type option func(*wire.Config, *pool.Config, *bridge.Config)

func startProxy(t testing.TB, opts ...option) *proxy {
	t.Helper()
	c := testenv.Shared(t)
	db := testenv.NewDatabase(t)
	if err := testenv.LoadDemo(ctxT(t, 30*time.Second), c.AppURL(db)); err != nil {
		t.Fatal(err)
	}
	logins := wire.Logins{}
	for name, role := range testLogins {
		sc, err := wire.NewSCRAMCredentials(name)
		if err != nil {
			t.Fatal(err)
		}
		logins[name] = &wire.Login{Name: name, Role: role, Claims: map[string]any{"user_id": "u_" + name}, SCRAM: sc}
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	pcfg := pool.Config{ConnString: c.AppURL(db), MaxConns: 20, AcquireTimeout: 5 * time.Second}
	engine, err := policy.New(policy.Options{Dir: "../policies", Mode: decision.ModeStrict, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cat := catalog.NewCache(catalog.CacheConfig{Connector: connectorFunc(func(ctx context.Context, _ string) (*pgconn.PgConn, error) {
		return pgconn.Connect(ctx, pcfg.ConnString)
	})})
	pln, err := planner.New(planner.Config{Parser: parser.New(parser.Options{}), Policy: engine, Rewriter: rewrite.NewRewriter(0), Catalog: cat})
	if err != nil {
		t.Fatal(err)
	}
	sink := &auditSink{}
	wcfg := wire.Config{Logins: logins, DefaultDatabase: db, Logger: log, Decider: pln, Parser: pln.Parser(), Auditor: sink}
	wcfg.TransactionPooling = os.Getenv("DBALPROXY_TEST_POOL_MODE") == "transaction"
	bcfg := bridge.Config{Logger: log}
	for _, o := range opts {
		o(&wcfg, &pcfg, &bcfg)
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
	bcfg.Server = srv
	br, err := bridge.New(bcfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	go func() { _ = srv.Serve(ln); done <- struct{}{} }()
	go func() { _ = br.Serve(wln); done <- struct{}{} }()
	t.Cleanup(func() {
		_ = br.Close()
		_ = srv.Close()
		<-done
		<-done
		p.Close()
	})
	return &proxy{TCPAddr: ln.Addr().String(), WSAddr: wln.Addr().String(), DB: db, Server: srv, Bridge: br, Audit: sink}
}

// URL is a connection URL of a login (password = name) for the given
// host:port.
func (p *proxy) URL(addr, login string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(login, login), Host: addr, Path: "/" + p.DB, RawQuery: "sslmode=disable"}
	return u.String()
}

type connectorFunc func(ctx context.Context, database string) (*pgconn.PgConn, error)

func (f connectorFunc) Connect(ctx context.Context, database string) (*pgconn.PgConn, error) {
	return f(ctx, database)
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// auditSink collects audit records.
type auditSink struct {
	mu  sync.Mutex
	got []audit.Record
}

// Log implements wire.Auditor.
func (a *auditSink) Log(r *audit.Record) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got = append(a.got, *r)
}

// Records returns a copy of what was logged so far.
func (a *auditSink) Records() []audit.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]audit.Record(nil), a.got...)
}
