package wire_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/audit"
	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/testenv"
	"github.com/dbalproxy/dbalproxy/wire"
	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"
)

// TestSessionPanicRecovery: a panic in a session's goroutine or in its
// pump ends that session only. The client gets FATAL XX000, the statement
// is audited as failed, the backend connection is destroyed (never
// reused), the pump stops, and the pool's other connections keep serving:
// more panics than the pool has connections leave it whole. No goroutine
// is left behind. Both pooling modes.
func TestSessionPanicRecovery(t *testing.T) {
	testenv.Shared(t) // the shared cluster's goroutines are not ours
	opts := []goleak.Option{goleak.IgnoreCurrent()}
	for _, mode := range []string{"session", "transaction"} {
		t.Run(mode, func(t *testing.T) {
			sink := &auditSink{}
			logs := &syncBuf{}
			p := startProxy(t, withPolicy(t, policyEngine(t, "", decision.ModeStrict), sink), withLogs(logs),
				func(w *wire.Config, pc *pool.Config) {
					w.TransactionPooling = mode == "transaction"
					pc.MaxConns = 2
					pc.AcquireTimeout = 2 * time.Second
				})
			ctx := ctxT(t, 60*time.Second)
			cases := []struct {
				name, sql string
				qmode     pgx.QueryExecMode
			}{
				{"session/simple", "SELECT '" + wire.PanicInSession + "'", pgx.QueryExecModeSimpleProtocol},
				{"session/extended", "SELECT '" + wire.PanicInSession + "'", pgx.QueryExecModeCacheStatement},
				{"session/simple-again", "SELECT '" + wire.PanicInSession + "' AS again", pgx.QueryExecModeSimpleProtocol},
				{"pump/simple", "SELECT '" + wire.PanicInPump + "'", pgx.QueryExecModeSimpleProtocol},
				{"pump/extended", "SELECT '" + wire.PanicInPump + "'", pgx.QueryExecModeCacheStatement},
				{"pump/simple-again", "SELECT '" + wire.PanicInPump + "' AS again", pgx.QueryExecModeSimpleProtocol},
			}
			destroyed := p.Pool.Stats().Destroyed
			for _, c := range cases {
				mark := len(sink.Records())
				conn := connectMode(t, p.URL("alice"), c.qmode)
				_, err := conn.Exec(ctx, c.sql)
				pe := pgErr(t, err)
				if pe.Code != "XX000" || pe.Severity != "FATAL" {
					t.Fatalf("%s: %s %s %q, want FATAL XX000", c.name, pe.Severity, pe.Code, pe.Message)
				}
				if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
					t.Fatalf("%s: the session went on after its panic", c.name)
				}
				waitFor(t, c.name+"'s audit record", 5*time.Second, func() bool {
					for _, r := range sink.Records()[mark:] {
						if r.Event == audit.EventStatement && !r.Success && r.SQLState == "XX000" && strings.Contains(r.QueryRaw, "dbalproxy-test-panic") {
							return true
						}
					}
					return false
				})
			}
			// Other clients are served, by both of the pool's connections at once.
			var wg sync.WaitGroup
			errs := make(chan error, 2)
			var inTx sync.WaitGroup
			inTx.Add(2)
			for _, login := range []string{"bob", "carol"} {
				conn := connect(t, p.URL(login))
				wg.Add(1)
				go func() {
					defer wg.Done()
					tx, err := conn.Begin(ctx)
					if err == nil {
						_, err = tx.Exec(ctx, "SELECT 1")
					}
					inTx.Done()
					inTx.Wait() // both transactions hold a backend together
					if err == nil {
						err = tx.Commit(ctx)
					}
					if cerr := conn.Close(ctx); err == nil {
						err = cerr
					}
					errs <- err
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatalf("another client after the panics: %v", err)
				}
			}
			waitFor(t, "no backend connection in use", 5*time.Second, func() bool {
				st := p.Pool.Stats()
				return st.Open-st.Idle == 0 && st.Open <= 2
			})
			if st := p.Pool.Stats(); st.Destroyed < destroyed+uint64(len(cases)) {
				t.Errorf("destroyed %d backend connections, want at least one per panic (%d)", st.Destroyed-destroyed, len(cases))
			}
			waitFor(t, "every client connection to close", 5*time.Second, func() bool { return p.Server.ClientConns() == 0 })
			text := logs.String()
			if !strings.Contains(text, `"level":"error"`) || !strings.Contains(text, "panic") || !strings.Contains(text, "goroutine") {
				t.Errorf("the panics are not logged at error level with a stack:\n%s", text)
			}
		})
	}
	goleak.VerifyNone(t, opts...)
}
