package wire

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dbalproxy/dbalproxy/audit"
	"github.com/dbalproxy/dbalproxy/pgbool"
	"github.com/dbalproxy/dbalproxy/plan"
	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/sqlscope"
	"github.com/jackc/pgx/v5/pgproto3"
	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// maxTrackedStatements bounds the prepared statements and portals a session
// keeps audit facts for; past it, executions are still decided at Parse and
// audited, but without the statement's facts.
const maxTrackedStatements = 10000

// stmtRun follows one Query or Execute through the pump, so that each
// statement's outcome (tag, rows, SQLSTATE, duration) lands in its audit
// record and its policy row cap holds. Only the pump touches it once it is
// queued.
type stmtRun struct {
	plan       *plan.Plan
	next       int // index of the statement to complete next
	start      time.Time
	denyIdx    int    // index of the denied statement, -1 if none
	decisionID string // the denied statement's decision id
	denyPos    int    // the denial's error position (plan.Denial.Position)
	// violationID is set when the current statement failed the policy's
	// write check: the decision id the client's error carries.
	violationID string
	// sent counts the rows relayed for the current statement; for an
	// Execute it is the portal's count, so a client fetching a portal in
	// pieces cannot pass the cap. own backs it for a simple Query.
	sent *int64
	own  int64
	cut  bool // rows were withheld from the current statement
	// timer is the policy timeout of the run, if it has one.
	timer *stmtTimer
	// setNext is set while the next CommandComplete answers one of the
	// SET LOCAL statement_timeout the proxy put in front of each of the
	// first setStmts statements; the client must not see it.
	setNext  bool
	setStmts int
	// serverTimed is set when the backend enforces the policy timeouts
	// itself (the SET LOCAL statement_timeout in front of each statement);
	// its 57014 is reported as the policy's.
	serverTimed bool
	// copy follows a COPY TO STDOUT of the current statement, whose
	// CopyData messages are its rows (see copyRow).
	copy copyOut
	who  *endUser // the end user the run was decided for; nil for the login itself (identity.go)
}

// stmtTimer is a run's policy timeout. When it fires while the
// statement is the one the backend runs, the proxy cancels it on the backend
// and reports the cancel as a statement timeout.
type stmtTimer struct {
	t     *time.Timer
	ms    int
	done  atomic.Bool // the statement completed; the timer must not cancel
	fired atomic.Bool // the proxy cancelled the statement for its timeout
	// frontAt is when everything ahead of the request that runs a
	// statement was answered (Unix nanoseconds; see reqQueue.frontIs), 0
	// while it waits behind others: the statement is timed from then.
	frontAt atomic.Int64
}

// left is how long the statement may still run, counted from when it
// became the one the backend runs.
func (st *stmtTimer) left() time.Duration {
	at := st.frontAt.Load()
	if at == 0 {
		return 0
	}
	return time.Duration(st.ms)*time.Millisecond - time.Since(time.Unix(0, at))
}

// armTimeout starts the policy timer of a run that runs stmts (the plan's
// statements, or those before a denied one) before it is queued. A single
// statement gets its own timeout. PostgreSQL does not flush between the
// statements of a multi-statement Query, so the proxy cannot see where one
// ends; such a Query gets the sum of its statements' timeouts (none if one of
// them has none) as one bound for the whole string. The timer runs whatever
// else times the statements: the backend's statement_timeout is the
// client's to change, the proxy's deadline is not.
func (sess *session) armTimeout(run *stmtRun, stmts []plan.Statement) {
	ms := 0
	for _, st := range stmts {
		if st.TimeoutMS <= 0 {
			return
		}
		ms += st.TimeoutMS
	}
	if ms <= 0 {
		return
	}
	if run.serverTimed {
		// The backend times each statement itself, to the millisecond; the
		// proxy's cancel (which costs PostgreSQL a process start, some
		// milliseconds) is only the backstop.
		ms += timeoutBackstop
	}
	st := &stmtTimer{ms: ms}
	st.t = time.AfterFunc(time.Duration(ms)*time.Millisecond, func() {
		defer sess.recoverTimer() // recover.go
		sess.timeoutFired(run, st)
	})
	run.timer = st
}

// timeoutFired cancels the statement on the backend if it is still the one
// running there; a statement still waiting behind others is checked again
// shortly, so that it is timed from when it could start.
func (sess *session) timeoutFired(run *stmtRun, st *stmtTimer) {
	if st.done.Load() {
		return
	}
	front := frontClosed
	var wait time.Duration
	// The check and the cancel are one step for the backend lease: it cannot
	// pass to another client between them (see cancelIf).
	sent := sess.cancelIf(func() bool {
		front = sess.reqs.frontIs(run)
		if front != frontIsRun || st.done.Load() {
			return false
		}
		if wait = st.left(); wait > 0 {
			return false // it started late, behind others
		}
		st.fired.Store(true)
		sess.log.Info().Int("timeout_ms", st.ms).Msg("statement timed out by policy; cancelling it")
		return true
	})
	switch {
	case front == frontOther:
		st.t.Reset(5 * time.Millisecond)
	case wait > 0:
		st.t.Reset(wait)
	case sent:
		// PostgreSQL drops a cancel that reaches the backend before the
		// statement started (a busy server may still be reading the
		// Parse or Bind): if the statement still runs after a while, the
		// cancel goes again.
		st.t.Reset(cancelRetry)
	}
}

// policyMS is the policy timeout a run's timer of ms stands for.
func (r *stmtRun) policyMS(ms int) int {
	if t := r.serverTimeout(); t > 0 {
		return t
	}
	return ms
}

// serverTimeout is the policy timeout the backend enforces on the current
// statement, 0 if none.
func (r *stmtRun) serverTimeout() int {
	if !r.serverTimed || r.next >= len(r.plan.Statements) {
		return 0
	}
	return r.plan.Statements[r.next].TimeoutMS
}

// ownTag reports whether a CommandComplete answers one of the proxy's own
// SET LOCAL statement_timeout, which the client must not see.
func (r *stmtRun) ownTag() bool {
	if !r.setNext {
		return false
	}
	r.setNext = false
	return true
}

// timeoutBackstop is how much later than the backend's own
// statement_timeout the proxy cancels a statement that still runs.
const timeoutBackstop = 100

// cancelRetry is how long after a policy timeout's cancel the statement may
// still run before the cancel is sent again.
const cancelRetry = 250 * time.Millisecond

// stopTimer ends the current statement's timer and reports whether it had
// cancelled the statement.
func (r *stmtRun) stopTimer() (fired bool, ms int) {
	st := r.timer
	if st == nil {
		return false, 0
	}
	r.timer = nil
	st.done.Store(true)
	st.t.Stop()
	return st.fired.Load(), st.ms
}

// portal is a bound portal: its statement's plan and the rows sent from it.
type portal struct {
	plan *plan.Plan
	sent int64
}

func newRun(pl *plan.Plan, sent *int64) *stmtRun {
	r := &stmtRun{plan: pl, start: time.Now(), denyIdx: -1, sent: sent}
	if r.sent == nil {
		r.sent = &r.own
	}
	return r
}

// countRow counts a DataRow of the current statement and reports whether it
// may be relayed under the statement's max_rows.
func (r *stmtRun) countRow() bool {
	if r.next >= len(r.plan.Statements) {
		return true
	}
	max := r.plan.Statements[r.next].MaxRows
	if max <= 0 {
		return true
	}
	if *r.sent >= int64(max) {
		r.cut = true
		return false
	}
	*r.sent++
	return true
}

// decide asks the Decider about sql. An error of the Decider itself denies:
// nothing is forwarded unchecked.
func (sess *session) decide(sql string) *plan.Plan {
	if p := sess.identityDecide(sql); p != nil {
		return p
	}
	if sess.decider == nil {
		// Transaction pooling without policies: the text goes as it is.
		return &plan.Plan{SQL: sql}
	}
	sess.info.InTransaction = sess.txStatus.Load() != 'I'
	pl, err := sess.decider.Decide(context.Background(), &sess.info, sql)
	if err != nil || pl == nil {
		sess.log.Error().Err(err).Msg("deciding a statement failed; denying it")
		return &plan.Plan{
			Statements: []plan.Statement{{Decision: audit.DecisionDeny, Reason: "decision failed"}},
			Deny: &plan.Denial{Code: CodeInsufficientPriv, Message: "the proxy could not decide this statement, so it was denied",
				Hint: "the proxy's log has the cause"},
		}
	}
	return pl
}

// handleQuery decides a simple Query and forwards it, its rewrite, or the
// denial.
func (sess *session) handleQuery(be *pool.Conn, n int) error {
	body, err := sess.readWhole(n)
	if err != nil {
		return err
	}
	sql, _, ok := cstring(body)
	if !ok {
		return fatalf(CodeProtocolViolation, "invalid Query message")
	}
	pl := sess.decide(sql)
	pl = sess.identityQuery(pl)
	if pl.Deny == nil {
		pl = sess.pipelineLexCheck(pl)
	}
	if pl.Deny != nil {
		return sess.sendDenial(be, reqQuery, pl, pl.Deny)
	}
	send, deny, err := sess.hold.query(be, sql, pl.SQL)
	if err != nil {
		return err
	}
	if deny != nil {
		return sess.sendDenial(be, reqQuery, &plan.Plan{Statements: []plan.Statement{{Command: "EXECUTE", Decision: audit.DecisionDeny, Reason: deny.Message}}}, deny)
	}
	run := newRun(pl, nil)
	send = sess.timeEach(run, send, pl.Statements)
	if err := sess.lexGuard(be, true, send); err != nil {
		return err
	}
	sess.armTimeout(run, pl.Statements)
	if err := sess.push(be, request{kind: reqQuery, run: run}); err != nil {
		return err
	}
	if send == sql {
		return writeMessage(be.W, 'Q', body)
	}
	return sess.writeQuery(be, send)
}

// implicitTxCommands are the commands timeEach puts a SET LOCAL in front of
// when they are a query string's only statement.
var implicitTxCommands = map[string]bool{"SELECT": true, "INSERT": true, "UPDATE": true, "DELETE": true, "MERGE": true}

// timeEach lets the backend time each statement of a simple Query (the
// statements stmts, whose text is send) with its policy timeout, where it
// can, and returns the text to send. PostgreSQL applies statement_timeout
// to each statement of a query string and does not flush between them, so
// the proxy's own timer can only bound the whole string. The proxy puts
// SET LOCAL statement_timeout in front of every statement, not only the
// first: a statement of the client's that changes statement_timeout (SET,
// set_config, a function that calls it) changes it for the statements after
// it, and the proxy's SET after it restores the policy's. SET LOCAL ends with
// the string's implicit transaction; its "SET" answers are swallowed.
//
// It does so only when no transaction is open (SET LOCAL would outlive the
// string) and nothing is pending (the last ReadyForQuery's status is then
// the backend's), every statement has a timeout, and none is transaction
// control (which would end or extend the implicit transaction); a single
// statement only if it may run in an implicit transaction (not VACUUM,
// say). Otherwise the proxy's timer alone bounds the string.
func (sess *session) timeEach(run *stmtRun, send string, stmts []plan.Statement) string {
	if len(stmts) == 0 || byte(sess.txStatus.Load()) != 'I' || sess.reqs.pending() != 0 {
		return send
	}
	if len(stmts) == 1 && !implicitTxCommands[stmts[0].Command] {
		return send
	}
	for _, ps := range stmts {
		if ps.TimeoutMS <= 0 || transactionControl(ps.Command) {
			return send
		}
	}
	parts := []string{send}
	if len(stmts) > 1 {
		var err error
		parts, err = pg_query.SplitWithParser(send, true)
		if err != nil || len(parts) != len(stmts) {
			return send
		}
	}
	var b strings.Builder
	b.Grow(len(send) + len(stmts)*40)
	for i, p := range parts {
		if i > 0 {
			// A newline first: the statement may end in a -- comment.
			b.WriteString("\n;\n")
		}
		b.WriteString("SET LOCAL statement_timeout = ")
		b.WriteString(strconv.Itoa(stmts[i].TimeoutMS))
		b.WriteString(";\n")
		b.WriteString(p)
	}
	run.serverTimed = true
	run.setNext, run.setStmts = true, len(stmts)
	return b.String()
}

// transactionControl reports whether a command tag is one of transaction
// control.
func transactionControl(command string) bool {
	for _, p := range []string{"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE", "PREPARE TRANSACTION"} {
		if strings.HasPrefix(command, p) {
			return true
		}
	}
	return false
}

// writeQuery writes a Query message with text sql.
func (sess *session) writeQuery(be *pool.Conn, sql string) error {
	buf, err := (&pgproto3.Query{String: sql}).Encode(sess.scratch[:0])
	if err != nil {
		return err
	}
	sess.scratch = buf
	_, err = be.W.Write(buf)
	return err
}

// sendDenial makes the backend raise the denial in place of the statement
// (see denyStatement). kind is reqQuery for a simple Query and reqExecute for
// the extended protocol, where the injected Parse and Bind are swallowed and
// the client's messages are skipped until Sync.
func (sess *session) sendDenial(be *pool.Conn, kind reqKind, pl *plan.Plan, d *plan.Denial) error {
	id := audit.NewDecisionID()
	sess.hold.denying(be)
	run := newRun(pl, nil)
	run.denyIdx, run.decisionID, run.denyPos = d.Index, id, d.Position
	raise := denyStatement(d, id)
	sess.log.Info().Str("sqlstate", d.Code).Str("reason", d.Message).Str("decision_id", id).Msg("statement denied")
	if kind == reqQuery {
		timed := false
		if d.Prefix != "" && d.Index > 0 && d.Index <= len(pl.Statements) {
			// The statements before the denied one run, with their policy
			// timeouts.
			timed = true
			raise = sess.timeEach(run, d.Prefix, pl.Statements[:d.Index]) + "\n;\n" + raise
		} else if d.Prefix != "" {
			raise = d.Prefix + "\n;\n" + raise
		}
		if d.Prefix != "" {
			// The statements before the denied one run: their session
			// effects count.
			if dd := sess.hold.prefixRuns(be, d.Prefix); dd != nil {
				raise = denyStatement(dd, id)
				timed = false
				run.serverTimed, run.setNext, run.setStmts = false, false, 0
			}
		}
		if timed {
			sess.armTimeout(run, pl.Statements[:d.Index])
		}
		// The prefix runs, and the message may hold the client's names.
		if err := sess.lexGuard(be, true, raise); err != nil {
			return err
		}
		if err := sess.push(be, request{kind: reqQuery, run: run}); err != nil {
			return err
		}
		return sess.writeQuery(be, raise)
	}
	if err := sess.lexGuard(be, false, raise); err != nil {
		return err
	}
	if err := sess.inject(be,
		injected{request{kind: reqParse, swallow: true}, &pgproto3.Parse{Query: raise}},
		injected{request{kind: reqBind, swallow: true}, &pgproto3.Bind{}},
		injected{request{kind: reqExecute, run: run}, &pgproto3.Execute{}},
	); err != nil {
		return err
	}
	sess.skipping = true
	return nil
}

// handleParse decides an extended-protocol Parse once; Bind and Execute
// reuse the decision.
func (sess *session) handleParse(be *pool.Conn, n int) error {
	body, err := sess.readWhole(n)
	if err != nil {
		return err
	}
	var m pgproto3.Parse
	if err := m.Decode(body); err != nil {
		return fatalf(CodeProtocolViolation, "invalid Parse message")
	}
	pl := sess.pipelineLexCheck(sess.decide(m.Query))
	if pl.Deny != nil {
		return sess.sendDenial(be, reqExecute, pl, pl.Deny)
	}
	if dp := sess.hold.checkParse(be, &m); dp != nil {
		return sess.sendDenial(be, reqExecute, dp, dp.Deny)
	}
	if len(sess.stmts) >= maxTrackedStatements && sess.stmts[m.Name] == nil {
		// Every prepared statement must stay decidable at Bind: refuse
		// rather than lose track of one.
		return sess.sendDenial(be, reqExecute, pl, &plan.Denial{Code: CodeProgramLimitExceeded,
			Message: fmt.Sprintf("too many prepared statements in this session (the proxy allows %d)", maxTrackedStatements),
			Hint:    "deallocate prepared statements you no longer use"})
	}
	ps := &prepared{text: m.Query, plan: pl, paramOIDs: m.ParameterOIDs}
	sess.stmts[m.Name] = ps
	if done, err := sess.hold.sendParse(be, m.Name, ps); done {
		return err
	}
	if err := sess.lexGuard(be, false, pl.SQL); err != nil {
		return err
	}
	if err := sess.push(be, request{kind: reqParse}); err != nil {
		return err
	}
	if pl.SQL == m.Query {
		return writeMessage(be.W, 'P', body)
	}
	m.Query = pl.SQL
	buf, err := m.Encode(sess.scratch[:0])
	if err != nil {
		return err
	}
	sess.scratch = buf
	_, err = be.W.Write(buf)
	return err
}

// prepared is a statement the client prepared: its text, parameter types
// and current plan.
type prepared struct {
	text      string
	paramOIDs []uint32
	plan      *plan.Plan
	// beName is the backend's name for a named statement in transaction
	// pooling (see backendStmtName); "" for the unnamed statement.
	beName string
	// failed is set by the pump when the backend skipped or refused the
	// client's Parse: then the statement does not exist.
	failed atomic.Bool
	// parsedSeq orders the client's Parse against result type changes seen
	// since (transaction pooling; see staleness).
	parsedSeq uint64
}

// handleBind records which statement a portal runs and, if the policy
// changed since the statement was decided, decides it again: a revoked
// permission also stops statements prepared before the change.
func (sess *session) handleBind(be *pool.Conn, n int) error {
	b, err := sess.cr.r.Peek(min(5+n, sess.cr.r.Size()))
	if err != nil {
		return errClientRead
	}
	portalName, rest, ok1 := cstring(b[5:])
	stmt, _, ok2 := cstring(rest)
	var pl *plan.Plan
	if ok1 && ok2 {
		if ps := sess.stmts[stmt]; ps != nil {
			if ps.plan.Version != sess.decider.Version() || sess.ident.switched {
				old := ps.plan
				ps.plan = sess.decide(ps.text)
				if ps.plan.Deny == nil && ps.plan.SQL != old.SQL {
					// The new policy rewrites the statement differently:
					// prepare the new text on the backend under the same name.
					if err := sess.reprepare(be, stmt, ps); err != nil {
						return err
					}
				}
			}
			pl = ps.plan
		} else {
			pl = sess.foreignStmtPlan(stmt)
		}
		sess.setPortal(portalName, pl)
	}
	if pl != nil && pl.SwitchTo != nil {
		pl = sess.identityBind(n, pl)
	}
	if pl != nil && pl.Deny != nil {
		if err := sess.drop(n); err != nil {
			return err
		}
		return sess.sendDenial(be, reqExecute, pl, pl.Deny)
	}
	if err := sess.push(be, request{kind: reqBind}); err != nil {
		return err
	}
	return sess.forward(be, n)
}

// foreignStmtPlan is the plan of a Bind of a statement the client did not
// prepare through the protocol: one it prepared with SQL PREPARE, or none
// (the backend then refuses the Bind). Binding it runs what EXECUTE of its
// name runs, so it is decided as that EXECUTE, and its portal has that
// decision's timeout and row cap. nil for the unnamed statement.
func (sess *session) foreignStmtPlan(name string) *plan.Plan {
	if name == "" {
		return nil
	}
	return sess.decide("EXECUTE " + sqlscope.QuoteIdent(name))
}

// setPortal records which plan the portal a Bind creates runs (nil: the
// statement is not the client's own, or unknown).
func (sess *session) setPortal(name string, pl *plan.Plan) {
	var pt *portal
	if pl != nil {
		pt = &portal{plan: pl}
	}
	if name == "" {
		sess.unnamedPortal = pt
	} else if len(sess.portals) < maxTrackedStatements || sess.portals[name] != nil {
		sess.portals[name] = pt
	}
}

// reprepare replaces the backend's statement name with ps's current text,
// swallowing the answers: the client did not ask for them.
func (sess *session) reprepare(be *pool.Conn, name string, ps *prepared) error {
	if err := sess.lexGuard(be, false, ps.plan.SQL); err != nil {
		return err
	}
	return sess.inject(be,
		injected{request{kind: reqClose, swallow: true}, &pgproto3.Close{ObjectType: 'S', Name: name}},
		injected{request{kind: reqParse, swallow: true}, &pgproto3.Parse{Name: name, Query: ps.plan.SQL, ParameterOIDs: ps.paramOIDs}},
	)
}

// injected is a message the proxy sends to the backend on its own, with the
// request that follows its answer.
type injected struct {
	r request
	m pgproto3.FrontendMessage
}

// inject queues and writes messages of the proxy's own.
func (sess *session) inject(be *pool.Conn, msgs ...injected) error {
	for _, x := range msgs {
		if err := sess.push(be, x.r); err != nil {
			return err
		}
		buf, err := x.m.Encode(sess.scratch[:0])
		if err != nil {
			return err
		}
		sess.scratch = buf
		if _, err := be.W.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

// noteClose forgets a closed statement or portal.
func (sess *session) noteClose(n int) {
	b, err := sess.cr.r.Peek(min(5+n, sess.cr.r.Size()))
	if err != nil || len(b) < 6 {
		return
	}
	name, _, ok := cstring(b[6:])
	if !ok {
		return
	}
	switch b[5] {
	case 'S':
		delete(sess.stmts, name)
	case 'P':
		if name == "" {
			sess.unnamedPortal = nil
		}
		delete(sess.portals, name)
	}
}

// handleExecute forwards an Execute with its audit bookkeeping.
func (sess *session) handleExecute(be *pool.Conn, n int) error {
	var pt *portal
	if b, err := sess.cr.r.Peek(min(5+n, sess.cr.r.Size())); err == nil {
		if i := bytes.IndexByte(b[5:], 0); i == 0 {
			pt = sess.unnamedPortal
		} else if i > 0 {
			pt = sess.portals[string(b[5:5+i])]
		}
	}
	r := request{kind: reqExecute}
	if pt != nil {
		r.run = newRun(pt.plan, &pt.sent)
		sess.armTimeout(r.run, pt.plan.Statements)
	}
	if r.run != nil && r.run.timer != nil && sess.reqs.execsPending() {
		// The proxy cancels the statement only once it has seen the end of
		// the Executes sent before it (see reqQueue.frontIs), whose answers
		// the backend keeps in its buffer until a Sync or a Flush: without a
		// Flush in front of this Execute, its timer would wait for them
		// past its end.
		if _, err := be.W.Write(flushMsg); err != nil {
			return err
		}
	}
	if err := sess.push(be, r); err != nil {
		return err
	}
	return sess.forward(be, n)
}

// flushMsg is a Flush message.
var flushMsg = []byte{'H', 0, 0, 0, 4}

// complete writes the audit record of the statement a backend answer (typ
// 'C', 'I', 's' or 'E' with body) finishes. It runs on the pump.
func (sess *session) complete(run *stmtRun, typ byte, body []byte) {
	if run == nil {
		return
	}
	idx := run.next
	if typ != 's' {
		run.next++
		run.own, run.cut = 0, false
		run.copy = copyOut{}
		run.setNext = typ != 'E' && run.next < run.setStmts
	}
	if typ == 'E' || typ == 's' || run.next >= len(run.plan.Statements) {
		run.stopTimer() // the run's statements are done (or paused)
	}
	if sess.auditor == nil || idx >= len(run.plan.Statements) {
		return
	}
	ps := &run.plan.Statements[idx]
	rec := sess.auditBase
	run.who.apply(&rec)
	rec.Time = time.Now()
	rec.Command = ps.Command
	rec.Tables = ps.Tables
	rec.Functions = ps.Functions
	rec.Fingerprint = ps.Fingerprint
	rec.Query = ps.Query
	rec.QueryRaw = ps.QueryRaw
	rec.Decision = ps.Decision
	rec.Reason = ps.Reason
	rec.PolicyVersion = ps.PolicyVersion
	rec.Rewritten = ps.Rewritten
	rec.DurationMS = float64(rec.Time.Sub(run.start).Microseconds()) / 1000
	rec.Rows = -1
	switch {
	case idx == run.denyIdx:
		rec.Decision = audit.DecisionDeny
		rec.DecisionID = run.decisionID
	case run.violationID != "":
		rec.Decision = audit.DecisionDeny
		rec.Reason = "denied: a row the statement writes fails the policy's check"
		rec.DecisionID, run.violationID = run.violationID, ""
	default:
		rec.DecisionID = audit.NewDecisionID()
	}
	switch typ {
	case 'C', 's':
		rec.Success = true
		rec.Rows = tagRows(body)
	case 'I':
		rec.Success = true
	case 'V': // a fast-path call's result
		rec.Success, rec.Rows = true, 1
	case 'E':
		rec.SQLState, rec.Error = errorFields(body)
	}
	sess.auditor.Log(&rec)
}

// copyOut is what the pump knows of a COPY TO STDOUT in progress under a
// row cap. PostgreSQL sends each row in a CopyData message of its own; in
// text and CSV format a header line, if asked for, comes first in one of its
// own; in binary format the file header shares the first row's message and
// the trailer has one of its own.
type copyOut struct {
	on     bool // a CopyOutResponse started it and the statement has a cap
	binary bool
	first  bool // the next CopyData is the first
	header bool // text or CSV: the first CopyData is the header line
}

// startCopy notes a CopyOutResponse (body) of the current statement.
func (r *stmtRun) startCopy(body []byte) {
	if r.next >= len(r.plan.Statements) || r.plan.Statements[r.next].MaxRows <= 0 {
		return
	}
	r.copy = copyOut{on: true, first: true, binary: len(body) > 0 && body[0] == 1}
	if !r.copy.binary {
		r.copy.header = copyHasHeader(r.plan.Statements[r.next].QueryRaw)
	}
}

// copyBinaryTrailer is the CopyData of a binary COPY's trailer: a field
// count of -1.
const copyBinaryTrailer = "\xff\xff"

// copyRow counts a CopyData of the current COPY, of n data bytes that start
// with data (at least its first 64 bytes, or all of it), against max_rows.
// It returns 0 to relay the message, -1 to withhold it, or k > 0 to relay
// only its first k bytes (a binary COPY's file header, without the row that
// shares its message).
func (r *stmtRun) copyRow(data []byte, n int) int {
	c := &r.copy
	first := c.first
	c.first = false
	if c.binary {
		if n == len(copyBinaryTrailer) && string(data) == copyBinaryTrailer {
			return 0
		}
		if h := binaryCopyHeaderLen(data); first && h > 0 {
			if n == h || (n == h+len(copyBinaryTrailer) && string(data[h:n]) == copyBinaryTrailer) {
				return 0 // the header alone, or with the trailer: no row
			}
			if !r.countRow() {
				return h // the header goes, the row does not
			}
			return 0
		}
	} else if first && c.header {
		return 0
	}
	if !r.countRow() {
		return -1
	}
	return 0
}

// binaryCopyHeaderLen is the length of the binary COPY file header at the
// start of data (signature, flags, extension area), or -1 if data does not
// start with one.
func binaryCopyHeaderLen(data []byte) int {
	const sig = "PGCOPY\n\xff\r\n\x00"
	if len(data) < 19 || string(data[:11]) != sig {
		return -1
	}
	ext := int(int32(uint32(data[15])<<24 | uint32(data[16])<<16 | uint32(data[17])<<8 | uint32(data[18])))
	if ext < 0 || ext > 32 || len(data) < 19+ext {
		return -1 // PostgreSQL sends none; anything else counts as a row
	}
	return 19 + ext
}

// copyDataPart is a CopyData message of the first k bytes of data, or nil
// for k < 0.
func copyDataPart(data []byte, k int) []byte {
	if k < 0 {
		return nil
	}
	buf, _ := (&pgproto3.CopyData{Data: data[:k]}).Encode(nil)
	return buf
}

// copyHasHeader reports whether a COPY statement's text asks for a header
// line (HEADER, HEADER true/on/1, CSV HEADER, in any spelling of the
// option's name). A text that does not parse as one COPY has none: each
// message then counts as a row, which can only send fewer.
func copyHasHeader(sql string) bool {
	res, err := pg_query.Parse(sql)
	if err != nil || len(res.Stmts) != 1 {
		return false
	}
	cs := res.Stmts[0].GetStmt().GetCopyStmt()
	if cs == nil || cs.IsFrom {
		return false
	}
	header := false
	for _, o := range cs.Options {
		if d := o.GetDefElem(); d != nil && d.Defname == "header" {
			header, _ = pgbool.Option(d) // what the server rejects never runs
		}
	}
	return header
}

// capOf returns the current statement's max_rows and whether rows were
// withheld from it.
func (r *stmtRun) capOf() (int, bool) {
	if !r.cut || r.next >= len(r.plan.Statements) {
		return 0, false
	}
	return r.plan.Statements[r.next].MaxRows, true
}

// truncationNotice returns a NOTICE that rows were withheld, followed by the
// statement's answer b (header included), a SELECT or FETCH count lowered
// to the rows sent.
func truncationNotice(max int, typ byte, b []byte) []byte {
	out, _ := (&pgproto3.NoticeResponse{
		Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "01000",
		Message: fmt.Sprintf("result truncated to %d rows by policy (max_rows)", max),
		Hint:    "add LIMIT, or page with OFFSET/keyset, to see the rest",
	}).Encode(nil)
	if typ == 'C' {
		tag, _, _ := cstring(b[5:])
		for _, p := range []string{"SELECT ", "FETCH ", "COPY "} {
			if strings.HasPrefix(tag, p) {
				out, _ = (&pgproto3.CommandComplete{CommandTag: []byte(p + strconv.Itoa(max))}).Encode(out)
				return out
			}
		}
	}
	return append(out, b...)
}

// CheckViolationMarker starts the message of the error a rewritten statement
// raises (as a failed integer cast, SQLSTATE 22P02) when a row it writes
// fails the policy's check; it must equal rewrite.CheckViolationMarker.
const CheckViolationMarker = "dbalproxy: check violation on "

// checkViolation turns the backend's error for a failed policy check into
// the error PostgreSQL's row-level security gives, or returns nil if body is
// not one.
func checkViolation(body []byte) (msg []byte, decisionID string) {
	code, text := errorFields(body)
	if code != "22P02" {
		return nil, ""
	}
	i := strings.Index(text, CheckViolationMarker)
	if i < 0 {
		return nil, ""
	}
	decisionID = audit.NewDecisionID()
	table, _, _ := strings.Cut(text[i+len(CheckViolationMarker):], ":")
	_, name, ok := strings.Cut(table, ".")
	if !ok {
		name = table
	}
	buf, err := (&pgproto3.ErrorResponse{
		Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: CodeInsufficientPriv,
		Message: fmt.Sprintf("new row violates row-level security policy for table %q", name),
		Detail:  "The policy's check on " + table + " does not hold for a row this statement writes. decision_id=" + decisionID,
	}).Encode(nil)
	if err != nil {
		return nil, ""
	}
	return buf, decisionID
}

// timeoutError rewrites the backend's "canceling statement due to user
// request" for a statement the proxy cancelled for its policy timeout.
func timeoutError(body []byte, ms int) []byte {
	var m pgproto3.ErrorResponse
	if m.Decode(body) != nil || m.Code != CodeQueryCanceled {
		return nil
	}
	return encodeTimeoutError(&m, ms)
}

// serverTimeoutError is timeoutError for a statement_timeout the backend
// enforced for the policy: only its own timeout error is reported so (a
// cancel the client asked for stays what it is).
func serverTimeoutError(body []byte, ms int) []byte {
	var m pgproto3.ErrorResponse
	if m.Decode(body) != nil || m.Code != CodeQueryCanceled || m.Message != "canceling statement due to statement timeout" {
		return nil
	}
	return encodeTimeoutError(&m, ms)
}

func encodeTimeoutError(m *pgproto3.ErrorResponse, ms int) []byte {
	m.Message = "canceling statement due to statement timeout"
	m.Detail = fmt.Sprintf("The policy allows this statement %d ms.", ms)
	buf, err := m.Encode(nil)
	if err != nil {
		return nil
	}
	return buf
}

// denialError re-encodes the backend's error for an injected denial as the
// client should see it: without the PL/pgSQL context and source location,
// with the syntax error's position (0 for none).
func denialError(body []byte, pos int) []byte {
	var m pgproto3.ErrorResponse
	if m.Decode(body) != nil {
		return nil
	}
	// The backend raised it from the proxy's DO block: its context and
	// source location (pl_exec.c) describe that block, not the client's
	// statement.
	m.Where, m.File, m.Line, m.Routine = "", "", 0, ""
	m.Position = int32(pos)
	buf, err := m.Encode(nil)
	if err != nil {
		return nil
	}
	return buf
}
