package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// idleResult is what measureIdle found.
type idleResult struct {
	conns     int   // connections opened and held
	rssBefore int64 // proxy RSS before, KiB
	rssAfter  int64 // with every connection open and idle, KiB
	took      time.Duration
	err       error // the first failure, if not every connection opened
}

// raiseFileLimit lifts this process's open-file soft limit to its hard
// limit, so that the proxy (started after, inheriting it) and the client
// side of -idle can hold thousands of sockets.
func raiseFileLimit() uint64 {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return 0
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
	}
	return l.Cur
}

// measureIdle opens n client connections to t (SCRAM login, then idle),
// reads the proxy's resident memory before and after, and closes them.
func measureIdle(ctx context.Context, t *target, n int) idleResult {
	res := idleResult{rssBefore: rssKiB(t.proc)}
	start := time.Now()
	url := fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", t.user, t.password, t.port, t.db)
	conns := make([]*pgconn.PgConn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close(context.Background())
		}
	}()
	for i := 0; i < n; i++ {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c, err := pgconn.Connect(cctx, url)
		cancel()
		if err != nil {
			res.err = fmt.Errorf("connection %d: %w", i+1, err)
			break
		}
		conns = append(conns, c)
	}
	res.conns = len(conns)
	res.took = time.Since(start)
	time.Sleep(500 * time.Millisecond) // let the proxy settle
	res.rssAfter = rssKiB(t.proc)
	return res
}

// rssKiB is the VmRSS of p's process, from /proc; 0 if unknown.
func rssKiB(p *proc) int64 {
	if p == nil || p.cmd.Process == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}
