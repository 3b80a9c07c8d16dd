package wire

import (
	"bufio"
	"sync"
	"time"
)

// reqKind is what a forwarded client message waits for from the backend.
type reqKind uint8

const (
	reqQuery          reqKind = iota // simple Query: done at ReadyForQuery
	reqSync                          // Sync: done at ReadyForQuery
	reqFunctionCall                  // FunctionCall: done at ReadyForQuery
	reqParse                         // ParseComplete
	reqBind                          // BindComplete
	reqClose                         // CloseComplete
	reqDescribeStmt                  // ParameterDescription, then RowDescription or NoData
	reqDescribePortal                // RowDescription or NoData
	reqExecute                       // CommandComplete, EmptyQueryResponse or PortalSuspended
)

// isSyncPoint reports whether the request ends with ReadyForQuery.
func (k reqKind) isSyncPoint() bool { return k <= reqFunctionCall }

// request is one client message (or one the proxy injected) whose answer
// the pump has yet to see.
type request struct {
	kind reqKind
	// swallow drops the backend's answer instead of relaying it: the proxy
	// injected the message and the client must not see its answer. An
	// ErrorResponse is always relayed.
	swallow bool
	// run, when set, receives the outcome of the statements this request
	// runs, for audit.
	run *stmtRun
	// Transaction pooling: st is the backend's statement bookkeeping; a
	// Parse of the backend statement prep (sent in epoch) is confirmed by
	// its ParseComplete and forgotten if it is skipped or fails; bind names
	// the backend statement a Bind or Describe uses.
	st    *beState
	prep  string
	epoch uint64
	bind  string
	// ps is the client's statement a client Parse creates: if the backend
	// skips or fails that Parse, the statement does not exist.
	ps *prepared
	// guard marks the messages of a check of the pinned settings (see
	// lexGuard): guardParse in front of a Parse, guardQuery in front of a
	// Query.
	guard uint8
}

// maxPipeline bounds how many answers a client may be waiting for at once. A
// client that pipelines more is simply not read until the backend catches up.
const maxPipeline = 4096

// reqQueue is the FIFO of requests between the session goroutine (which
// pushes before it forwards) and the pump (which pops as answers arrive).
type reqQueue struct {
	mu      sync.Mutex
	notFull sync.Cond
	buf     []request // ring; grows from 16 up to maxPipeline
	head    int       // index of the oldest request
	n       int       // requests queued
	closed  bool
	slow    int // queued requests that are not quick (see request.quick)
	execs   int // queued Executes
	// unsynced is set when the last request answered was not a sync
	// point: the backend has run messages whose ReadyForQuery, and the
	// ParameterStatus messages that come before it, it has yet to send.
	unsynced bool
}

func (q *reqQueue) init() { q.notFull.L = &q.mu }

// push appends r. If the queue is full it flushes w (the backend writer, so
// the backend can answer) and waits for room. It returns false if the queue
// was closed.
func (q *reqQueue) push(r request, w *bufio.Writer) bool {
	q.mu.Lock()
	if q.n == len(q.buf) && len(q.buf) < maxPipeline {
		q.grow()
	}
	if q.n == len(q.buf) && !q.closed {
		q.mu.Unlock()
		_ = w.Flush()
		q.mu.Lock()
		for q.n == len(q.buf) && !q.closed {
			q.notFull.Wait()
		}
	}
	if q.closed {
		q.mu.Unlock()
		return false
	}
	q.buf[(q.head+q.n)%len(q.buf)] = r
	q.n++
	if !r.quick() {
		if q.slow == 0 {
			r.markFront()
		}
		q.slow++
	}
	if r.kind == reqExecute {
		q.execs++
	}
	q.mu.Unlock()
	return true
}

// quick reports whether the backend answers r at once: a Parse, Bind,
// Describe or Close that runs no statement of the client's. For a
// statement's timeout, the requests ahead of it that count are the others
// (Executes, and Sync, Query and FunctionCall, which may commit).
// PostgreSQL's own statement_timeout counts a Bind too.
func (r *request) quick() bool {
	return r.run == nil && !r.kind.isSyncPoint() && r.kind != reqExecute
}

// markFront notes that r is now the first request that is not quick: the
// backend has answered, or is about to, everything sent before it, so its
// statement runs from now on.
func (r *request) markFront() {
	if r.run != nil && r.run.timer != nil {
		r.run.timer.frontAt.CompareAndSwap(0, time.Now().UnixNano())
	}
}

// execsPending reports whether an Execute is waiting for its answer. The
// backend keeps that answer in its buffer until a Sync or a Flush.
func (q *reqQueue) execsPending() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.execs > 0
}

// grow doubles the ring, keeping the order.
func (q *reqQueue) grow() {
	nb := make([]request, max(16, 2*len(q.buf)))
	for i := 0; i < q.n; i++ {
		nb[i] = q.buf[(q.head+i)%len(q.buf)]
	}
	q.buf, q.head = nb, 0
}

// onBackend accounts for a backend message of type t. It reports whether the
// message is to be relayed to the client, and the request it answers (the
// zero request for asynchronous messages).
func (q *reqQueue) onBackend(t byte) (relay bool, r request) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == 0 {
		return true, request{} // asynchronous: a notice, a notification, a FATAL
	}
	f := q.buf[q.head]
	switch t {
	case 'Z':
		// Requests still ahead of the sync point were skipped: the backend
		// was ignoring messages after an error answered before they were
		// sent.
		for q.n > 1 && !q.buf[q.head].kind.isSyncPoint() {
			q.skipLocked()
		}
		f = q.buf[q.head]
		if f.kind.isSyncPoint() {
			q.popLocked()
		}
		return !f.swallow, f
	case 'E':
		if !f.kind.isSyncPoint() {
			// Extended protocol: the backend ignores everything up to the
			// next Sync, so those requests get no answer.
			for q.n > 0 && !q.buf[q.head].kind.isSyncPoint() {
				q.skipLocked()
			}
		}
		return true, f
	case '1':
		if f.kind == reqParse && f.prep != "" {
			f.st.confirm(f.prep, f.epoch)
		}
		return q.finish(f, reqParse), f
	case '2':
		return q.finish(f, reqBind), f
	case '3':
		return q.finish(f, reqClose), f
	case 'T', 'n':
		if f.kind == reqDescribeStmt {
			return q.finish(f, reqDescribeStmt), f
		}
		return q.finish(f, reqDescribePortal), f
	case 'C', 'I', 's':
		return q.finish(f, reqExecute), f
	case 'N', 'A', 'S':
		return true, request{}
	}
	return !f.swallow, f
}

// finish pops f if it is of kind k and reports whether its answer is relayed.
func (q *reqQueue) finish(f request, k reqKind) bool {
	if f.kind != k {
		return !f.swallow
	}
	q.popLocked()
	return !f.swallow
}

// skipLocked pops the oldest request, which the backend skipped or failed:
// a Parse it carried did not happen.
func (q *reqQueue) skipLocked() {
	r := q.buf[q.head]
	if r.prep != "" {
		r.st.forget(r.prep, r.epoch)
	}
	if r.ps != nil {
		r.ps.failed.Store(true)
	}
	if r.kind == reqParse && r.st != nil {
		r.st.setUnnamed("") // it may have been an unnamed Parse
	}
	q.popLocked()
}

func (q *reqQueue) popLocked() {
	if q.n == 0 {
		return
	}
	r := q.buf[q.head]
	q.unsynced = !r.kind.isSyncPoint()
	q.buf[q.head] = request{}
	q.head = (q.head + 1) % len(q.buf)
	if q.n == len(q.buf) && len(q.buf) == maxPipeline {
		q.notFull.Signal()
	}
	q.n--
	if r.kind == reqExecute {
		q.execs--
	}
	if !r.quick() {
		q.slow--
		if q.slow > 0 {
			// The next request that is not quick runs now.
			for i := 0; i < q.n; i++ {
				if next := &q.buf[(q.head+i)%len(q.buf)]; !next.quick() {
					next.markFront()
					break
				}
			}
		}
	}
}

// Answers of frontIs.
const (
	frontIsRun = iota
	frontOther
	frontClosed
)

// frontIs tells whether the oldest unanswered request that is not quick
// (see request.quick) belongs to run (the backend runs run's statement now,
// or is about to), a later one does (it waits its turn), or none does any
// more (frontClosed: it was answered, skipped after an error, or the
// session ended).
func (q *reqQueue) frontIs(run *stmtRun) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return frontClosed
	}
	waits := false
	for i := 0; i < q.n; i++ {
		r := &q.buf[(q.head+i)%len(q.buf)]
		if r.run == run {
			if waits {
				return frontOther
			}
			return frontIsRun
		}
		waits = waits || !r.quick()
	}
	return frontClosed
}

// pending is the number of requests still waiting for an answer.
func (q *reqQueue) pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// unreported reports whether the backend may have changed a setting it has
// not reported yet: it reports changes just before ReadyForQuery
// (PostgreSQL 14 and later), so until every message sent was answered up
// to a ReadyForQuery, a statement it ran may have changed one.
func (q *reqQueue) unreported() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n > 0 || q.unsynced
}

// close wakes a waiting pusher for good.
func (q *reqQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.notFull.Broadcast()
	q.mu.Unlock()
}
