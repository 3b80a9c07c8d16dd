package wire

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/rs/zerolog"
)

// Backends hands out backend connections; *pool.Pool implements it.
type Backends interface {
	Acquire(ctx context.Context, database string) (*pool.Conn, error)
	// Release takes back a connection left idle at a ReadyForQuery boundary.
	Release(c *pool.Conn)
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
	MaxClientConns int
	// TransactionPooling leases a backend connection per transaction
	// instead of per session (see txmode.go); Backends should then be a
	// *pool.Pool, whose Put takes connections back without a reset.
	TransactionPooling bool
	// Decider decides every statement. Nil relays statements unchecked: a
	// transparent proxy.
	Decider Decider
	// Auditor receives one record per statement and per login attempt. Nil
	// records nothing.
	Auditor Auditor
	// Logger receives one line per connection event; sessions log through
	// child loggers carrying session_id.
	Logger zerolog.Logger
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
	s.cancels.m = map[uint32]*session{}
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
		s.startSession(conn)
	}
}

func (s *Server) startSession(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		_ = tc.SetKeepAlive(true)
	}
	sess := newSession(s, conn)
	s.mu.Lock()
	if s.mu.closing {
		s.mu.Unlock()
		conn.Close()
		return
	}
	s.mu.sessions[sess] = struct{}{}
	s.sessions.Add(1)
	s.mu.Unlock()
	n := s.clients.Add(1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				// A bug in one session must not take the proxy down.
				s.log.Error().Str("session_id", sess.id).Interface("panic", r).Bytes("stack", debug.Stack()).Msg("session panicked")
				sess.closeClient()
			}
			s.clients.Add(-1)
			s.mu.Lock()
			delete(s.mu.sessions, sess)
			s.mu.Unlock()
			s.sessions.Done()
		}()
		if int(n) > s.cfg.MaxClientConns {
			sess.refuse(fatalf(CodeTooManyConnections, "too many client connections (limit %d)", s.cfg.MaxClientConns))
			return
		}
		sess.run()
	}()
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
