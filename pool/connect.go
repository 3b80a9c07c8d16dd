package pool

import (
	"context"

	"github.com/jackc/pgx/v5/pgconn"
)

// Connect opens a plain connection to database with the proxy's own
// credentials, outside the pool and its limits, for the proxy's own
// queries (the function catalog). The caller closes it. An error is a
// *DialError.
func (p *Pool) Connect(ctx context.Context, database string) (*pgconn.PgConn, error) {
	if database == "" {
		database = p.base.Database
	}
	cfg := p.base.Copy()
	cfg.Database = database
	ctx, cancel := context.WithTimeout(ctx, p.cfg.DialTimeout)
	defer cancel()
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, &DialError{Database: database, err: err}
	}
	return pc, nil
}
