package main

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// serve in transaction pooling mode, with the metrics wrapper around the
// pool: pgx clients with their statement cache on share two backend
// connections over many transactions, and every statement they prepared
// keeps working.
func TestServeTransactionPooling(t *testing.T) {
	s := startServe(t, "pool: {mode: transaction, max_conns: 2}\n")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 6 {
		login := []string{"alice", "bob", "dave"}[i%3]
		c := s.connect(login)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 40 {
				var n int
				if err := c.QueryRow(ctx, "SELECT count(*) FROM users WHERE id <> $1", fmt.Sprint(j)).Scan(&n); err != nil {
					errs <- fmt.Errorf("%s: %w", login, err)
					return
				}
				if want := map[string]int{"alice": 1, "bob": 6, "dave": 6}[login]; n != want {
					errs <- fmt.Errorf("%s sees %d users, want %d", login, n, want)
					return
				}
				tx, err := c.Begin(ctx)
				if err != nil {
					errs <- err
					return
				}
				var id string
				if err := tx.QueryRow(ctx, "SELECT id FROM users WHERE id = $1", "u_"+login).Scan(&id); err != nil {
					errs <- fmt.Errorf("%s in a transaction: %w", login, err)
					return
				}
				if err := tx.Commit(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// The prepared statements live on the backend connections, which were
	// given back without a reset.
	direct := s.connect("dave")
	var prepared int
	if err := direct.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'").Scan(&prepared); err != nil {
		t.Fatal(err)
	}
	if prepared > 2 {
		t.Errorf("%d backend connections, want at most pool.max_conns = 2", prepared)
	}
	var kept int
	if err := direct.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'dbal%'", pgx.QueryExecModeSimpleProtocol).Scan(&kept); err != nil {
		t.Fatal(err)
	}
	if kept == 0 {
		t.Errorf("the backend serving dave holds no prepared statement of the clients: connections were reset between transactions")
	}
	if v := s.metric("dbalproxy_pool_acquire_seconds_count"); v == 0 {
		t.Errorf("no pool acquisitions counted")
	}
}
