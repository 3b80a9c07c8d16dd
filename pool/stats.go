package pool

import (
	"context"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// DatabaseStats is a snapshot of one database's connections.
type DatabaseStats struct {
	Database string
	Open     int // connections that exist or are being dialed
	Idle     int // connections idle in the pool
	InUse    int // Open - Idle: held by clients (or being dialed)
	Waiting  int // callers waiting in Acquire for this database
}

// DatabaseStats returns a snapshot per database the pool has served, sorted
// by name. It only reads counters, under each database's lock for a moment.
func (p *Pool) DatabaseStats() []DatabaseStats {
	p.mu.Lock()
	subs := make([]*subPool, 0, len(p.mu.subs))
	for _, s := range p.mu.subs {
		subs = append(subs, s)
	}
	p.mu.Unlock()
	out := make([]DatabaseStats, 0, len(subs))
	for _, s := range subs {
		s.mu.Lock()
		st := DatabaseStats{Database: s.database, Open: s.mu.open, Idle: len(s.mu.idle), Waiting: len(s.mu.waiters)}
		s.mu.Unlock()
		st.InUse = max(st.Open-st.Idle, 0)
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b DatabaseStats) int {
		switch {
		case a.Database < b.Database:
			return -1
		case a.Database > b.Database:
			return 1
		}
		return 0
	})
	return out
}

// Ping checks that the backend accepts the proxy's credentials: it opens a
// connection to the default database outside the pool (so a full pool does
// not make the backend look unreachable) and closes it at once.
func (p *Pool) Ping(ctx context.Context) error {
	cfg := p.base.Copy()
	ctx, cancel := context.WithTimeout(ctx, min(p.cfg.DialTimeout, 5*time.Second))
	defer cancel()
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return &DialError{Database: cfg.Database, err: err}
	}
	return c.Close(ctx)
}
