package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// benchTimeout is the policy timeout of timeoutLogin (its role's limit in the
// bench copy of the policies) and the statement_timeout set on direct.
const benchTimeout = 100 * time.Millisecond

// timeoutLogin is a dbalproxy login of role user, whose statements the
// bench policies cancel after benchTimeout.
const timeoutLogin = "benchto"

// timeoutConns is how many connections run the cancelled statements at once.
const timeoutConns = 4

// timeoutResult is how late the cancels of one target and protocol came.
type timeoutResult struct {
	target, mode string
	late         []time.Duration // elapsed - benchTimeout, sorted
	wrong        int             // statements that ended otherwise than with 57014
	wrongErrs    []string        // the first few distinct such outcomes
	err          error
}

// measureTimeouts runs n statements of 10 s (pg_sleep) against t, each of
// which a timeout of benchTimeout cancels: the policy's for dbalproxy (as
// timeoutLogin), statement_timeout for direct. It measures, at the client,
// from sending to the error.
func measureTimeouts(ctx context.Context, t *target, mode string, n int) timeoutResult {
	res := timeoutResult{target: t.name, mode: mode}
	user, password := t.user, t.password
	if t.name != tDirect {
		user, password = timeoutLogin, benchPassword
	}
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password),
		Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(t.port)), Path: "/" + t.db, RawQuery: "sslmode=" + t.sslMode()}
	cfg, err := pgx.ParseConfig(u.String())
	if err != nil {
		res.err = err
		return res
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	if mode == "extended" {
		cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	}
	if t.name == tDirect {
		cfg.RuntimeParams["statement_timeout"] = strconv.Itoa(int(benchTimeout.Milliseconds()))
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan struct{}, n)
	for range n {
		next <- struct{}{}
	}
	close(next)
	for range timeoutConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			conn, err := pgx.ConnectConfig(cctx, cfg)
			cancel()
			if err != nil {
				mu.Lock()
				res.err = err
				mu.Unlock()
				return
			}
			defer conn.Close(context.Background())
			for range next {
				qctx, cancel := context.WithTimeout(ctx, 15*time.Second)
				start := time.Now()
				_, err := conn.Exec(qctx, "SELECT pg_sleep(10)")
				el := time.Since(start)
				cancel()
				var pe *pgconn.PgError
				mu.Lock()
				if errors.As(err, &pe) && pe.Code == "57014" {
					res.late = append(res.late, el-benchTimeout)
				} else {
					res.wrong++
					msg := "no error"
					if err != nil {
						msg = err.Error()
					}
					if len(res.wrongErrs) < 5 && !slices.Contains(res.wrongErrs, msg) {
						res.wrongErrs = append(res.wrongErrs, msg)
					}
				}
				mu.Unlock()
				if ctx.Err() != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	slices.Sort(res.late)
	return res
}

// pct is the q-quantile (nearest rank) of sorted durations, in ms.
func pct(d []time.Duration, q float64) float64 {
	if len(d) == 0 {
		return 0
	}
	i := int(q*float64(len(d))+0.5) - 1
	i = min(max(i, 0), len(d)-1)
	return float64(d[i].Microseconds()) / 1000
}

// reportTimeouts prints how late the cancels came.
func reportTimeouts(w io.Writer, rs []timeoutResult, markdown bool) {
	if len(rs) == 0 {
		return
	}
	cols := []string{"target", "protocol", "statements", "late p50 ms", "late p99 ms", "late max ms", "not 57014"}
	var rows [][]string
	for _, r := range rs {
		rows = append(rows, []string{r.target, r.mode, strconv.Itoa(len(r.late)),
			fmt.Sprintf("%.1f", pct(r.late, 0.5)), fmt.Sprintf("%.1f", pct(r.late, 0.99)), fmt.Sprintf("%.1f", pct(r.late, 1)), strconv.Itoa(r.wrong)})
	}
	intro := fmt.Sprintf("SELECT pg_sleep(10) cancelled after %s (dbalproxy: the policy timeout of a role-user login; direct: statement_timeout), %d connections at once; late = time to the error at the client - %s", benchTimeout, timeoutConns, benchTimeout)
	printTable(w, "Timeout precision", intro, cols, rows, markdown)
	for _, r := range rs {
		for _, m := range r.wrongErrs {
			fmt.Fprintf(w, "  %s %s: not 57014: %s\n", r.target, r.mode, m)
		}
		if r.err != nil {
			fmt.Fprintf(w, "  %s %s: error: %v\n", r.target, r.mode, r.err)
		}
	}
}
