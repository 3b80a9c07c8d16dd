package main

import (
	"fmt"
	"sync"

	"github.com/rs/zerolog"

	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/wire"
)

// loginPools keeps one backend pool per backend role that logins map to
// (logins[].backend): sessions of such a login run as that role, so
// PostgreSQL's own grants and row-level security apply as well. Pools live
// until the process ends; a reload that names a new role adds one.
type loginPools struct {
	mu    sync.Mutex
	pools map[string]*pool.Pool // by backend user
}

// attach gives each login of logins whose configuration names a backend
// role its pool, creating it on first use with the main pool's settings.
// wrap wraps a pool for the server (the metrics' counting wrapper).
func (lp *loginPools) attach(cfg *Config, logins wire.Logins, log zerolog.Logger, wrap func(*pool.Pool) wire.Backends) error {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	for i, l := range cfg.Logins {
		if l.Backend.User == "" {
			continue
		}
		p := lp.pools[l.Backend.User]
		if p == nil {
			var err error
			p, err = pool.New(pool.Config{
				ConnString:     cfg.Backend.URL,
				User:           l.Backend.User,
				Password:       l.Backend.Password,
				MaxConns:       cfg.Pool.MaxConns,
				AcquireTimeout: cfg.Pool.AcquireTimeout.D(),
				IdleTimeout:    cfg.Pool.IdleTimeout.D(),
				ResetQuery:     cfg.Pool.ResetQuery,
				Logger:         log.With().Str("component", "pool").Str("backend_user", l.Backend.User).Logger(),
			})
			if err != nil {
				return &configError{key: fmt.Sprintf("logins[%d].backend", i), msg: err.Error()}
			}
			if lp.pools == nil {
				lp.pools = map[string]*pool.Pool{}
			}
			lp.pools[l.Backend.User] = p
		}
		if login := logins[l.Name]; login != nil {
			login.Backends = wrap(p)
		}
	}
	return nil
}

// close closes every pool.
func (lp *loginPools) close() {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	for _, p := range lp.pools {
		p.Close()
	}
}

// wrapPool is how the server sees a login's pool: counted in the metrics
// and held by the console's PAUSE like the main pool.
func (px *proxy) wrapPool(p *pool.Pool) wire.Backends {
	if px.gate == nil {
		return px.metrics.Backends(p)
	}
	return px.gate.Backends(px.metrics.Backends(p))
}
