package pool

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"
)

// ErrAcquireTimeout is returned by Acquire when no connection became free within
// Config.AcquireTimeout. Clients see it as SQLSTATE 53300.
var ErrAcquireTimeout error = &timeoutError{}

type timeoutError struct{}

func (*timeoutError) Error() string {
	return "pool: timed out waiting for a free backend connection"
}

// SQLState is 53300 (too_many_connections), as PgBouncer and PostgreSQL use it.
func (*timeoutError) SQLState() string { return "53300" }

// ClientMessage is the message a client sees.
func (*timeoutError) ClientMessage() string {
	return "timed out waiting for a free backend connection"
}

// ClientHint is the hint a client sees: what the proxy's operator can change.
func (*timeoutError) ClientHint() string {
	return "Every backend connection of the proxy's pool stayed in use: raise pool.max_conns or pool.acquire_timeout " +
		"in the proxy's configuration, or end the sessions that hold connections."
}

// ErrClosed is returned by Acquire after Close.
var ErrClosed = errors.New("pool: closed")

// Config configures a Pool. Zero values take the defaults named on each field.
type Config struct {
	// ConnString is the backend URL or keyword/value string with the proxy's own
	// credentials, as pgconn.ParseConfig reads it (sslmode, passfile and PG*
	// environment variables included). Its database is the default one; Acquire
	// may name another database on the same server. Required.
	ConnString string
	// User and Password, when User is set, replace the connection string's
	// credentials: a pool of one login's own backend role (wire.Login's
	// Backends) on the same server.
	User, Password string
	// MaxConns is the most backend connections per database. Zero means 20.
	MaxConns int
	// AcquireTimeout is how long Acquire waits for a free connection before it
	// returns ErrAcquireTimeout. Zero means 5s.
	AcquireTimeout time.Duration
	// DialTimeout bounds dialing and authenticating one backend connection. Zero
	// means 10s.
	DialTimeout time.Duration
	// ResetTimeout bounds the reset run on Release. Zero means 5s.
	ResetTimeout time.Duration
	// IdleTimeout closes connections idle for longer. Zero means 5m; negative
	// keeps them forever.
	IdleTimeout time.Duration
	// ResetQuery runs on every released connection. Empty means "DISCARD ALL".
	ResetQuery string
	// ApplicationName is reported to the backend for the proxy's connections
	// until a client sets its own. Empty (the default) sets none, so a client
	// that sends no application_name sees "" as it would with PostgreSQL.
	ApplicationName string
	// Logger receives connection lifecycle lines. The zero value logs nothing.
	Logger zerolog.Logger
}

func (c *Config) setDefaults() {
	if c.MaxConns <= 0 {
		c.MaxConns = 20
	}
	if c.AcquireTimeout <= 0 {
		c.AcquireTimeout = 5 * time.Second
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 10 * time.Second
	}
	if c.ResetTimeout <= 0 {
		c.ResetTimeout = 5 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 5 * time.Minute
	}
	if c.ResetQuery == "" {
		c.ResetQuery = "DISCARD ALL"
	}
}

// Stats is a snapshot of a pool's counters, summed over its databases.
type Stats struct {
	Open      int    // connections open now (idle + in use)
	Idle      int    // connections idle in the pool now
	Waiting   int64  // callers waiting in Acquire now
	Dials     uint64 // connections dialed since start
	DialFails uint64 // failed dials since start
	Timeouts  uint64 // Acquire calls that ended with ErrAcquireTimeout
	Destroyed uint64 // connections closed instead of reused
	Resets    uint64 // successful resets on Release
}

// Pool hands out backend connections per database. It is safe for concurrent use.
type Pool struct {
	cfg  Config
	base *pgconn.Config
	log  zerolog.Logger

	mu struct {
		sync.Mutex
		subs   map[string]*subPool
		closed bool
	}

	waiting   atomic.Int64
	dials     atomic.Uint64
	dialFails atomic.Uint64
	timeouts  atomic.Uint64
	destroyed atomic.Uint64
	resets    atomic.Uint64

	stop chan struct{}
	done chan struct{}
}

// subPool is the pool of one database.
type subPool struct {
	database string
	mu       struct {
		sync.Mutex
		open    int       // connections that exist or are being dialed
		idle    []*Conn   // LIFO: the most recently used connection is reused first
		waiters []*waiter // FIFO of callers blocked in Acquire
	}
}

// waiter is one caller blocked in Acquire. It receives either a connection
// handed over by Release or nil, which means "a place is free: dial one".
type waiter struct {
	ch chan *Conn // buffered 1
}

// New validates cfg and returns a pool. It dials nothing until the first Acquire.
func New(cfg Config) (*Pool, error) {
	cfg.setDefaults()
	if cfg.ConnString == "" {
		return nil, errors.New("pool: backend connection string is empty")
	}
	base, err := pgconn.ParseConfig(cfg.ConnString)
	if err != nil {
		// pgconn's parse errors can echo the connection string, password included.
		return nil, errors.New("pool: backend connection string is invalid (check its syntax and sslmode)")
	}
	if base.RuntimeParams == nil {
		base.RuntimeParams = map[string]string{}
	}
	if cfg.User != "" {
		base.User, base.Password = cfg.User, cfg.Password
	}
	if cfg.ApplicationName != "" {
		base.RuntimeParams["application_name"] = cfg.ApplicationName
	}
	p := &Pool{cfg: cfg, base: base, log: cfg.Logger, stop: make(chan struct{}), done: make(chan struct{})}
	p.mu.subs = map[string]*subPool{}
	go p.reapLoop()
	return p, nil
}

// DefaultDatabase is the database named in the connection string.
func (p *Pool) DefaultDatabase() string { return p.base.Database }

func (p *Pool) sub(database string) (*subPool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return nil, ErrClosed
	}
	s := p.mu.subs[database]
	if s == nil {
		s = &subPool{database: database}
		p.mu.subs[database] = s
	}
	return s, nil
}

// Acquire returns a connection to database that nobody else holds, dialing one
// if the pool has room. It waits up to Config.AcquireTimeout (or ctx) for room
// and then returns ErrAcquireTimeout. The caller must give the connection back
// with Release or Destroy.
func (p *Pool) Acquire(ctx context.Context, database string) (*Conn, error) {
	if database == "" {
		database = p.base.Database
	}
	s, err := p.sub(database)
	if err != nil {
		return nil, err
	}
	for {
		c, dial, w := s.take(p.cfg.MaxConns)
		if w != nil {
			c, dial, err = p.wait(ctx, s, w)
			if err != nil {
				return nil, err
			}
		}
		if dial {
			c, err = p.dial(ctx, s)
			if err != nil {
				p.free(s)
				return nil, err
			}
			return c, nil
		}
		if c.alive() {
			return c, nil
		}
		p.log.Debug().Str("database", database).Uint32("backend_pid", c.PID).Msg("idle backend connection is gone; replacing it")
		c.close()
		p.destroyed.Add(1)
		p.free(s)
	}
}

// TryAcquire returns an idle connection to database that is still alive,
// or nil when there is none (it neither dials nor waits). It is the cheap
// first try of a session that leases a connection per transaction.
func (p *Pool) TryAcquire(database string) *Conn {
	if database == "" {
		database = p.base.Database
	}
	s, err := p.sub(database)
	if err != nil {
		return nil
	}
	for {
		c := s.takeIdle()
		if c == nil {
			return nil
		}
		if c.alive() {
			return c
		}
		p.log.Debug().Str("database", database).Uint32("backend_pid", c.PID).Msg("idle backend connection is gone; replacing it")
		c.close()
		p.destroyed.Add(1)
		p.free(s)
	}
}

// takeIdle returns an idle connection, or nil.
func (s *subPool) takeIdle() *Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.mu.idle)
	if n == 0 {
		return nil
	}
	c := s.mu.idle[n-1]
	s.mu.idle[n-1] = nil
	s.mu.idle = s.mu.idle[:n-1]
	return c
}

// take returns an idle connection, or dial=true with a place reserved, or a
// waiter queued for the next free place.
func (s *subPool) take(max int) (c *Conn, dial bool, w *waiter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.mu.idle); n > 0 {
		c = s.mu.idle[n-1]
		s.mu.idle[n-1] = nil
		s.mu.idle = s.mu.idle[:n-1]
		return c, false, nil
	}
	if s.mu.open < max {
		s.mu.open++
		return nil, true, nil
	}
	w = &waiter{ch: make(chan *Conn, 1)}
	s.mu.waiters = append(s.mu.waiters, w)
	return nil, false, w
}

// wait blocks until w is served or the wait times out.
func (p *Pool) wait(ctx context.Context, s *subPool, w *waiter) (*Conn, bool, error) {
	p.waiting.Add(1)
	defer p.waiting.Add(-1)
	t := time.NewTimer(p.cfg.AcquireTimeout)
	defer t.Stop()
	var err error
	select {
	case c := <-w.ch:
		return c, c == nil, nil
	case <-t.C:
		err = ErrAcquireTimeout
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.mu.Lock()
	for i, x := range s.mu.waiters {
		if x == w {
			s.mu.waiters = append(s.mu.waiters[:i], s.mu.waiters[i+1:]...)
			s.mu.Unlock()
			if err == ErrAcquireTimeout {
				p.timeouts.Add(1)
			}
			return nil, false, err
		}
	}
	s.mu.Unlock()
	// Served between the timeout and the lock: take what we were given and
	// pass it on, so no place leaks.
	if c := <-w.ch; c != nil {
		p.putBack(s, c)
	} else {
		p.free(s)
	}
	if err == ErrAcquireTimeout {
		p.timeouts.Add(1)
	}
	return nil, false, err
}

// putBack hands an idle connection to the first waiter or keeps it.
func (p *Pool) putBack(s *subPool, c *Conn) {
	s.mu.Lock()
	if len(s.mu.waiters) > 0 {
		w := s.mu.waiters[0]
		s.mu.waiters = s.mu.waiters[1:]
		s.mu.Unlock()
		w.ch <- c
		return
	}
	s.mu.idle = append(s.mu.idle, c)
	s.mu.Unlock()
}

// free gives up one place: the first waiter may dial, else the count drops.
func (p *Pool) free(s *subPool) {
	s.mu.Lock()
	if len(s.mu.waiters) > 0 {
		w := s.mu.waiters[0]
		s.mu.waiters = s.mu.waiters[1:]
		s.mu.Unlock()
		w.ch <- nil
		return
	}
	s.mu.open--
	s.mu.Unlock()
}

func (p *Pool) dial(ctx context.Context, s *subPool) (*Conn, error) {
	cfg := p.base.Copy()
	cfg.Database = s.database
	ctx, cancel := context.WithTimeout(ctx, p.cfg.DialTimeout)
	defer cancel()
	p.dials.Add(1)
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		p.dialFails.Add(1)
		return nil, &DialError{Database: s.database, err: err}
	}
	// pgconn may still have its background reader running after connect:
	// it must have stopped, with nothing buffered, before we take the raw
	// socket, or it would keep reading the backend's answers.
	if err := pc.SyncConn(ctx); err != nil {
		pc.Close(context.Background())
		p.dialFails.Add(1)
		return nil, &DialError{Database: s.database, err: err}
	}
	hc, err := pc.Hijack()
	if err != nil {
		pc.Close(context.Background())
		p.dialFails.Add(1)
		return nil, &DialError{Database: s.database, err: err}
	}
	c := newConn(hc, s)
	p.log.Debug().Str("database", s.database).Uint32("backend_pid", c.PID).Msg("backend connection opened")
	return c, nil
}

// Release gives c back. The caller asserts that c is at a ReadyForQuery boundary
// with nothing outstanding; Release rolls back an open transaction, runs the
// reset query, and keeps c for reuse, or destroys it if any of that fails.
func (p *Pool) Release(c *Conn) {
	if c.broken {
		p.Destroy(c)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.ResetTimeout)
	defer cancel()
	if c.TxStatus != 'I' {
		if err := c.Exec(ctx, "ROLLBACK"); err != nil {
			p.Destroy(c)
			return
		}
	}
	if err := c.Exec(ctx, p.cfg.ResetQuery); err != nil || c.TxStatus != 'I' {
		p.log.Debug().Err(err).Uint32("backend_pid", c.PID).Msg("backend reset failed; closing the connection")
		p.Destroy(c)
		return
	}
	p.resets.Add(1)
	c.state = nil
	c.lastUsed = time.Now()
	p.mu.Lock()
	closed := p.mu.closed
	p.mu.Unlock()
	if closed {
		p.Destroy(c)
		return
	}
	p.putBack(c.sub, c)
}

// Put gives back a connection that the caller left idle at a ReadyForQuery
// boundary outside a transaction and without session state of its own
// (transaction pooling): it is kept as it is, with its State, and handed to
// the next caller without a reset. A connection that is broken, inside a
// transaction, or has unread bytes is destroyed instead.
func (p *Pool) Put(c *Conn) {
	if c.broken || c.TxStatus != 'I' || c.R.Buffered() > 0 || c.W.Buffered() > 0 {
		p.Destroy(c)
		return
	}
	c.lastUsed = time.Now()
	p.mu.Lock()
	closed := p.mu.closed
	p.mu.Unlock()
	if closed {
		p.Destroy(c)
		return
	}
	p.putBack(c.sub, c)
}

// Destroy closes c and frees its place in the pool.
func (p *Pool) Destroy(c *Conn) {
	c.close()
	p.destroyed.Add(1)
	p.free(c.sub)
}

// Stats returns the pool's counters.
func (p *Pool) Stats() Stats {
	st := Stats{
		Waiting:   p.waiting.Load(),
		Dials:     p.dials.Load(),
		DialFails: p.dialFails.Load(),
		Timeouts:  p.timeouts.Load(),
		Destroyed: p.destroyed.Load(),
		Resets:    p.resets.Load(),
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.mu.subs {
		s.mu.Lock()
		st.Open += s.mu.open
		st.Idle += len(s.mu.idle)
		s.mu.Unlock()
	}
	return st
}

// Close closes idle connections and makes later Acquires fail. Connections in
// use are closed when they are released.
func (p *Pool) Close() {
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		return
	}
	p.mu.closed = true
	subs := make([]*subPool, 0, len(p.mu.subs))
	for _, s := range p.mu.subs {
		subs = append(subs, s)
	}
	p.mu.Unlock()
	close(p.stop)
	<-p.done
	for _, s := range subs {
		s.mu.Lock()
		idle := s.mu.idle
		s.mu.idle = nil
		s.mu.Unlock()
		for _, c := range idle {
			c.close()
		}
		s.mu.Lock()
		s.mu.open -= len(idle)
		s.mu.Unlock()
	}
}

// reapLoop closes connections idle for longer than IdleTimeout.
func (p *Pool) reapLoop() {
	defer close(p.done)
	if p.cfg.IdleTimeout < 0 {
		<-p.stop
		return
	}
	every := min(p.cfg.IdleTimeout/2, 30*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			p.reap(now)
		}
	}
}

func (p *Pool) reap(now time.Time) {
	p.mu.Lock()
	subs := make([]*subPool, 0, len(p.mu.subs))
	for _, s := range p.mu.subs {
		subs = append(subs, s)
	}
	p.mu.Unlock()
	for _, s := range subs {
		var old []*Conn
		s.mu.Lock()
		keep := s.mu.idle[:0]
		for _, c := range s.mu.idle {
			if now.Sub(c.lastUsed) > p.cfg.IdleTimeout {
				old = append(old, c)
			} else {
				keep = append(keep, c)
			}
		}
		clear(s.mu.idle[len(keep):])
		s.mu.idle = keep
		s.mu.Unlock()
		for _, c := range old {
			c.close()
			p.destroyed.Add(1)
			p.free(s)
		}
	}
}

// DialError is a failure to open a backend connection. Its PgError, when the
// server answered with one, says why (for example 3D000 for a database that
// does not exist, or 57P03 while the server starts).
type DialError struct {
	Database string
	err      error
}

func (e *DialError) Error() string {
	return fmt.Sprintf("pool: cannot connect to backend database %q: %v", e.Database, e.err)
}

func (e *DialError) Unwrap() error { return e.err }

// SQLState is what a client is told about the failure (see ClientMessage).
func (e *DialError) SQLState() string {
	code, _ := e.clientView()
	return code
}

// ClientMessage is the message a client may see. It never names the
// backend role, host or port, and never passes on a refusal of the proxy's
// own credentials (a wrong or rotated password, a pg_hba.conf rule, a
// missing CONNECT privilege) as an authentication error: that is the
// operator's problem, and the proxy's log has the server's own words.
func (e *DialError) ClientMessage() string {
	_, msg := e.clientView()
	return msg
}

// msgCannotConnect is the client's message for every dial failure that is
// not the client's to know about.
const msgCannotConnect = "the proxy cannot connect to the database server"

// clientView maps the server's refusal to what a client may see. Only
// refusals about the database the client asked for, or about the server's
// state, keep their SQLSTATE, with the proxy's own message; everything
// else, a failure without a server error included, is 08006
// connection_failure.
func (e *DialError) clientView() (code, msg string) {
	pe := e.PgError()
	if pe == nil {
		return "08006", msgCannotConnect
	}
	switch pe.Code {
	case "3D000": // invalid_catalog_name: the database the client named
		return pe.Code, `database "` + e.Database + `" does not exist`
	case "55000": // object_not_in_prerequisite_state: datallowconn is off
		return pe.Code, `database "` + e.Database + `" is not currently accepting connections`
	case "57P03": // cannot_connect_now: starting up, shutting down, in recovery
		if strings.HasPrefix(pe.Message, "the database system is ") && !strings.ContainsAny(pe.Message, `"'`) {
			return pe.Code, pe.Message
		}
		return pe.Code, "the database system is not accepting connections"
	case "53300": // too_many_connections: max_connections, or the role's or database's limit
		return pe.Code, "the database server has too many connections"
	}
	return "08006", msgCannotConnect
}

// PgError returns the server's error if the backend refused the connection with one.
func (e *DialError) PgError() *pgconn.PgError {
	var pe *pgconn.PgError
	if errors.As(e.err, &pe) {
		return pe
	}
	return nil
}
