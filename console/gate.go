package console

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/dbalproxy/dbalproxy/pool"
)

// Gate implements PAUSE and RESUME: while a database (or every database) is
// paused, getting a backend connection for it waits until it is resumed.
// Wrap the server's backends with Backends so that the gate is in their way.
type Gate struct {
	// WaitPastDeadline makes a paused Acquire wait for RESUME however long
	// that takes, and then acquire with the time budget it came with; else
	// it waits at most until its context's deadline (and fails as the pool
	// does after acquire_timeout). Transaction pooling sets it: a client's
	// next transaction waits for RESUME instead of failing. In session
	// pooling the waiters are logins, whose own startup timeout applies.
	WaitPastDeadline bool

	mu      sync.Mutex
	all     bool                // PAUSE without a database
	paused  map[string]bool     // PAUSE db
	resumed chan struct{}       // closed (and replaced) by every RESUME
	waiting map[string][]waiter // callers waiting, by database
	closed  bool
}

type waiter struct{ since time.Time }

// NewGate returns a gate with nothing paused.
func NewGate() *Gate {
	return &Gate{paused: map[string]bool{}, resumed: make(chan struct{}), waiting: map[string][]waiter{}}
}

// Pause pauses database db, or every database when db is "".
func (g *Gate) Pause(db string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if db == "" {
		g.all = true
		return
	}
	g.paused[db] = true
}

// Resume resumes db, or every database (clearing every PAUSE) when db is
// "". Resuming a database while everything is paused is an error.
func (g *Gate) Resume(db string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if db == "" {
		if !g.all && len(g.paused) == 0 {
			return errors.New("nothing is paused")
		}
		g.all = false
		clear(g.paused)
	} else {
		if g.all {
			return errors.New("every database is paused: RESUME without a database name resumes them")
		}
		if !g.paused[db] {
			return errors.New("database " + quote(db) + " is not paused")
		}
		delete(g.paused, db)
	}
	close(g.resumed)
	g.resumed = make(chan struct{})
	return nil
}

// Close resumes everything for good (the proxy is shutting down: waiting
// callers go on and meet the drain).
func (g *Gate) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		g.closed = true
		close(g.resumed)
	}
}

// Paused reports whether db is paused (db "": whether everything is).
func (g *Gate) Paused(db string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pausedLocked(db)
}

func (g *Gate) pausedLocked(db string) bool {
	return !g.closed && (g.all || db != "" && g.paused[db])
}

// Waiting returns how many callers wait for db to be resumed and how long
// the oldest has waited.
func (g *Gate) Waiting(db string) (n int, oldest time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ws := g.waiting[db]
	if len(ws) == 0 {
		return 0, 0
	}
	first := ws[0].since
	for _, w := range ws {
		if w.since.Before(first) {
			first = w.since
		}
	}
	return len(ws), time.Since(first)
}

// Wait returns at once when db is not paused; else it waits until it is
// resumed. With WaitPastDeadline unset, it gives up at ctx's end with ctx's
// error.
func (g *Gate) Wait(ctx context.Context, db string) error {
	g.mu.Lock()
	if !g.pausedLocked(db) {
		g.mu.Unlock()
		return nil
	}
	me := waiter{since: time.Now()}
	g.waiting[db] = append(g.waiting[db], me)
	defer func() {
		g.mu.Lock()
		ws := g.waiting[db]
		for i, w := range ws {
			if w == me {
				ws = append(ws[:i], ws[i+1:]...)
				break
			}
		}
		if len(ws) == 0 {
			delete(g.waiting, db)
		} else {
			g.waiting[db] = ws
		}
		g.mu.Unlock()
	}()
	for g.pausedLocked(db) {
		ch := g.resumed
		g.mu.Unlock()
		var done <-chan struct{}
		if !g.WaitPastDeadline {
			done = ctx.Done()
		}
		select {
		case <-ch:
		case <-done:
			return ctx.Err()
		}
		g.mu.Lock()
	}
	g.mu.Unlock()
	return nil
}

// BackendPool is what the gate wraps: the server's backend connections by
// database. *pool.Pool implements it (as does *metrics.Backends), and so
// does the wrapper, GatedBackends, which the server takes as its
// wire.Backends.
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

// Backends puts the gate in front of b: Acquire waits while the database is
// paused, and TryAcquire returns nil then. Release, Put and Destroy pass
// through.
func (g *Gate) Backends(b BackendPool) *GatedBackends {
	return &GatedBackends{BackendPool: b, gate: g}
}

// GatedBackends is a BackendPool with a Gate in front of Acquire and
// TryAcquire.
type GatedBackends struct {
	BackendPool
	gate *Gate
}

// Acquire implements BackendPool: it waits while database is paused, then
// acquires from the wrapped backends with the time budget the caller gave.
func (b *GatedBackends) Acquire(ctx context.Context, database string) (*pool.Conn, error) {
	if !b.gate.Paused(database) {
		return b.BackendPool.Acquire(ctx, database)
	}
	deadline, hasDeadline := ctx.Deadline()
	budget := time.Until(deadline)
	if err := b.gate.Wait(ctx, database); err != nil {
		return nil, err
	}
	if hasDeadline && b.gate.WaitPastDeadline {
		// The wait for RESUME does not count against the acquire time.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), budget)
		defer cancel()
	}
	return b.BackendPool.Acquire(ctx, database)
}

// TryAcquire returns an idle connection without waiting when database is
// not paused and the wrapped backends have one; nil otherwise (the caller
// then uses Acquire, which waits).
func (b *GatedBackends) TryAcquire(database string) *pool.Conn {
	if b.gate.Paused(database) {
		return nil
	}
	return b.BackendPool.TryAcquire(database)
}
