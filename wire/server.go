package wire

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/rs/zerolog"
)

// Backends hands out backend connections; *pool.Pool implements it.
type Backends interface {
	Acquire(ctx context.Context, database string) (*pool.Conn, error)
	// TryAcquire returns an idle connection without waiting, or nil (the
	// caller then uses Acquire). Transaction pooling leases with it first,
	// needing no context or timer in the common case.
	TryAcquire(database string) *pool.Conn
	// Release takes back a connection left idle at a ReadyForQuery
	// boundary, reset (session pooling: the next client starts clean).
	Release(c *pool.Conn)
	// Put takes back a connection left idle outside a transaction without
	// a reset (transaction pooling: the client's prepared statements and
	// parameters stay for its next lease).
	Put(c *pool.Conn)
	// Destroy closes a connection in an unknown state.
	Destroy(c *pool.Conn)
}

// Auth methods for Config.AuthMethod.
const (
	AuthSCRAM = "scram-sha-256"
	AuthTrust = "trust"
)

// Config configures a Server. Zero values take the defaults named on each field.
type Config struct {
	// Logins are the identities clients log in as. Required.
	Logins LoginSource
	// AuthMethod is AuthSCRAM (the default) or AuthTrust. Trust accepts any
	// configured login without a password and must be chosen explicitly.
	AuthMethod string
	// TLS, when set, answers SSLRequest with 'S' and this configuration.
	// Without it SSLRequest is answered 'N'.
	TLS *tls.Config
	// RequireTLS refuses clients that did not negotiate TLS.
	RequireTLS bool
	// TokenTransport says where signed tokens (token logins and end-user
	// switches) are accepted: TokenOverTLS (the default), TokenOverTLSOrLoopback
	// or TokenOverAny.
	TokenTransport string
	// Backends provides backend connections. Required.
	Backends Backends
	// DefaultDatabase is used when the client names none and no database of the
	// login's name is allowed. Required.
	DefaultDatabase string
	// Databases lists the database names clients may ask for; "*" allows any
	// database the backend role can reach. Empty means DefaultDatabase only.
	Databases []string
	// StartupTimeout bounds everything before the first ReadyForQuery: TLS,
	// the startup packet, authentication and the backend connection. Zero
	// means 15s.
	StartupTimeout time.Duration
	// MaxMessageSize is the largest message a client may send, in bytes;
	// CopyData is streamed and exempt. Zero means 64 MiB.
	MaxMessageSize int
	// MaxClientConns limits open client connections; zero means 10000.
	// SetLimits changes it on a running server.
	MaxClientConns int
	// TransactionPooling leases a backend connection per transaction
	// instead of per session (see txmode.go); Backends should then be a
	// *pool.Pool, whose Put takes connections back without a reset.
	TransactionPooling bool
	// MaxLoginConns limits the open sessions of each login; zero means no
	// limit per login. LoginMaxConns overrides it for named logins.
	MaxLoginConns int
	// LoginMaxConns is the session limit of individual logins (name to
	// limit); a login not named takes MaxLoginConns. A negative value means
	// no limit for that login.
	LoginMaxConns map[string]int
	// PeerID identifies this proxy among several behind one load balancer
	// (1 to 127; 0 means no peering). It is put in the top bits of every
	// cancel key this server hands out, so that a CancelRequest that reaches
	// another instance can be sent on to the one that knows the key.
	PeerID int
	// Peers maps peer ids to the client-facing addresses (host:port) of the
	// other proxy instances. A CancelRequest whose key carries another
	// peer's id is forwarded there, once.
	Peers map[int]string
	// Decider decides every statement. Nil relays statements unchecked: a
	// transparent proxy.
	Decider Decider
	// Parser classifies statements for transaction pooling (which ones
	// leave session state on the backend). Give it the planner's parser,
	// so a text is parsed once; nil uses a parser of its own.
	Parser StatementParser
	// Auditor receives one record per statement and per login attempt. Nil
	// records nothing.
	Auditor Auditor
	// Logger receives one line per connection event; sessions log through
	// child loggers carrying session_id.
	Logger zerolog.Logger
	// Console, when set, serves clients that log in to its database
	// (see wire/console.go). Nil: no admin console.
	Console Console
}

func (c *Config) setDefaults() error {
	if c.Logins == nil {
		return errors.New("wire: Config.Logins is required")
	}
	if c.Backends == nil {
		return errors.New("wire: Config.Backends is required")
	}
	if c.DefaultDatabase == "" {
		return errors.New("wire: Config.DefaultDatabase is required")
	}
	switch c.AuthMethod {
	case "":
		c.AuthMethod = AuthSCRAM
	case AuthSCRAM, AuthTrust:
	default:
		return fmt.Errorf("wire: unknown auth method %q (want %q or %q)", c.AuthMethod, AuthSCRAM, AuthTrust)
	}
	switch c.TokenTransport {
	case "":
		c.TokenTransport = TokenOverTLS
	case TokenOverTLS, TokenOverTLSOrLoopback, TokenOverAny:
	default:
		return fmt.Errorf("wire: unknown token transport %q (want %q, %q or %q)", c.TokenTransport,
			TokenOverTLS, TokenOverTLSOrLoopback, TokenOverAny)
	}
	if c.RequireTLS && c.TLS == nil {
		return errors.New("wire: RequireTLS needs a TLS configuration")
	}
	if c.StartupTimeout <= 0 {
		c.StartupTimeout = 15 * time.Second
	}
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = 64 << 20
	}
	if c.MaxClientConns <= 0 {
		c.MaxClientConns = 10000
	}
	if c.PeerID < 0 || c.PeerID > maxPeerID {
		return fmt.Errorf("wire: PeerID %d is out of range (0 to %d)", c.PeerID, maxPeerID)
	}
	return nil
}

// Server accepts client connections and runs one session per connection.
type Server struct {
	cfg        Config
	log        zerolog.Logger
	mockSecret []byte

	cancels cancelRegistry

	txOnce sync.Once
	tx     *txShared

	mu struct {
		sync.Mutex
		listeners map[net.Listener]struct{}
		sessions  map[*session]struct{}
		closing   bool
	}
	clients  atomic.Int64
	sessions sync.WaitGroup
	nextID   atomic.Uint64

	limits   atomic.Pointer[Limits]
	logins   loginCounts
	counters serverCounters
	draining atomic.Bool // Drain was called: idle sessions are closed
	forcing  atomic.Bool // Drain's deadline passed: every session is closed
}

// NewServer validates cfg and returns a Server ready to Serve.
func NewServer(cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, mockSecret: make([]byte, 32)}
	if _, err := rand.Read(s.mockSecret); err != nil {
		return nil, err
	}
	s.cancels.m = map[uint64]*session{}
	s.SetLimits(Limits{MaxClientConns: cfg.MaxClientConns, MaxLoginConns: cfg.MaxLoginConns, LoginMaxConns: cfg.LoginMaxConns})
	s.logins.m = map[string]int{}
	s.mu.listeners = map[net.Listener]struct{}{}
	s.mu.sessions = map[*session]struct{}{}
	return s, nil
}

// ErrServerClosed is returned by Serve after Close or Shutdown.
var ErrServerClosed = errors.New("wire: server closed")

// Serve accepts connections on ln until Close or Shutdown, running each
// session in its own goroutine. It always returns a non-nil error.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.mu.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.mu.listeners[ln] = struct{}{}
	s.mu.Unlock()
	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.mu.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// EMFILE and friends: back off rather than spin.
			s.log.Warn().Err(err).Msg("accept failed; backing off")
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
			continue
		}
		delay = 0
		s.startSession(conn, false)
	}
}

// ServeConn runs one client session on conn, as Serve does for each
// connection it accepts, and returns at once; the session closes conn when
// it ends. It lets another transport (the WebSocket and HTTP bridge) hand
// its connections to the same session code. secure says the transport
// already encrypts the connection (wss, https): the session then counts as
// TLS for RequireTLS and the token transport, and an SSLRequest on it is a
// protocol violation. After Close or Shutdown it closes conn and returns
// ErrServerClosed.
func (s *Server) ServeConn(conn net.Conn, secure bool) error {
	if !s.startSession(conn, secure) {
		return ErrServerClosed
	}
	return nil
}

func (s *Server) startSession(conn net.Conn, secure bool) bool {
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		_ = tc.SetKeepAlive(true)
	}
	sess := newSession(s, conn)
	sess.tls = secure
	s.mu.Lock()
	if s.mu.closing {
		s.mu.Unlock()
		conn.Close()
		return false
	}
	s.mu.sessions[sess] = struct{}{}
	s.sessions.Add(1)
	s.mu.Unlock()
	n := s.clients.Add(1)
	s.counters.accepted.Add(1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				// A bug in one session must not take the proxy down. run
				// recovers its own panics (recover.go); this is the last
				// resort, for a panic outside it or in its recovery.
				s.log.Error().Str("session_id", sess.id).Interface("panic", r).Str("stack", string(debug.Stack())).Msg("session panicked")
				sess.closeClient()
			}
			s.clients.Add(-1)
			s.mu.Lock()
			delete(s.mu.sessions, sess)
			s.mu.Unlock()
			s.sessions.Done()
		}()
		if limit := s.limits.Load().MaxClientConns; int(n) > limit {
			s.counters.rejectedTotal.Add(1)
			err := fatalf(CodeTooManyConnections, "too many client connections (limit %d)", limit)
			// Refused before its startup message: a login attempt of no
			// known user, audited as such.
			sess.auditLogin(nil, err)
			sess.refuse(err)
			return
		}
		sess.run()
	}()
	return true
}

// ClientConns is the number of open client connections.
func (s *Server) ClientConns() int { return int(s.clients.Load()) }

// Close stops accepting and closes every session at once.
func (s *Server) Close() error {
	s.stopAccepting()
	s.mu.Lock()
	sessions := make([]*session, 0, len(s.mu.sessions))
	for sess := range s.mu.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	for _, sess := range sessions {
		sess.terminate()
	}
	s.sessions.Wait()
	return nil
}

// Shutdown stops accepting, waits for sessions to end until ctx is done, and
// then closes the rest as Close does.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopAccepting()
	done := make(chan struct{})
	go func() { s.sessions.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return s.Close()
	}
}

func (s *Server) stopAccepting() {
	s.mu.Lock()
	s.mu.closing = true
	lns := slices.Collect(func(yield func(net.Listener) bool) {
		for ln := range s.mu.listeners {
			if !yield(ln) {
				return
			}
		}
	})
	clear(s.mu.listeners)
	s.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
}

// Limits are the connection limits a running server enforces; SetLimits
// replaces them (a configuration reload). Sessions already open are never
// closed because a limit was lowered.
type Limits struct {
	// MaxClientConns limits open client connections; zero means 10000.
	MaxClientConns int
	// MaxLoginConns limits the open sessions of each login; zero means none.
	MaxLoginConns int
	// LoginMaxConns overrides MaxLoginConns per login name; negative means
	// no limit for that login.
	LoginMaxConns map[string]int
}

// SetLimits replaces the server's connection limits. It is safe to call at
// any time; new connections see the new limits.
func (s *Server) SetLimits(l Limits) {
	if l.MaxClientConns <= 0 {
		l.MaxClientConns = 10000
	}
	l.LoginMaxConns = maps.Clone(l.LoginMaxConns)
	s.limits.Store(&l)
}

// loginLimit is the session limit of a login; zero or less means none.
func (l *Limits) loginLimit(name string) int {
	if n, ok := l.LoginMaxConns[name]; ok && n != 0 {
		return n
	}
	return l.MaxLoginConns
}

// loginCounts counts the open sessions per login.
type loginCounts struct {
	mu sync.Mutex
	m  map[string]int
}

// admitLogin counts a session of a login that authenticated (authErr nil)
// against the login's limit. Over the limit it returns 53300, as PostgreSQL
// does for a role's CONNECTION LIMIT; while the server drains, it returns
// 57P03, as PostgreSQL refuses connections during a shutdown. An authErr is
// returned as it is. Without an error, the caller must call release when the
// session ends. The refusal is the login's outcome in the audit record.
func (s *Server) admitLogin(login *Login, authErr error) (release func(), err error) {
	if authErr != nil {
		return nil, authErr
	}
	if s.draining.Load() {
		return nil, fatalf(CodeCannotConnectNow, "the database system is shutting down")
	}
	name := login.Name
	limit := s.limits.Load().loginLimit(name)
	s.logins.mu.Lock()
	if limit > 0 && s.logins.m[name] >= limit {
		s.logins.mu.Unlock()
		s.counters.rejectedLogin.Add(1)
		return nil, fatalf(CodeTooManyConnections, "too many connections for login %q", name)
	}
	s.logins.m[name]++
	s.logins.mu.Unlock()
	return func() {
		s.logins.mu.Lock()
		if s.logins.m[name]--; s.logins.m[name] <= 0 {
			delete(s.logins.m, name)
		}
		s.logins.mu.Unlock()
	}, nil
}

// drainPoll is how often Drain looks for sessions that became idle.
const drainPoll = 20 * time.Millisecond

// drainGrace is how long Drain waits, after its deadline, for sessions to
// take their 57P01 before it closes their sockets.
const drainGrace = time.Second

// errAdminShutdown is what a session closed by Drain is told, in
// PostgreSQL's words for a fast shutdown.
func errAdminShutdown() *Error {
	return fatalf(CodeAdminShutdown, "terminating connection due to administrator command")
}

// Drain shuts the server down gracefully: it stops accepting at once, closes
// each session as soon as it is idle (outside a transaction, nothing in
// flight) with FATAL 57P01, and lets sessions inside a transaction run until
// it ends. When ctx is done, the sessions still open are closed too (their
// transactions are rolled back) and Drain returns once every session has
// ended. It returns ctx's error if the deadline cut transactions short.
func (s *Server) Drain(ctx context.Context) error {
	s.draining.Store(true)
	s.stopAccepting()
	done := make(chan struct{})
	go func() { s.sessions.Wait(); close(done) }()
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	for {
		s.pokeSessions(false)
		select {
		case <-done:
			return nil
		case <-t.C:
			continue
		case <-ctx.Done():
		}
		break
	}
	s.forcing.Store(true)
	s.pokeSessions(true)
	grace := time.NewTimer(drainGrace)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		_ = s.Close()
	}
	return ctx.Err()
}

// Draining reports whether Drain was called.
func (s *Server) Draining() bool { return s.draining.Load() }

// pokeSessions wakes the message loop of every session that is idle (or of
// every session that reached its loop, with all) so that it closes itself
// with 57P01: a past read deadline on the client connection interrupts the
// loop's read, and drainWake decides there.
func (s *Server) pokeSessions(all bool) {
	s.mu.Lock()
	sessions := make([]*session, 0, len(s.mu.sessions))
	for sess := range s.mu.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	for _, sess := range sessions {
		// txStatus is set once the session is past startup (and its
		// connection no longer changes); before that there is nothing to poke.
		if st := sess.txStatus.Load(); st == 0 || !all && !sess.drainable() {
			continue
		}
		_ = sess.conn.SetReadDeadline(time.Unix(1, 0))
	}
}

// drainable reports whether the session may be closed now without cutting
// anything short: outside a transaction block, with no request in flight.
func (sess *session) drainable() bool {
	return sess.txStatus.Load() == 'I' && sess.reqs.pending() == 0
}

// drainWake is called by the message loop when reading the client failed.
// It reports whether the failure was a drain poke on a session that is busy
// after all (the loop should read again). For a session that may be closed,
// it sends FATAL 57P01 and returns false: the loop ends as for a timeout.
func (sess *session) drainWake(err error) (again bool) {
	killed := sess.killed.Load() // KillSession: see wire/console.go
	if !errors.Is(err, os.ErrDeadlineExceeded) || !sess.srv.draining.Load() && !killed {
		return false
	}
	if !sess.srv.forcing.Load() && !killed && !sess.drainable() {
		_ = sess.conn.SetReadDeadline(time.Time{})
		return true
	}
	sess.fatalFromLoop(errAdminShutdown())
	return false
}

// maxPeerID is the largest PeerID: the id takes the top 7 bits of the
// 31-bit cancel key process id.
const maxPeerID = 127

// peerShift is where the peer id sits in a random cancel key process id.
// Real process ids stay below it (Linux's pid_max is at most 2^22).
const peerShift = 24

// peerSecretShift is where the peer id sits in a cancel key's secret when
// the process id is a backend's real one.
const peerSecretShift = 25

// withPeerID puts a peer id into the top bits of a random 31-bit process id
// (unchanged when id is 0).
func withPeerID(pid uint32, id int) uint32 {
	if id <= 0 {
		return pid
	}
	return uint32(id)<<peerShift | pid&(1<<peerShift-1)
}

// peerTimeout bounds forwarding one cancel request to a peer.
const peerTimeout = 2 * time.Second

// forwardCancel sends a CancelRequest whose key belongs to another proxy
// instance on to that instance. It reports whether the key carried another
// peer's id (whether or not the forward succeeded). The peer checks the
// secret; it never forwards a key with its own id, so nothing loops.
func (s *Server) forwardCancel(pid uint32, secret []byte) bool {
	if s.cfg.PeerID == 0 {
		return false
	}
	id := int(pid >> peerShift)
	if id == 0 && len(secret) == 4 {
		// A backend's real process id: the peer id is in the secret.
		id = int(secret[0] >> (peerSecretShift - 24))
	}
	addr, ok := s.cfg.Peers[id]
	if id == 0 || id == s.cfg.PeerID || !ok || len(secret) != 4 {
		return false
	}
	buf, err := (&pgproto3.CancelRequest{ProcessID: pid, SecretKey: secret}).Encode(nil)
	if err != nil {
		return true
	}
	c, err := net.DialTimeout("tcp", addr, peerTimeout)
	if err != nil {
		s.log.Warn().Err(err).Int("peer_id", id).Msg("forwarding a cancel request to a peer failed")
		return true
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(peerTimeout))
	if _, err := c.Write(buf); err != nil {
		s.log.Warn().Err(err).Int("peer_id", id).Msg("forwarding a cancel request to a peer failed")
		return true
	}
	// PostgreSQL closes a cancel connection without answering; wait for
	// that, so the cancel is delivered before the client's own connection
	// ends.
	_, _ = c.Read(make([]byte, 1))
	s.log.Debug().Int("peer_id", id).Msg("cancel request forwarded to its peer")
	return true
}
