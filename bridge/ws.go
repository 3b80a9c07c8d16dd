package bridge

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// serveWebSocket accepts the upgrade and runs the connection until either
// side ends it. The driver opens wss://HOST/v2 (its default wsProxy) or
// ws[s]://PROXY?address=HOST:PORT (a string wsProxy); the path and the
// address are not used: the proxy serves its own backend only. No
// sub-protocol is negotiated; every frame is binary PostgreSQL protocol.
func (b *Bridge) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	if !b.originAllowed(r) {
		b.cfg.Logger.Warn().Str("client_addr", r.RemoteAddr).Str("origin", r.Header.Get("Origin")).Msg("websocket refused: origin not allowed")
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		// originAllowed checked the origin, with the same rules.
		InsecureSkipVerify: true,
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		b.cfg.Logger.Debug().Err(err).Str("client_addr", r.RemoteAddr).Msg("websocket upgrade failed")
		return // Accept has answered
	}
	b.conns.Add(1)
	defer b.conns.Done()
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	nc := websocket.NetConn(ctx, c, websocket.MessageBinary)
	c.SetReadLimit(b.cfg.MaxFrameSize) // after NetConn, which lifts the limit
	client := newIdleConn(nc, b.cfg.IdleTimeout, cancel)
	defer client.Close()

	remote := remoteAddr(r)
	secure := r.TLS != nil
	// The session gets one end of an in-memory pipe rather than the
	// WebSocket itself: it relies on deadlines that interrupt a read and
	// leave the connection usable (a drain pokes idle sessions so), where a
	// deadline closes a WebSocket net.Conn; and the startup relay below sits
	// between the two.
	toSession, sessionEnd := net.Pipe()
	defer toSession.Close()
	if err := b.cfg.Server.ServeConn(&addrConn{Conn: sessionEnd, remote: remote, local: localAddr(r)}, secure); err != nil {
		return
	}
	cr := bufio.NewReaderSize(client, 16<<10)
	if err := relayStartup(cr, client, toSession, secure || isLoopback(remote)); err != nil {
		return
	}
	splice(cr, client, toSession)
}

// splice copies both ways until one side ends, then closes both.
func splice(cr *bufio.Reader, client net.Conn, session net.Conn) {
	var once sync.Once
	done := make(chan struct{})
	stop := func() {
		once.Do(func() {
			client.Close()
			session.Close()
			close(done)
		})
	}
	go func() {
		_, _ = io.Copy(session, cr)
		stop()
	}()
	_, _ = io.Copy(client, session)
	stop()
	<-done
}

// idleConn closes its connection (through onIdle) when no Read or Write
// completed for the idle timeout.
type idleConn struct {
	net.Conn
	idle  time.Duration
	timer *time.Timer
}

func newIdleConn(c net.Conn, idle time.Duration, onIdle func()) *idleConn {
	return &idleConn{Conn: c, idle: idle, timer: time.AfterFunc(idle, onIdle)}
}

func (c *idleConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.timer.Reset(c.idle)
	}
	return n, err
}

func (c *idleConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.timer.Reset(c.idle)
	}
	return n, err
}

func (c *idleConn) Close() error {
	c.timer.Stop()
	return c.Conn.Close()
}

// addrConn reports the HTTP client's addresses for an in-memory
// connection, so that sessions log, audit and judge loopback by the real
// peer.
type addrConn struct {
	net.Conn
	remote, local net.Addr
}

func (c *addrConn) RemoteAddr() net.Addr { return c.remote }
func (c *addrConn) LocalAddr() net.Addr  { return c.local }

func remoteAddr(r *http.Request) net.Addr {
	if a, err := net.ResolveTCPAddr("tcp", r.RemoteAddr); err == nil {
		return a
	}
	return &net.TCPAddr{}
}

func localAddr(r *http.Request) net.Addr {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		return a
	}
	return &net.TCPAddr{}
}

func isLoopback(a net.Addr) bool {
	t, ok := a.(*net.TCPAddr)
	return ok && t.IP.IsLoopback()
}

var errStartup = errors.New("bridge: bad startup")
