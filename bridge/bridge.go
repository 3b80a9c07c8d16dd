// Package bridge serves PostgreSQL to clients that cannot open TCP sockets
// (browsers, Cloudflare Workers, Vercel Edge, Deno Deploy) the way the
// @neondatabase/serverless driver and @prisma/adapter-neon reach a database:
//
//   - PostgreSQL over WebSocket: the driver's Pool and Client send the
//     ordinary protocol in binary frames. Each WebSocket becomes a net.Conn
//     handed to the protocol server's ServeConn, so it runs the very session
//     code of a TCP client: logins, policies, rewrites, limits, pooling,
//     audit.
//   - SQL over HTTP: the driver's neon() function POSTs one query (or a
//     batch to run in one transaction) as JSON to /sql. Each request opens a
//     short in-memory session into the same wire server, drives it as a
//     client with pgconn, and converts the results to the driver's JSON.
//
// Nothing here decides, rewrites or audits statements: the sessions do, as
// for TCP. The bridge reaches the protocol server only through the Server
// interface (which *wire.Server implements); it does not import package
// wire, and cmd/dbalproxy connects the two.
package bridge

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Server runs client sessions on connections another transport accepted;
// *wire.Server implements it.
type Server interface {
	// ServeConn runs one client session on conn and returns at once; the
	// session closes conn when it ends. secure says the transport already
	// encrypts the connection (wss, https). After the server is closed it
	// closes conn and returns an error.
	ServeConn(conn net.Conn, secure bool) error
}

// Config configures a Bridge. Zero values take the defaults named on each
// field.
type Config struct {
	// Server runs the sessions. Required.
	Server Server
	// TLS, when set, serves wss and https with these certificates (the TCP
	// listener's). Without it the listener speaks ws and http.
	TLS *tls.Config
	// AllowedOrigins are the browser origins allowed besides the request's
	// own host: host patterns ("app.example.com", "*.example.com") or, with
	// a scheme, "https://app.example.com" (matched with path.Match, case
	// insensitively). A request without an Origin header (a server-side
	// client) is always allowed.
	AllowedOrigins []string
	// MaxFrameSize is the largest WebSocket message a client may send, in
	// bytes; a bigger one closes the connection. Zero means 16 MiB. Messages
	// are streamed, not buffered whole, and the driver may put several
	// PostgreSQL messages in one; the session's own message limit still
	// applies to each.
	MaxFrameSize int64
	// MaxBodySize is the largest HTTP request body, in bytes. Zero means
	// 1 MiB.
	MaxBodySize int64
	// MaxResponseSize is the largest HTTP response body, in bytes; a result
	// beyond it fails with 54000. Zero means 64 MiB.
	MaxResponseSize int
	// IdleTimeout closes a WebSocket that carried no frame either way for
	// this long. Zero means one hour.
	IdleTimeout time.Duration
	// RequestTimeout bounds one HTTP request, login included; a query still
	// running then is cancelled (57014). Zero means 30 seconds.
	RequestTimeout time.Duration
	// DisableHTTP turns off the SQL-over-HTTP endpoint (POST /sql).
	DisableHTTP bool
	// Logger receives one line per refused upgrade or request; never a
	// password or a connection string.
	Logger zerolog.Logger
}

// Bridge is an http.Handler for WebSocket upgrades (any path, e.g. the
// driver's /v2) and POST /sql.
type Bridge struct {
	cfg    Config
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	servers map[*http.Server]struct{}
	conns   sync.WaitGroup
}

// New validates cfg and returns a Bridge.
func New(cfg Config) (*Bridge, error) {
	if cfg.Server == nil {
		return nil, errors.New("bridge: Config.Server is required")
	}
	for _, p := range cfg.AllowedOrigins {
		if _, err := path.Match(p, ""); err != nil {
			return nil, errors.New("bridge: bad allowed origin pattern " + p)
		}
	}
	if cfg.MaxFrameSize <= 0 {
		cfg.MaxFrameSize = 16 << 20
	}
	if cfg.MaxBodySize <= 0 {
		cfg.MaxBodySize = 1 << 20
	}
	if cfg.MaxResponseSize <= 0 {
		cfg.MaxResponseSize = 64 << 20
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = time.Hour
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	b := &Bridge{cfg: cfg, servers: map[*http.Server]struct{}{}}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b, nil
}

// ServeHTTP routes WebSocket upgrades and POST /sql.
func (b *Bridge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if isUpgrade(r) {
		b.serveWebSocket(w, r)
		return
	}
	if r.URL.Path == "/sql" && !b.cfg.DisableHTTP {
		b.serveSQL(w, r)
		return
	}
	http.NotFound(w, r)
}

func isUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// originAllowed reports whether a browser request's Origin may use the
// bridge: no Origin (not a browser), the request's own host, or a
// configured pattern.
func (b *Bridge) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, p := range b.cfg.AllowedOrigins {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(target)); ok {
			return true
		}
	}
	return false
}

// Serve accepts connections on ln (with TLS when configured) until
// Shutdown or Close. It always returns a non-nil error; after Shutdown it
// is http.ErrServerClosed.
func (b *Bridge) Serve(ln net.Listener) error {
	hs := &http.Server{
		Handler:           b,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return b.ctx },
	}
	b.mu.Lock()
	if b.ctx.Err() != nil {
		b.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	b.servers[hs] = struct{}{}
	b.mu.Unlock()
	if b.cfg.TLS != nil {
		tc := b.cfg.TLS.Clone()
		tc.NextProtos = []string{"http/1.1"} // WebSocket upgrades need HTTP/1.1
		ln = tls.NewListener(ln, tc)
	}
	return hs.Serve(ln)
}

// Shutdown stops accepting, waits for HTTP requests in flight until ctx is
// done, and then closes every WebSocket (their sessions end as when a TCP
// client goes away; the wire server's own Drain decides when).
func (b *Bridge) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	servers := make([]*http.Server, 0, len(b.servers))
	for hs := range b.servers {
		servers = append(servers, hs)
	}
	b.mu.Unlock()
	var first error
	for _, hs := range servers {
		if err := hs.Shutdown(ctx); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Close stops accepting and closes every connection at once.
func (b *Bridge) Close() error {
	b.cancel()
	b.mu.Lock()
	servers := make([]*http.Server, 0, len(b.servers))
	for hs := range b.servers {
		servers = append(servers, hs)
	}
	b.mu.Unlock()
	for _, hs := range servers {
		hs.Close()
	}
	b.conns.Wait()
	return nil
}
