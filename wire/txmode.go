package wire

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/dbalproxy/dbalproxy/audit"
	"github.com/dbalproxy/dbalproxy/parser"
	"github.com/dbalproxy/dbalproxy/plan"
	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/sqlscope"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Transaction pooling: the session leases a backend connection when the
// client starts work and gives it back at the ReadyForQuery that leaves it
// idle outside a transaction with nothing outstanding. See the README's
// "Transaction pooling" section for what is carried and what pins.

// SQLSTATEs PostgreSQL gives for prepared statement names.
const (
	codeDuplicatePStatement = "42P05"
	codeInvalidPStatement   = "26000"
	codeReservedName        = "42939"
)

// reportedSettable are parameters the server reports (ParameterStatus) that
// a client may set: a leased backend must show each client the values it
// was greeted with or set at startup.
var reportedSettable = []string{"application_name", "client_encoding", "DateStyle", "IntervalStyle", "TimeZone", "standard_conforming_strings", "default_transaction_read_only"}

// txHold is transaction pooling's holding (see holding.go): a backend is
// leased per transaction.
type txHold struct {
	sess        *session
	tx          *txShared
	wantParams  map[string]string        // parameters every leased backend must show this client
	wantID      uint64                   // identifies wantParams (see beState.syncedFor)
	sqlPrepared map[string]bool          // names of SQL-level PREPAREd statements (the client is pinned)
	stmtNames   map[string]stmtNameEntry // backend statement names by text (stmtName)
}

func newTxHold(sess *session) *txHold {
	return &txHold{sess: sess, tx: sess.srv.txShared(), sqlPrepared: map[string]bool{}}
}

// login fixes the parameters every lease must show and gives them to the
// login's backend. The client's BackendKeyData carries a process id of
// the proxy's: its backend changes.
func (h *txHold) login(ctx context.Context, be *pool.Conn) (uint32, error) {
	h.computeWantParams(be)
	return 0, h.syncParams(ctx, be)
}

// start gives the login's backend back: the first transaction leases one
// again.
func (h *txHold) start() { h.putBackend(h.sess.detach()) }

// cancelledLocked nudges the pump when the lease may end now that the
// cancel is delivered.
func (h *txHold) cancelledLocked() {
	if h.releasableLocked() {
		h.nudgeLocked()
	}
}

// giveBack ends the lease when the session ends. Unless the client is
// pinned, nothing of its own outlives its transaction on this backend: a
// rollback is all the reset it needs. A pinned backend is reset.
func (h *txHold) giveBack(be *pool.Conn) {
	sess := h.sess
	sess.mu.Lock()
	pinned := sess.mu.pinned
	sess.mu.Unlock()
	if pinned {
		sess.backends.Release(be)
		return
	}
	if be.TxStatus != 'I' {
		stateOf(be, h.tx).setUnnamed("")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := be.Exec(ctx, "ROLLBACK")
		cancel()
		if err != nil || be.TxStatus != 'I' {
			sess.backends.Destroy(be)
			return
		}
	}
	h.putBackend(be)
}

// prefixRuns applies the session effects of the statements before a
// denied one, which run (a session advisory lock outlives the rollback).
// An EXECUTE among them that the client may not run denies them all.
func (h *txHold) prefixRuns(be *pool.Conn, sql string) *plan.Denial {
	return h.txApply(stateOf(be, h.tx), h.tx.effectOf(sql))
}

// denying: the injected statement takes the unnamed slot, as a denial does
// in session pooling.
func (h *txHold) denying(be *pool.Conn) {
	stateOf(be, h.tx).setUnnamed("")
	delete(h.sess.stmts, "")
}

// checkParse applies the session effects of a Parse's text and refuses a
// name the client already uses (the backend never sees the client's names,
// so the proxy answers as PostgreSQL would).
func (h *txHold) checkParse(be *pool.Conn, m *pgproto3.Parse) *plan.Plan {
	sess := h.sess
	if d := h.txApply(stateOf(be, h.tx), h.tx.effectOf(m.Query)); d != nil {
		return &plan.Plan{Statements: []plan.Statement{{Command: "EXECUTE", Decision: audit.DecisionDeny, Reason: d.Message}}, Deny: d}
	}
	if ps := sess.stmts[m.Name]; ps != nil && ps.failed.Load() {
		delete(sess.stmts, m.Name)
	}
	if m.Name != "" && sess.stmts[m.Name] != nil {
		return &plan.Plan{Statements: []plan.Statement{{Command: "PREPARE", Decision: audit.DecisionDeny}},
			Deny: &plan.Denial{Code: codeDuplicatePStatement, Message: fmt.Sprintf("prepared statement %q already exists", m.Name)}}
	}
	return nil
}

// sendParse sends the Parse under the backend's name (txParse).
func (h *txHold) sendParse(be *pool.Conn, name string, ps *prepared) (bool, error) {
	return true, h.txParse(be, name, ps)
}

// extended sends a Bind, Describe or Close with the backend's statement
// names.
func (h *txHold) extended(be *pool.Conn, typ byte, n int) (bool, error) {
	switch typ {
	case 'B':
		return true, h.txBind(be, n)
	case 'D':
		return true, h.txDescribe(be, n)
	case 'C':
		return true, h.txClose(be, n)
	}
	return false, nil
}

// schemaChanged: statements prepared on backends for other clients may
// name what changed (txstate.go).
func (h *txHold) schemaChanged() { h.tx.stale.schemaChanged() }

// txShared returns the server's transaction pooling state.
func (srv *Server) txShared() *txShared {
	srv.txOnce.Do(func() { srv.tx = newTxShared(srv.cfg.Parser) })
	return srv.tx
}

// putBackend gives back a backend left idle outside a transaction with no
// state of the client's own. One that reports a parameter changed during
// the lease the client is not pinned for is closed instead: whatever changed
// it (a function body the proxy cannot see into) may have left more, and no
// other client may see it.
func (h *txHold) putBackend(be *pool.Conn) {
	sess := h.sess
	if be == nil {
		return
	}
	if st, ok := beStates.Get(be); ok {
		if name := st.endLease(be.Params); name != "" {
			sess.log.Warn().Str("parameter", name).
				Msg("a setting changed on the backend connection where the proxy could not see it; closing the connection rather than handing it to another client")
			sess.backends.Destroy(be)
			return
		}
	}
	sess.backends.Put(be)
}

// computeWantParams fixes the parameter values every backend leased to this
// client must show: its startup parameters, and for the reported ones it did
// not set, the server's defaults it is greeted with.
func (h *txHold) computeWantParams(be *pool.Conn) {
	sess := h.sess
	canon := func(k string) string {
		for _, r := range reportedSettable {
			if strings.EqualFold(r, k) {
				return r
			}
		}
		return k
	}
	want := make(map[string]string, len(sess.startupParams)+len(reportedSettable))
	for k, v := range sess.startupParams {
		want[canon(k)] = v
	}
	for _, k := range reportedSettable {
		if _, ok := want[k]; ok {
			continue
		}
		if v, ok := be.InitialParams[k]; ok {
			want[k] = v
		} else if v, ok := be.Params[k]; ok {
			want[k] = v
		}
	}
	h.wantParams = want
	h.wantID = paramSetID(want)
}

// syncParams makes be show the client's parameters, sending only what
// differs (one round trip, or none). Settings another client's startup
// packet left that this client did not ask for are reset.
func (h *txHold) syncParams(ctx context.Context, be *pool.Conn) error {
	if h.paramsSynced(be) {
		return nil // this client's parameters, and nothing changed since
	}
	st := stateOf(be, h.tx)
	gen := st.paramGen.Load()

	var q strings.Builder
	set := map[string]string{}
	keys := make([]string, 0, len(h.wantParams))
	for k := range h.wantParams {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := h.wantParams[k]
		if cur, ok := be.Params[k]; ok {
			if cur == v {
				continue
			}
		} else if cur, ok := st.settings[k]; ok && cur == v {
			continue
		} else {
			set[k] = v
		}
		appendSetConfig(&q, k, v)
	}
	var reset []string
	for k := range st.settings {
		if _, ok := h.wantParams[k]; !ok {
			reset = append(reset, k)
		}
	}
	slices.Sort(reset)
	for _, k := range reset {
		if q.Len() > 0 {
			q.WriteString("; ")
		}
		q.WriteString("RESET ")
		q.WriteString(sqlscope.QuoteIdent(k))
	}
	if q.Len() == 0 {
		st.syncedFor, st.syncedGen = h.wantID, gen
		return nil
	}
	// A simple query drops the backend's unnamed statement.
	st.setUnnamed("")
	if err := be.Exec(ctx, q.String()); err != nil {
		return err
	}
	for _, k := range reset {
		delete(st.settings, k)
	}
	for k, v := range set {
		st.settings[k] = v
	}
	st.syncedFor, st.syncedGen = h.wantID, st.paramGen.Load()
	return nil
}

// paramsSynced reports whether be was last made to show this client's
// parameters and has reported no change since.
func (h *txHold) paramsSynced(be *pool.Conn) bool {
	st := stateOf(be, h.tx)
	return st.syncedFor == h.wantID && st.syncedGen == st.paramGen.Load()
}

// backendFor returns the backend a client message goes to, leasing one if
// the client holds none, and marks the lease busy until messageDone. It
// returns nil for messages that need no backend between transactions.
func (h *txHold) backendFor(typ byte) (*pool.Conn, error) {
	sess := h.sess
	sess.mu.Lock()
	be := sess.mu.be
	if be == nil {
		sess.mu.Unlock()
		switch typ {
		case 'H', 'd', 'c', 'f':
			return nil, nil
		}
		var err error
		if be, err = h.newLease(); err != nil {
			return nil, err
		}
		sess.mu.Lock()
	}
	sess.mu.busy = true
	sess.mu.Unlock()
	return be, nil
}

// messageDone ends the busy mark of backendFor and lets the lease go if it
// became free without the pump seeing it (the pump releases it otherwise).
func (h *txHold) messageDone(typ byte) {
	sess := h.sess
	sess.mu.Lock()
	switch typ {
	case 'P', 'B', 'E', 'D', 'C', 'H':
		sess.mu.batchOpen = true
	case 'S':
		sess.mu.batchOpen = false
	}
	sess.mu.busy = false
	if h.releasableLocked() {
		h.nudgeLocked()
	}
	sess.mu.Unlock()
}

// newLease acquires a backend, gives it the client's parameters and starts
// its pump. A connection that turns out dead before the client's first
// message reached it is replaced, so an idle client never notices that its
// last backend went away.
func (h *txHold) newLease() (*pool.Conn, error) {
	sess := h.sess
	if sess.pumpDone != nil {
		<-sess.pumpDone
	}
	// The common case: an idle connection that already shows this
	// client's parameters.
	if be := sess.backends.TryAcquire(sess.database); be != nil {
		if h.paramsSynced(be) {
			return h.startLease(be)
		}
		h.putBackend(be)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), sess.srv.cfg.StartupTimeout)
		be, err := sess.backends.Acquire(ctx, sess.database)
		if err != nil {
			cancel()
			return nil, sess.acquireFailed(err)
		}
		err = h.syncParams(ctx, be)
		cancel()
		if err != nil {
			sess.backends.Destroy(be)
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Severity != "FATAL" {
				return nil, err // the server refused a parameter
			}
			lastErr = err // the connection went away: take another
			continue
		}
		return h.startLease(be)
	}
	sess.log.Warn().Err(lastErr).Msg("backend connections keep failing")
	return nil, fatalf(CodeConnectionFailure, "the proxy cannot reach the database server")
}

// startLease makes be the session's backend and starts its pump. A
// connection whose server defaults make it lex SQL unlike the proxy (a
// role or database setting made after the pool dialled its first
// connections; see lexguard.go) is closed and the client refused.
func (h *txHold) startLease(be *pool.Conn) (*pool.Conn, error) {
	sess := h.sess
	for _, k := range parser.LexerSettings {
		if why := parser.SettingHazard(k, be.Params[k]); why != "" {
			sess.backends.Destroy(be)
			return nil, fatalf(CodeFeatureNotSupported, "%s", why)
		}
	}
	stateOf(be, h.tx).beginLease(be.Params)
	sess.stopping.Store(false)
	sess.mu.Lock()
	sess.mu.be = be
	sess.mu.Unlock()
	sess.pumpDone = make(chan struct{})
	go sess.pump(be)
	return be, nil
}

// leaseFailed ends a session whose client could not be given a backend.
func (sess *session) leaseFailed(err error) {
	sess.stopPump()
	sess.log.Warn().Err(err).Msg("no backend connection for a transaction")
	_ = sess.conn.SetWriteDeadline(time.Now().Add(time.Second))
	var pe *pgconn.PgError
	var cm clientMessager
	if !errors.As(err, &cm) && errors.As(err, &pe) {
		// The server refused one of the client's parameters. A dial error
		// (cm) may hold a PgError too, but one about the proxy's own
		// connection: the client sees only what the pool lets through.
		err = &Error{Severity: "FATAL", Code: pe.Code, Message: pe.Message}
	}
	sess.writeError(err, "FATAL")
	_ = sess.cw.Flush()
}

// releasableLocked reports whether the lease may end now. Caller holds mu.
func (h *txHold) releasableLocked() bool {
	sess := h.sess
	return sess.mu.be != nil && !sess.mu.pinned && !sess.mu.busy && !sess.mu.batchOpen &&
		sess.mu.cancelling == 0 && !sess.stopping.Load() && sess.txStatus.Load() == 'I' && sess.reqs.pending() == 0
}

// nudgeLocked wakes the pump, blocked reading the backend, so that it
// releases the lease. Caller holds mu.
func (h *txHold) nudgeLocked() {
	sess := h.sess
	_ = sess.mu.be.SetReadDeadline(time.Unix(1, 0))
}

// nudged reports whether a read error of the pump is a nudge (a read
// deadline set by nudgeLocked) rather than a failure, and clears it.
func (h *txHold) nudged(be *pool.Conn, err error) bool {
	sess := h.sess
	if sess.stopping.Load() || !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	_ = be.SetReadDeadline(time.Time{})
	// stopPump sets stopping, then its own deadline: if that deadline came
	// between the check above and the clearing, it is gone, and the pump
	// must not read again (it would wait for the backend forever).
	return !sess.stopping.Load()
}

// release ends the lease of be if it may end, giving be back to the pool.
// Only the pump of be calls it; it returns true if the pump is to stop.
func (h *txHold) release(be *pool.Conn) bool {
	sess := h.sess
	sess.mu.Lock()
	if sess.mu.be != be || !h.releasableLocked() {
		sess.mu.Unlock()
		return false
	}
	sess.mu.be = nil
	sess.mu.Unlock()
	_ = sess.cw.Flush()
	_ = be.SetReadDeadline(time.Time{})
	h.putBackend(be)
	return true
}

// pin keeps the client's backend for the rest of its session: it did
// something whose effect outlives the transaction on that connection.
func (h *txHold) pin(why string) {
	sess := h.sess
	sess.mu.Lock()
	was := sess.mu.pinned
	sess.mu.pinned = true
	sess.mu.Unlock()
	if !was {
		sess.log.Debug().Str("reason", why).Msg("client pinned to its backend connection")
	}
}

// query does transaction pooling's bookkeeping for a simple Query about
// to be sent as sql (the client's text was text). It returns the text to
// send, or a denial in place of the query.
func (h *txHold) query(be *pool.Conn, text, sql string) (string, *plan.Denial, error) {
	sess := h.sess
	st := stateOf(be, h.tx)
	e := h.tx.effectOf(text)
	if len(e.deallocates) == 1 && e.statements == 1 && !h.sqlPrepared[e.deallocates[0]] {
		name := e.deallocates[0]
		if ps := sess.stmts[name]; ps != nil && !ps.failed.Load() && ps.beName != "" && sql == text {
			// DEALLOCATE of a protocol-level statement: the backend knows it
			// under its own name. Make sure it is there, and drop that.
			delete(sess.stmts, "")
			st.setUnnamed("")
			delete(sess.stmts, name)
			if err := h.ensureStmt(be, ps); err != nil {
				return "", nil, err
			}
			st.forget(ps.beName, st.epochNow())
			return "DEALLOCATE " + sqlscope.QuoteIdent(ps.beName), nil, nil
		}
	}
	if d := h.txApply(st, e); d != nil {
		return "", d, nil
	}
	// A simple query drops the unnamed statement, the client's and the
	// backend's.
	delete(sess.stmts, "")
	st.setUnnamed("")
	return sql, nil, nil
}

// txApply applies the session effects e of a statement text the client
// sends (as a Query or a Parse) before it is forwarded, or returns the
// denial to send instead.
func (h *txHold) txApply(st *beState, e *txEffect) *plan.Denial {
	sess := h.sess
	if e == noEffect {
		return nil
	}
	for _, name := range e.prepares {
		if strings.HasPrefix(name, beStmtPrefix) {
			// The proxy's own names on shared backends (backendStmtName):
			// a client's statement of that name could stand in for one of
			// them, or take another client's name for its own.
			return &plan.Denial{Code: codeReservedName, Message: fmt.Sprintf("prepared statement names starting with %q are reserved by the proxy", beStmtPrefix),
				Hint: "choose another name"}
		}
	}
	own := func(name string) bool {
		// The client's SQL-level statements, earlier or in this text.
		return !strings.HasPrefix(name, beStmtPrefix) && (h.sqlPrepared[name] || slices.Contains(e.prepares, name))
	}
	for _, name := range e.executes {
		if !own(name) {
			// The backend may hold statements prepared for other clients:
			// only the client's own SQL-level statements may run.
			return &plan.Denial{Code: codeInvalidPStatement, Message: fmt.Sprintf("prepared statement %q does not exist", name)}
		}
	}
	for _, name := range e.deallocates {
		if !own(name) {
			// Nor may any other be dropped: a name the client did not
			// PREPARE is either unknown to the backend or another's (a
			// protocol-level statement of the client's is renamed on the
			// backend; a DEALLOCATE of it alone is rewritten, see txQuery).
			return &plan.Denial{Code: codeInvalidPStatement, Message: fmt.Sprintf("prepared statement %q does not exist", name)}
		}
	}
	if e.pin != "" {
		h.pin(e.pin)
	}
	for _, name := range e.prepares {
		if len(h.sqlPrepared) < maxTrackedStatements {
			h.sqlPrepared[name] = true
		}
	}
	for _, name := range e.deallocates {
		delete(h.sqlPrepared, name)
	}
	if e.dropsStmts {
		clear(sess.stmts)
		clear(h.sqlPrepared)
		st.clearStmts()
	}
	if e.resetsSettings {
		st.mu.Lock()
		st.settings = map[string]string{}
		st.mu.Unlock()
	}
	return nil
}

func (st *beState) epochNow() uint64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.epoch
}

// txParse sends the Parse of a client statement ps (already recorded under
// name) in transaction pooling.
func (h *txHold) txParse(be *pool.Conn, name string, ps *prepared) error {
	sess := h.sess
	st := stateOf(be, h.tx)
	if name == "" {
		if err := sess.lexGuard(be, false, ps.plan.SQL); err != nil {
			return err
		}
		st.setUnnamed(h.stmtName(ps.plan.SQL, ps.paramOIDs))
		if err := sess.push(be, request{kind: reqParse, ps: ps, st: st}); err != nil {
			return err
		}
		return sess.writeMsg(be, &pgproto3.Parse{Query: ps.plan.SQL, ParameterOIDs: ps.paramOIDs})
	}
	ps.beName = h.stmtName(ps.plan.SQL, ps.paramOIDs)
	ps.parsedSeq = h.tx.stale.next()
	if st.usable(ps.beName, ps.parsedSeq) {
		// Already prepared here: answer the client's Parse with the
		// ParseComplete of an empty unnamed statement, which costs the
		// backend nothing.
		st.setUnnamed("")
		if err := sess.push(be, request{kind: reqParse, ps: ps}); err != nil {
			return err
		}
		return sess.writeMsg(be, &pgproto3.Parse{})
	}
	return h.prepareOn(be, st, ps, false)
}

// usable reports whether name is prepared (or being prepared) on the
// backend and not stale for a client statement parsed at parsed, and marks
// it used.
func (st *beState) usable(name string, parsed uint64) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	e := st.stmts[name]
	if e == nil || e.epoch != st.epoch {
		return false
	}
	if e.state == stmtPresent && (st.stale.isStale(name, e.seq) || st.stale.predates(e.seq, parsed)) {
		return false
	}
	st.clock++
	e.used = st.clock
	return true
}

// prepareOn prepares ps on be under its backend name: Close (a statement of
// that name may or may not exist) and Parse. swallow hides the
// ParseComplete from the client, which did not ask for it.
func (h *txHold) prepareOn(be *pool.Conn, st *beState, ps *prepared, swallow bool) error {
	sess := h.sess
	if err := sess.lexGuard(be, false, ps.plan.SQL); err != nil {
		return err
	}
	var owner *prepared
	if !swallow {
		owner = ps // the client's own Parse
	}
	st.mu.Lock()
	var evict string
	if len(st.stmts) >= maxBackendStmts {
		var oldest uint64 = ^uint64(0)
		for n, e := range st.stmts {
			if e.state == stmtPresent && e.used < oldest {
				evict, oldest = n, e.used
			}
		}
		if evict != "" {
			delete(st.stmts, evict)
		}
	}
	st.clock++
	epoch := st.epoch
	st.stmts[ps.beName] = &beStmt{state: stmtPending, epoch: epoch, used: st.clock}
	st.mu.Unlock()
	msgs := make([]injected, 0, 3)
	if evict != "" {
		msgs = append(msgs, injected{request{kind: reqClose, swallow: true}, &pgproto3.Close{ObjectType: 'S', Name: evict}})
	}
	msgs = append(msgs,
		injected{request{kind: reqClose, swallow: true}, &pgproto3.Close{ObjectType: 'S', Name: ps.beName}},
		injected{request{kind: reqParse, swallow: swallow, st: st, prep: ps.beName, epoch: epoch, ps: owner},
			&pgproto3.Parse{Name: ps.beName, Query: ps.plan.SQL, ParameterOIDs: ps.paramOIDs}},
	)
	return sess.inject(be, msgs...)
}

// ensureStmt makes sure the client statement ps is prepared on be before a
// Bind or Describe uses it.
func (h *txHold) ensureStmt(be *pool.Conn, ps *prepared) error {
	sess := h.sess
	st := stateOf(be, h.tx)
	if ps.beName == "" {
		key := h.stmtName(ps.plan.SQL, ps.paramOIDs)
		st.mu.Lock()
		ok := st.unnamed == key
		st.mu.Unlock()
		if ok {
			return nil
		}
		if err := sess.lexGuard(be, false, ps.plan.SQL); err != nil {
			return err
		}
		st.setUnnamed(key)
		return sess.inject(be, injected{request{kind: reqParse, swallow: true, st: st}, &pgproto3.Parse{Query: ps.plan.SQL, ParameterOIDs: ps.paramOIDs}})
	}
	if st.usable(ps.beName, ps.parsedSeq) {
		return nil
	}
	return h.prepareOn(be, st, ps, true)
}

// errResultTypeChanged is what PostgreSQL answers to a Bind of a statement
// whose result type changed since it was prepared.
var errResultTypeChanged = &plan.Denial{Code: CodeFeatureNotSupported, Message: "cached plan must not change result type"}

// outdated reports whether the client prepared ps before its result type was
// found changed: PostgreSQL refuses every Bind of such a statement until the
// client prepares it again, and so does the proxy, rather than run a copy
// prepared since, whose rows the client would decode with the old
// description.
func (h *txHold) outdated(ps *prepared) bool {
	if ps.beName == "" {
		return false
	}
	m := h.tx.stale.markOf(ps.beName)
	return m != 0 && ps.parsedSeq < m
}

// targetStmt returns the backend's name for the client's statement name,
// preparing it on be first if needed.
func (h *txHold) targetStmt(be *pool.Conn, name string) (string, error) {
	sess := h.sess
	if ps := sess.stmts[name]; ps != nil && ps.failed.Load() {
		delete(sess.stmts, name)
	}
	if ps := sess.stmts[name]; ps != nil {
		if sess.decider != nil && (ps.plan.Version != sess.decider.Version() || sess.ident.switched) {
			ps.plan = sess.decide(ps.text)
			if name != "" && ps.plan.Deny == nil {
				ps.beName = h.stmtName(ps.plan.SQL, ps.paramOIDs)
			}
		}
		if ps.plan.Deny != nil {
			return "", nil
		}
		if err := h.ensureStmt(be, ps); err != nil {
			return "", err
		}
		return ps.beName, nil
	}
	if name == "" {
		// The backend's unnamed statement may be another client's.
		stateOf(be, h.tx).setUnnamed("")
		return "", sess.inject(be, injected{request{kind: reqClose, swallow: true}, &pgproto3.Close{ObjectType: 'S'}})
	}
	if h.sqlPrepared[name] {
		return name, nil
	}
	return safeStmtName(name), nil
}

// txBind forwards a Bind with the backend's statement name.
func (h *txHold) txBind(be *pool.Conn, n int) error {
	sess := h.sess
	body, err := sess.readWhole(n)
	if err != nil {
		return err
	}
	portalName, rest, ok1 := cstring(body)
	stmt, tail, ok2 := cstring(rest)
	if !ok1 || !ok2 {
		return fatalf(CodeProtocolViolation, "invalid Bind message")
	}
	if ps := sess.stmts[stmt]; ps != nil && !ps.failed.Load() && h.outdated(ps) {
		if portalName == "" {
			sess.unnamedPortal = nil
		}
		return sess.sendDenial(be, reqExecute, &plan.Plan{Statements: []plan.Statement{{Command: "EXECUTE", Decision: audit.DecisionAllow, Reason: errResultTypeChanged.Message}}}, errResultTypeChanged)
	}
	// tail stays valid: nothing below reads from the client.
	target, err := h.targetStmt(be, stmt)
	if err != nil {
		return err
	}
	var pl *plan.Plan
	if ps := sess.stmts[stmt]; ps != nil {
		pl = ps.plan
	} else {
		pl = sess.foreignStmtPlan(stmt)
	}
	sess.setPortal(portalName, pl)
	if pl != nil && pl.SwitchTo != nil {
		pl = sess.identityBindBody(body, pl)
	}
	if pl != nil && pl.Deny != nil {
		return sess.sendDenial(be, reqExecute, pl, pl.Deny)
	}
	if err := sess.push(be, request{kind: reqBind, st: stateOf(be, h.tx), bind: target}); err != nil {
		return err
	}
	buf := sess.scratch[:0]
	buf = append(buf, 'B', 0, 0, 0, 0)
	buf = append(buf, portalName...)
	buf = append(buf, 0)
	buf = append(buf, target...)
	buf = append(buf, 0)
	buf = append(buf, tail...)
	return sess.writeFramed(be, buf)
}

// writeFramed fills in the length of a message built in buf (type byte and
// four length bytes first) and writes it.
func (sess *session) writeFramed(be *pool.Conn, buf []byte) error {
	l := len(buf) - 1
	buf[1], buf[2], buf[3], buf[4] = byte(l>>24), byte(l>>16), byte(l>>8), byte(l)
	sess.scratch = buf
	_, err := be.W.Write(buf)
	return err
}

// writeMsg encodes and writes a message to the backend.
func (sess *session) writeMsg(be *pool.Conn, m pgproto3.FrontendMessage) error {
	buf, err := m.Encode(sess.scratch[:0])
	if err != nil {
		return err
	}
	sess.scratch = buf
	_, err = be.W.Write(buf)
	return err
}

// txDescribe forwards a Describe, renaming a statement.
func (h *txHold) txDescribe(be *pool.Conn, n int) error {
	sess := h.sess
	body, err := sess.readWhole(n)
	if err != nil {
		return err
	}
	if len(body) < 2 {
		return fatalf(CodeProtocolViolation, "invalid Describe message")
	}
	kind := body[0]
	name, _, ok := cstring(body[1:])
	if !ok {
		return fatalf(CodeProtocolViolation, "invalid Describe message")
	}
	if kind != 'S' {
		if err := sess.push(be, request{kind: reqDescribePortal}); err != nil {
			return err
		}
		return sess.writeMsg(be, &pgproto3.Describe{ObjectType: kind, Name: name})
	}
	target, err := h.targetStmt(be, name)
	if err != nil {
		return err
	}
	if err := sess.push(be, request{kind: reqDescribeStmt, st: stateOf(be, h.tx), bind: target}); err != nil {
		return err
	}
	return sess.writeMsg(be, &pgproto3.Describe{ObjectType: 'S', Name: target})
}

// txClose forgets a client's statement. The backend's copy stays for the
// next client that prepares the same text; the client gets its
// CloseComplete from a Close of a name that does not exist.
func (h *txHold) txClose(be *pool.Conn, n int) error {
	sess := h.sess
	body, err := sess.readWhole(n)
	if err != nil {
		return err
	}
	if len(body) < 2 {
		return fatalf(CodeProtocolViolation, "invalid Close message")
	}
	kind := body[0]
	name, _, ok := cstring(body[1:])
	if !ok {
		return fatalf(CodeProtocolViolation, "invalid Close message")
	}
	target := name
	if kind == 'S' {
		delete(sess.stmts, name)
		switch {
		case name == "":
			stateOf(be, h.tx).setUnnamed("")
		case h.sqlPrepared[name]:
			delete(h.sqlPrepared, name)
		default:
			target = beStmtPrefix + "none"
		}
	} else {
		if name == "" {
			sess.unnamedPortal = nil
		}
		delete(sess.portals, name)
	}
	if err := sess.push(be, request{kind: reqClose}); err != nil {
		return err
	}
	return sess.writeMsg(be, &pgproto3.Close{ObjectType: kind, Name: target})
}

// backendError does the pump's bookkeeping for an ErrorResponse (body) that
// answers r: the backend's unnamed statement is no longer known, and a
// statement whose result type changed under it is prepared again before its
// next use, on every backend.
func (h *txHold) backendError(be *pool.Conn, r request, body []byte) {
	st := stateOf(be, h.tx)
	st.setUnnamed("")
	if r.bind == "" || !strings.HasPrefix(r.bind, beStmtPrefix) {
		return
	}
	code, msg := errorFields(body)
	if code == codeInvalidPStatement {
		// The proxy's statement is gone from the backend, dropped where
		// the proxy could not see it (dynamic SQL in a function body):
		// prepare it again at its next use rather than fail every time.
		st.mu.Lock()
		delete(st.stmts, r.bind)
		st.mu.Unlock()
		return
	}
	if code == CodeFeatureNotSupported && strings.Contains(msg, "cached plan must not change result type") {
		st.mu.Lock()
		delete(st.stmts, r.bind)
		st.mu.Unlock()
		h.tx.stale.mark(r.bind)
	}
}
