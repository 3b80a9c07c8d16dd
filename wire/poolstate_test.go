package wire_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// TestTxForeignStatementDrop: in transaction pooling, no spelling of
// DEALLOCATE, DISCARD, Close, PREPARE or EXECUTE lets a client drop, replace
// or run a statement the proxy prepared on the shared backend for another
// client. Both clients share the one backend connection; after each attempt
// the victim's prepared statement still gives its own result.
func TestTxForeignStatementDrop(t *testing.T) {
	p := startProxy(t, withTxPooling(1))
	ctx := ctxT(t, 120*time.Second)
	victim, err := pgconn.Connect(ctx, p.URL("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close(context.Background())
	if _, err := victim.Prepare(ctx, "mine", "SELECT 'secret of alice'::text AS s", nil); err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, what string) {
		t.Helper()
		r := victim.ExecPrepared(ctx, "mine", nil, nil, nil).Read()
		if r.Err != nil || len(r.Rows) != 1 || string(r.Rows[0][0]) != "secret of alice" {
			t.Fatalf("after %s: the victim's statement gives %v %q", what, r.Err, r.Rows)
		}
	}
	check(t, "preparing it")

	probe, err := pgconn.Connect(ctx, p.URL("bob"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := probe.Exec(ctx, "SELECT name FROM pg_prepared_statements WHERE name LIKE 'dbal%'").ReadAll()
	if err != nil || len(res) != 1 || len(res[0].Rows) != 1 {
		t.Fatalf("listing the backend's statements: %v %v", err, res)
	}
	name := string(res[0].Rows[0][0])
	probe.Close(ctx)

	for _, q := range []string{
		"DEALLOCATE %s",
		"DEALLOCATE PREPARE %s",
		`DEALLOCATE "%s"`,
		"deallocate " + strings.ToUpper(name),
		"SELECT 1; DEALLOCATE %s",
		"DEALLOCATE %s; SELECT 1",
		"BEGIN; DEALLOCATE %s; COMMIT",
		"EXECUTE %s",
		"EXPLAIN (VERBOSE) EXECUTE %s",
		"EXPLAIN (ANALYZE, VERBOSE) EXECUTE %s",
		"CREATE TEMP TABLE leak AS EXECUTE %s",
		"CREATE TABLE leak AS EXECUTE %s",
		"PREPARE %s AS SELECT 'replaced'",
		"PREPARE %s AS SELECT 'replaced'; EXECUTE %s",
		"DEALLOCATE ALL",
		"DEALLOCATE PREPARE ALL",
		"DISCARD ALL",
		"DISCARD PLANS",
		"SELECT 1; DISCARD PLANS",
	} {
		q = strings.ReplaceAll(q, "%s", name)
		for _, proto := range []string{"simple", "extended"} {
			t.Run(proto+"/"+strings.ReplaceAll(q, name, "dbal_…"), func(t *testing.T) {
				c, err := pgconn.Connect(ctx, p.URL("bob"))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close(context.Background())
				var out strings.Builder
				var res []*pgconn.Result
				if proto == "simple" {
					res, err = c.Exec(ctx, q).ReadAll()
				} else {
					r := c.ExecParams(ctx, q, nil, nil, nil, nil).Read()
					res, err = []*pgconn.Result{r}, r.Err
				}
				fmt.Fprintln(&out, err)
				for _, r := range res {
					for _, row := range r.Rows {
						for _, v := range row {
							fmt.Fprintln(&out, string(v))
						}
					}
				}
				if _, err := c.Exec(ctx, "SELECT * FROM leak").ReadAll(); err == nil {
					t.Fatalf("%s made a table of the victim's statement", q)
				}
				if strings.Contains(out.String(), "secret") {
					t.Fatalf("%s reached the victim's statement: %s", q, out.String())
				}
				if _, err := c.Exec(ctx, "ROLLBACK").ReadAll(); err != nil {
					t.Fatal(err)
				}
				// Bob keeps his connection open: a backend he were pinned to
				// would not be reset yet, and the victim would wait for it.
				check(t, q)
			})
		}
	}

	t.Run("protocol Close", func(t *testing.T) {
		c, err := pgconn.Connect(ctx, p.URL("bob"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		fe := c.Frontend()
		fe.Send(&pgproto3.Close{ObjectType: 'S', Name: name})
		fe.Send(&pgproto3.Sync{})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := fe.Receive()
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := m.(*pgproto3.ReadyForQuery); ok {
				break
			}
		}
		check(t, "Close")
	})

	// A function body (here a DO block) can drop the backend's statements
	// where the proxy cannot see it: the victim's next use may fail, the
	// one after works again.
	t.Run("dropped by dynamic SQL", func(t *testing.T) {
		c, err := pgconn.Connect(ctx, p.URL("dave"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DO $$ BEGIN EXECUTE 'DEALLOCATE ALL'; END $$").ReadAll(); err != nil {
			t.Fatal(err)
		}
		_ = victim.ExecPrepared(ctx, "mine", nil, nil, nil).Read()
		check(t, "a DEALLOCATE ALL in a DO block")
	})

	// The client's own SQL-level statements still work in every spelling.
	t.Run("own statements", func(t *testing.T) {
		c, err := pgconn.Connect(ctx, p.URL("bob"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		for _, q := range []string{
			"PREPARE q1 AS SELECT 1",
			"EXECUTE q1",
			"EXPLAIN EXECUTE q1",
			"PREPARE q2 AS SELECT 2; EXECUTE q2",
			"DEALLOCATE q1",
			"SELECT 1; DEALLOCATE q2",
		} {
			if _, err := c.Exec(ctx, q).ReadAll(); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		var pe *pgconn.PgError
		if _, err := c.Exec(ctx, "EXECUTE q1").ReadAll(); !errors.As(err, &pe) || pe.Code != "26000" {
			t.Fatalf("EXECUTE after DEALLOCATE: %v", err)
		}
		if _, err := c.Exec(ctx, "PREPARE dbal_mine AS SELECT 1").ReadAll(); !errors.As(err, &pe) || pe.Code != "42939" {
			t.Fatalf("PREPARE of a reserved name: %v", err)
		}
	})
}

// TestTxHiddenSettingChange: a setting changed where the proxy cannot see it
// (set_config in a PL/pgSQL function body) never reaches another client of
// the backend connection: the connection is not handed on.
func TestTxHiddenSettingChange(t *testing.T) {
	for _, conns := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d backends", conns), func(t *testing.T) {
			p := startProxy(t, withTxPooling(conns), withPolicy(t, policyEngine(t, "", decision.ModeStrict), nil))
			p.loadDemo(t)
			ctx := ctxT(t, 60*time.Second)
			direct, err := pgconn.Connect(ctx, p.DirectDB)
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{
				`CREATE FUNCTION go_read_only() RETURNS void LANGUAGE plpgsql SECURITY INVOKER AS $$
				 BEGIN PERFORM set_config('default_transaction_read_only', 'on', false); END $$`,
				`CREATE FUNCTION go_elsewhere() RETURNS void LANGUAGE plpgsql SECURITY INVOKER AS $$
				 BEGIN PERFORM set_config('TimeZone', 'Pacific/Kiritimati', false);
				       PERFORM set_config('application_name', 'changed', false); END $$`,
			} {
				if _, err := direct.Exec(ctx, q).ReadAll(); err != nil {
					t.Fatal(err)
				}
			}
			direct.Close(ctx)

			show := func(c *pgconn.PgConn, setting string) string {
				t.Helper()
				res, err := c.Exec(ctx, "SHOW "+setting).ReadAll()
				if err != nil || len(res) != 1 || len(res[0].Rows) != 1 {
					t.Fatalf("SHOW %s: %v", setting, err)
				}
				return string(res[0].Rows[0][0])
			}
			others := func(what string) {
				t.Helper()
				for _, login := range []string{"alice", "bob"} {
					c, err := pgconn.Connect(ctx, p.URL(login))
					if err != nil {
						t.Fatal(err)
					}
					for i := 0; i < 4; i++ {
						if got := show(c, "default_transaction_read_only"); got != "off" {
							t.Fatalf("%s: %s's transaction %d is read-only", what, login, i)
						}
						if got := show(c, "TimeZone"); got == "Pacific/Kiritimati" {
							t.Fatalf("%s: %s's transaction %d has the changed TimeZone", what, login, i)
						}
						if _, err := c.Exec(ctx, "UPDATE users SET email = email WHERE id = 'u_alice'").ReadAll(); err != nil {
							t.Fatalf("%s: %s's write: %v", what, login, err)
						}
					}
					c.Close(ctx)
				}
			}

			for _, fn := range []string{"go_read_only", "go_elsewhere"} {
				dave, err := pgconn.Connect(ctx, p.URL("dave"))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := dave.Exec(ctx, "SELECT "+fn+"()").ReadAll(); err != nil {
					t.Fatal(err)
				}
				if conns > 1 {
					// Dave stays; others come and go.
					others(fn + " with its caller still connected")
				}
				dave.Close(ctx)
				waitFor(t, "the caller's session to end", 5*time.Second, func() bool { s := p.Pool.Stats(); return s.Open == s.Idle })
				others(fn + " after its caller left")
			}
		})
	}
}
