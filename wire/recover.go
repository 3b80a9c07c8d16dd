package wire

import (
	"context"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/dbalproxy/dbalproxy/audit"
	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Panics. A bug that panics in one session must end that session only, and
// leave nothing behind: each of the session's goroutines (run's, the pump,
// a statement's policy timer) recovers its own panics. The panic is logged
// at error level with its stack; the statements it cut short are audited as
// failed (XX000); the client gets FATAL XX000 when it can still be written
// to, and is closed; the backend connection, whose state is unknown, is
// destroyed (never given back to the pool), and the pump stops. Other
// sessions, and the pool's other connections, go on.

// panicState is what the recovery from a session's panic needs to know.
type panicState struct {
	loginAudited bool      // the login's audit record is written (run's goroutine)
	text         string    // the Query or Parse being handled, when statements are audited (run's goroutine)
	since        time.Time // when its handling began
	// failed is set when a goroutine of the session panicked: its backend
	// connection is destroyed at teardown whatever state it seems to be in.
	failed atomic.Bool
}

// internalErrorMessage is what a client whose session panicked is told.
const internalErrorMessage = "internal error in the proxy"

// testPanicHook, when set (only by tests, before any session runs), is
// called with the text of each Query and Parse before it is handled.
var testPanicHook func(text string)

// testPumpHook, when set (only by tests, before any session runs), is
// called by the pump with each whole backend message it relays.
var testPumpHook func(typ byte, msg []byte)

// noteStatement remembers the text of the Query or Parse (typ) whose header
// was just peeked, for the audit record of a panic while it is handled; any
// other message clears it. Only when statements are audited, and only for a
// message that fits the read buffer.
func (sess *session) noteStatement(typ byte, n int) {
	sess.panics.text = ""
	if typ != 'Q' && typ != 'P' || (sess.decider == nil || sess.auditor == nil) && testPanicHook == nil || !sess.cr.fits(n) {
		return
	}
	b, err := sess.cr.peekWhole(n)
	if err != nil {
		return
	}
	body := b[5:]
	if typ == 'P' {
		_, rest, ok := cstring(body)
		if !ok {
			return
		}
		body = rest
	}
	text, _, ok := cstring(body)
	if !ok {
		return
	}
	sess.panics.text, sess.panics.since = text, time.Now()
	if testPanicHook != nil {
		testPanicHook(text)
	}
}

// recoverRun is deferred by run: it recovers a panic of the session's own
// goroutine, from the startup packet to teardown.
func (sess *session) recoverRun() {
	r := recover()
	if r == nil {
		return
	}
	sess.panics.failed.Store(true)
	sess.log.Error().Interface("panic", r).Str("stack", string(debug.Stack())).Msg("session panicked; closing it")
	// The pump may be blocked writing to a client that does not read: the
	// deadline frees it, so that stopPump does not wait forever.
	_ = sess.conn.SetWriteDeadline(time.Now().Add(time.Second))
	sess.stopPump()
	internal := fatalf(CodeInternalError, internalErrorMessage)
	if !sess.panics.loginAudited {
		sess.auditLogin(nil, internal)
	}
	pending := sess.auditUnanswered()
	sess.auditPanicked()
	_ = sess.conn.SetWriteDeadline(time.Now().Add(time.Second))
	sess.writeError(internal, "FATAL")
	_ = sess.cw.Flush()
	sess.closeClient()
	if be := sess.detach(); be != nil {
		sess.destroyBackend(be, pending)
	}
}

// recoverPump is deferred by the pump of be: it recovers a panic of the
// pump. The pump owns the client writer, so it tells the client itself;
// run's goroutine, woken by the closed client, queue and backend, then
// tears down and destroys be (panics.failed).
func (sess *session) recoverPump(be *pool.Conn) {
	r := recover()
	if r == nil {
		return
	}
	sess.panics.failed.Store(true)
	sess.log.Error().Interface("panic", r).Str("stack", string(debug.Stack())).Msg("session's backend pump panicked; closing the session")
	sess.reqs.close() // a push waiting for room gives up
	pending := sess.auditUnanswered()
	sess.mu.Lock()
	owned := sess.mu.be == be
	sess.mu.Unlock()
	if owned {
		if pending {
			sess.cancelBackend(be)
		}
		// run's goroutine may be blocked writing to the backend, which
		// nobody reads any more.
		_ = be.SetDeadline(time.Unix(1, 0))
	}
	_ = sess.conn.SetWriteDeadline(time.Now().Add(time.Second))
	sess.writeError(fatalf(CodeInternalError, internalErrorMessage), "FATAL")
	_ = sess.cw.Flush()
	sess.closeClient()
}

// recoverTimer is deferred by a statement's policy timer: a panic there
// closes the client, so that run's goroutine tears the session down, and
// the backend connection is destroyed.
func (sess *session) recoverTimer() {
	r := recover()
	if r == nil {
		return
	}
	sess.panics.failed.Store(true)
	sess.log.Error().Interface("panic", r).Str("stack", string(debug.Stack())).Msg("statement timer panicked; closing the session")
	sess.closeClient()
}

// destroyBackend closes a backend connection in an unknown state, after
// cancelling what runs there (pending: requests were unanswered).
func (sess *session) destroyBackend(be *pool.Conn, pending bool) {
	if pending {
		sess.cancelBackend(be)
	}
	be.MarkBroken()
	sess.backends.Destroy(be)
}

// cancelBackend cancels what runs on be, so that a statement cut short
// does not run on after the session.
func (sess *session) cancelBackend(be *pool.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := be.Cancel(ctx); err != nil {
		sess.log.Warn().Err(err).Msg("cancelling the statement of a failed session failed")
	}
}

// auditUnanswered empties the request queue, whose answers will never come,
// and audits every statement still waiting for its outcome as failed with
// XX000. It reports whether there were requests unanswered. Its caller must
// own the queued runs: the pump, or run's goroutine once the pump stopped.
func (sess *session) auditUnanswered() bool {
	runs, n := sess.reqs.takeRuns()
	if len(runs) == 0 {
		return n > 0
	}
	msg, _ := (&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL",
		Code: CodeInternalError, Message: internalErrorMessage}).Encode(nil)
	for _, run := range runs {
		for run.next < len(run.plan.Statements) {
			sess.complete(run, 'E', msg[5:])
		}
		run.stopTimer()
	}
	return n > 0
}

// auditPanicked audits the statement whose handling panicked in run's
// goroutine, if statements are audited and its text is known. Its text
// goes to QueryRaw only (written with audit.log_literals): the normalized
// text and the facts come from the parser, which may be what failed.
func (sess *session) auditPanicked() {
	if sess.decider == nil || sess.auditor == nil || sess.panics.text == "" {
		return
	}
	rec := sess.auditBase
	rec.Time = time.Now()
	rec.QueryRaw = sess.panics.text
	rec.Reason = "the proxy failed while handling this statement"
	rec.DurationMS = float64(rec.Time.Sub(sess.panics.since).Microseconds()) / 1000
	rec.Rows = -1
	rec.SQLState, rec.Error = CodeInternalError, internalErrorMessage
	rec.DecisionID = audit.NewDecisionID()
	sess.auditor.Log(&rec)
}

// takeRuns empties the queue. It returns the runs of its requests, oldest
// first, each once, and how many requests there were.
func (q *reqQueue) takeRuns() ([]*stmtRun, int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := q.n
	var runs []*stmtRun
	for q.n > 0 {
		if r := q.buf[q.head].run; r != nil && (len(runs) == 0 || runs[len(runs)-1] != r) {
			runs = append(runs, r)
		}
		q.popLocked()
	}
	q.notFull.Broadcast()
	return runs, n
}
