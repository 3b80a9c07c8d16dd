package wire

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dbalproxy/dbalproxy/audit"
	"github.com/dbalproxy/dbalproxy/parser"
	"github.com/dbalproxy/dbalproxy/plan"
	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/rs/zerolog"
)

// clientBufSize is the size of each client connection's read and write buffer.
const clientBufSize = 32 * 1024

// session is one client connection. The goroutine running run owns every
// field not under mu; the pump goroutine owns the client writer cw while it
// runs.
type session struct {
	srv  *Server
	id   string
	conn net.Conn // replaced by the TLS conn after an upgrade
	tls  bool
	log  zerolog.Logger

	cr msgReader     // client reader (run's goroutine)
	cw *bufio.Writer // client writer (pump's while it runs, else run's)

	user, database string
	startupParams  map[string]string
	negotiateMinor bool
	unknownOptions []string
	principal      plan.Principal
	scratch        []byte
	bodyBuf        []byte

	keyPID uint32
	// backends hands out the session's backend connections: the login's
	// own pool (Login.Backends) or the server's.
	backends Backends
	// ddlDone is set when a schema change completes; at the next idle
	// ReadyForQuery (it is committed then) the catalog is read again.
	ddlDone   atomic.Bool
	keySecret uint32

	accepted time.Time  // when the connection was accepted (the login's duration)
	panics   panicState // see recover.go

	console bool        // an admin console session (console.go)
	killed  atomic.Bool // KillSession was called (console.go)

	be *pool.Conn // the backend held for the session (session pooling)

	// hold is how the session holds its backend: for the whole session
	// or per transaction (holding.go).
	hold      holding
	sawFatal  bool                   // the pump relayed a FATAL from the backend
	lexHazard atomic.Pointer[string] // set by the pump: the backend reported an unsafe setting (lexguard.go)

	// Statement decisions; decider nil means relay everything unchecked.
	// handles: Query, Parse and Execute are looked into (decided, or
	// renamed for transaction pooling), not just relayed.
	handles       bool
	decider       Decider
	auditor       Auditor
	info          plan.Session
	auditBase     audit.Record
	stmts         map[string]*prepared // prepared statements by name
	portals       map[string]*portal   // named portals
	unnamedPortal *portal
	skipping      bool          // extended protocol: ignoring messages until Sync
	txStatus      atomic.Uint32 // last ReadyForQuery status, set by the pump
	ident         identityState // per-transaction end user (identity.go)

	// reqs holds the forwarded requests whose answers the pump has yet to
	// see. run pushes before it forwards; the pump pops.
	reqs reqQueue

	pumpDone chan struct{}
	stopping atomic.Bool

	closeOnce sync.Once
	// cancelled is signalled (with mu) when a cancel in flight was
	// delivered; the client's next message waits for it, so that a cancel
	// meant for one statement cannot reach the next.
	cancelled sync.Cond
	mu        struct {
		sync.Mutex
		be *pool.Conn // readable by cancel from other goroutines
		// Transaction pooling: the lease may end only when nobody is using
		// it (busy: run's goroutine is handling a client message; batchOpen:
		// extended-protocol messages were sent without their Sync yet;
		// cancelling: a cancel is on its way to this backend) and the
		// client is not pinned to it.
		busy, batchOpen, pinned bool
		cancelling              int
	}
}

func newSession(srv *Server, conn net.Conn) *session {
	id := strconv.FormatUint(srv.nextID.Add(1), 10)
	sess := &session{
		srv:  srv,
		id:   id,
		conn: conn,
		log:  srv.log.With().Str("session_id", id).Str("client_addr", conn.RemoteAddr().String()).Logger(),
		cr:   msgReader{r: bufio.NewReaderSize(conn, clientBufSize), max: srv.cfg.MaxMessageSize},
		cw:   bufio.NewWriterSize(conn, clientBufSize),
		// The login's own pool replaces it once the login is known.
		backends: srv.cfg.Backends,
	}
	sess.hold = sessionHold{sess} // transaction pooling replaces it at login
	sess.accepted = time.Now()
	sess.reqs.init()
	sess.cancelled.L = &sess.mu.Mutex
	return sess
}

// refuse sends a FATAL error to a client that has not started up and closes it.
func (sess *session) refuse(err *Error) {
	setDeadline(sess.conn, time.Second)
	sess.writeError(err, "FATAL")
	_ = sess.cw.Flush()
	sess.closeClient()
}

// terminate ends the session from another goroutine (server shutdown): the
// closed socket ends both of its goroutines, and teardown cleans up.
func (sess *session) terminate() {
	sess.closeClient()
}

func (sess *session) closeClient() {
	sess.closeOnce.Do(func() { _ = sess.conn.Close() })
}

// writeError writes an ErrorResponse for err to the client writer.
func (sess *session) writeError(err error, severity string) {
	msg := toErrorResponse(err, severity, CodeInternalError)
	buf, e := msg.Encode(sess.scratch[:0])
	if e != nil {
		return
	}
	sess.scratch = buf
	_, _ = sess.cw.Write(buf)
}

// run is the session's whole life: startup, authentication, backend, the
// message loop and teardown.
func (sess *session) run() {
	defer sess.closeClient()
	defer sess.recoverRun() // a panic ends this session only: see recover.go
	setDeadline(sess.conn, sess.srv.cfg.StartupTimeout)
	m, err := sess.readStartup()
	if err != nil {
		sess.startupFailed(err)
		return
	}
	if m == nil {
		return // a cancel request, handled
	}
	release, err := sess.login(m) // see startup.go
	if err != nil {
		return
	}
	defer release()
	defer sess.srv.cancels.unregister(sess)
	setDeadline(sess.conn, 0)
	if sess.console { // the admin console: see wire/console.go
		sess.serveConsole()
		return
	}
	sess.log.Debug().Str("role", sess.principal.Role).Msg("client connected")

	sess.hold.start()
	clean := sess.loop()
	sess.teardown(clean)
}

// initStatements prepares the per-statement state once the backend is known.
func (sess *session) initStatements() {
	sess.decider = sess.srv.cfg.Decider
	sess.auditor = sess.srv.cfg.Auditor
	sess.txStatus.Store('I')
	sess.stmts = map[string]*prepared{}
	sess.portals = map[string]*portal{}
	if sess.decider == nil {
		return
	}
	sess.handles = true
	params := make(map[string]string, len(sess.be.Params))
	for k, v := range sess.be.Params {
		params[k] = v
	}
	sess.info = plan.Session{
		ID: sess.id, Principal: sess.principal, Database: sess.database,
		ApplicationName: sess.startupParams["application_name"], ClientAddr: sess.conn.RemoteAddr().String(),
		TLS: sess.tls, BackendParams: params,
	}
	sess.auditBase = audit.Record{
		Event: audit.EventStatement, SessionID: sess.id, ClientAddr: sess.info.ClientAddr,
		User: sess.principal.User, Role: sess.principal.Role, UserID: claimString(sess.principal.Claims, "user_id"),
		Database: sess.database, ApplicationName: sess.info.ApplicationName,
	}
}

func isClosedOrTimeout(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, os.ErrDeadlineExceeded)
}

func (sess *session) attach(be *pool.Conn) {
	sess.be = be
	sess.mu.Lock()
	sess.mu.be = be
	sess.mu.Unlock()
}

func (sess *session) detach() *pool.Conn {
	sess.be = nil
	sess.mu.Lock()
	be := sess.mu.be
	sess.mu.be = nil
	sess.mu.Unlock()
	return be
}

// releaseBackend gives the backend back before the pump ever started.
func (sess *session) releaseBackend() {
	if be := sess.detach(); be != nil {
		sess.backends.Release(be)
	}
}

// loop relays client messages to the backend until the client terminates or
// fails. It reports whether the client ended with Terminate.
func (sess *session) loop() (clean bool) {
	for {
		typ, n, err := sess.cr.header()
		if err != nil {
			if sess.drainWake(err) { // server drain: see wire/server.go
				continue
			}
			var tooLarge *errMessageTooLarge
			if errors.As(err, &tooLarge) {
				sess.fatalFromLoop(fatalf(CodeProtocolViolation, "invalid message: %s", tooLarge.Error()))
			} else if !isClosedOrTimeout(err) {
				sess.fatalFromLoop(fatalf(CodeProtocolViolation, "invalid message format"))
			}
			return false
		}
		if typ == 'X' {
			return true
		}
		sess.waitCancels()
		be, err := sess.hold.backendFor(typ)
		if err != nil {
			sess.leaseFailed(err)
			return false
		}
		if be == nil {
			// Nothing to send it to: a Flush or stray COPY message
			// between transactions, which PostgreSQL would ignore too.
			if err := sess.drop(n); err != nil {
				return false
			}
			continue
		}
		if err := sess.handle(be, typ, n); err != nil {
			var pe *Error
			switch {
			case errors.Is(err, errClientRead), errors.Is(err, errQueueClosed):
			case errors.As(err, &pe):
				sess.fatalFromLoop(pe)
			default:
				sess.backendFailed(be, err)
			}
			return false
		}
		if sess.cr.buffered() == 0 {
			if err := be.W.Flush(); err != nil {
				sess.backendFailed(be, err)
				return false
			}
		}
		sess.hold.messageDone(typ)
	}
}

// errQueueClosed means the pump ended while the loop waited for room.
var errQueueClosed = errors.New("request queue closed")

// handle processes one client message whose header was just peeked.
func (sess *session) handle(be *pool.Conn, typ byte, n int) error {
	if sess.skipping {
		// After an error in the extended protocol everything up to Sync is
		// ignored, as PostgreSQL does; Flush still flushes.
		switch typ {
		case 'S':
			sess.skipping = false
		case 'H':
		default:
			return sess.drop(n)
		}
	}
	sess.noteStatement(typ, n) // for the audit of a panic: see recover.go
	if done, err := sess.hold.extended(be, typ, n); done {
		return err
	}
	var kind reqKind
	switch typ {
	case 'Q':
		if sess.handles {
			return sess.handleQuery(be, n)
		}
		kind = reqQuery
	case 'P':
		if sess.handles {
			return sess.handleParse(be, n)
		}
		kind = reqParse
	case 'B':
		if sess.decider != nil {
			return sess.handleBind(be, n)
		}
		kind = reqBind
	case 'E':
		if sess.handles {
			return sess.handleExecute(be, n)
		}
		kind = reqExecute
	case 'C':
		if sess.decider != nil {
			sess.noteClose(n)
		}
		kind = reqClose
	case 'D':
		kind = reqDescribePortal
		if b, err := sess.cr.r.Peek(6); err == nil && b[5] == 'S' {
			kind = reqDescribeStmt
		}
	case 'S':
		kind = reqSync
	case 'F':
		if sess.decider != nil {
			return sess.handleFunctionCall(be, n)
		}
		// A function named by OID may change session state the proxy
		// cannot see: keep the backend.
		sess.hold.pin("fast-path function call")
		kind = reqFunctionCall
	case 'H', 'd', 'c', 'f':
		return sess.forward(be, n)
	default:
		return fatalf(CodeProtocolViolation, "invalid frontend message type %d", typ)
	}
	if err := sess.push(be, request{kind: kind}); err != nil {
		return err
	}
	return sess.forward(be, n)
}

// push queues a request, flushing the backend first if it must wait.
func (sess *session) push(be *pool.Conn, r request) error {
	sess.stampRun(r.run)
	if !sess.reqs.push(r, be.W) {
		return errQueueClosed
	}
	return nil
}

// drop consumes a client message without forwarding it.
func (sess *session) drop(n int) error {
	if _, err := sess.cr.r.Discard(5 + n); err != nil {
		return errClientRead
	}
	return nil
}

var (
	tagCreate       = []byte("CREATE ")
	tagAlter        = []byte("ALTER ")
	tagDrop         = []byte("DROP ")
	tagImportSchema = []byte("IMPORT FOREIGN SCHEMA")
)

// handleFunctionCall decides a fast-path FunctionCall (psql's \lo_import,
// libpq's lo_* functions) like the same call written in SQL: the function
// is found by OID in the catalog, the policy decides, the call is audited
// and, if allowed, forwarded as sent, under the policy's timeout.
func (sess *session) handleFunctionCall(be *pool.Conn, n int) error {
	body, err := sess.readWhole(n)
	if err != nil {
		return err
	}
	var m pgproto3.FunctionCall
	if err := m.Decode(body); err != nil {
		return fatalf(CodeProtocolViolation, "invalid FunctionCall message")
	}
	sess.info.InTransaction = sess.txStatus.Load() != 'I'
	pl, err := sess.decider.DecideFunctionCall(context.Background(), &sess.info, m.Function, len(m.Arguments))
	if err != nil || pl == nil {
		sess.log.Error().Err(err).Msg("deciding a fast-path function call failed; denying it")
		pl = &plan.Plan{Statements: []plan.Statement{{Command: "FUNCTION CALL", Decision: audit.DecisionDeny, Reason: "decision failed"}},
			Deny: &plan.Denial{Code: CodeInsufficientPriv, Message: "the proxy could not decide this function call, so it was denied",
				Hint: "the proxy's log has the cause"}}
	}
	if pl.Deny != nil {
		return sess.sendDenial(be, reqQuery, pl, pl.Deny)
	}
	// A function named by OID may change session state the proxy cannot
	// see (a large object descriptor, a setting): keep the backend.
	sess.hold.pin("fast-path function call")
	run := newRun(pl, nil)
	sess.armTimeout(run, pl.Statements)
	if err := sess.push(be, request{kind: reqFunctionCall, run: run}); err != nil {
		return err
	}
	buf, err := m.Encode(sess.scratch[:0])
	if err != nil {
		return err
	}
	sess.scratch = buf
	_, err = be.W.Write(buf)
	return err
}

// readWhole returns the body of the message whose header was peeked, and
// consumes it. The slice is valid until the next read.
func (sess *session) readWhole(n int) ([]byte, error) {
	if sess.cr.fits(n) {
		b, err := sess.cr.peekWhole(n)
		if err != nil {
			return nil, errClientRead
		}
		sess.cr.discard(5 + n)
		return b[5:], nil
	}
	body, err := sess.cr.readBody(n, sess.bodyBuf)
	if err != nil {
		return nil, errClientRead
	}
	sess.bodyBuf = body[:0]
	if cap(sess.bodyBuf) > 1<<20 {
		sess.bodyBuf = nil
	}
	return body, nil
}

// errClientRead marks a read error on the client side of forward.
var errClientRead = errors.New("client read failed")

// forward relays the client message whose header was just peeked.
func (sess *session) forward(be *pool.Conn, n int) error {
	if sess.cr.fits(n) {
		b, err := sess.cr.peekWhole(n)
		if err != nil {
			return errClientRead
		}
		_, err = be.W.Write(b)
		sess.cr.discard(len(b))
		return err
	}
	// Larger than the buffer: CopyData streams through; anything else is read
	// whole, within MaxMessageSize.
	typ, _, _ := sess.cr.header()
	if typ == 'd' {
		if err := sess.cr.copyThrough(be.W, n); err != nil {
			be.MarkBroken()
			return err
		}
		return nil
	}
	body, err := sess.cr.readBody(n, sess.bodyBuf)
	if err != nil {
		return errClientRead
	}
	sess.bodyBuf = body[:0]
	if cap(sess.bodyBuf) > 1<<20 {
		sess.bodyBuf = nil // do not keep a huge buffer for the session's life
	}
	return writeMessage(be.W, typ, body)
}

// pump relays backend messages to the client. It owns the client writer
// while it runs. It ends when the backend or the client fails, or when
// stopPump interrupts it.
func (sess *session) pump(be *pool.Conn) {
	defer close(sess.pumpDone)
	defer sess.recoverPump(be) // see recover.go
	br := msgReader{r: be.R, max: 1 << 30}
	for {
		typ, n, err := br.header()
		if err != nil {
			if sess.hold.nudged(be, err) {
				if sess.hold.release(be) {
					return
				}
				continue
			}
			sess.pumpFailed(be, err, true)
			return
		}
		if br.fits(n) {
			b, err := br.peekWhole(n)
			if err != nil {
				if sess.hold.nudged(be, err) {
					continue
				}
				sess.pumpFailed(be, err, true)
				return
			}
			if testPumpHook != nil {
				testPumpHook(typ, b)
			}
			out := sess.inspect(be, typ, b)
			if out != nil {
				_, err = sess.cw.Write(out)
			}
			br.discard(5 + n)
			if err != nil {
				sess.pumpFailed(be, err, false)
				return
			}
			if sess.lexHazard.Load() != nil {
				sess.lexHazardFatal(be)
				return
			}
		} else if err := sess.streamLarge(&br, typ, n); err != nil {
			// Either side may have failed mid-message: the backend's stream
			// is cut either way. Telling a client that is gone costs nothing.
			sess.pumpFailed(be, err, true)
			return
		}
		if br.buffered() == 0 {
			if err := sess.cw.Flush(); err != nil {
				sess.pumpFailed(be, err, false)
				return
			}
		}
		if typ == 'Z' && sess.hold.release(be) {
			return
		}
	}
}

// inspect does the bookkeeping for one whole backend message b (header
// included) and returns what to relay: b itself, a replacement, or nil.
func (sess *session) inspect(be *pool.Conn, typ byte, b []byte) []byte {
	if typ == 'Z' {
		// Before the request is popped: once nothing is pending, the
		// status is the backend's (see timeEach).
		be.TxStatus = b[5]
		sess.txStatus.Store(uint32(b[5]))
		if b[5] == 'I' && sess.ddlDone.Swap(false) {
			// Committed: what the catalog says of this database changed.
			if sess.decider != nil {
				sess.decider.CatalogChanged(sess.database)
			}
			sess.hold.schemaChanged()
		}
	}
	relay, r := sess.reqs.onBackend(typ)
	switch typ {
	case 'D':
		if r.run != nil && !r.run.countRow() {
			return nil // over the policy's max_rows
		}
	case 'H':
		if r.run != nil {
			r.run.startCopy(b[5:])
		}
	case 'd':
		if relay && r.run != nil && r.run.copy.on {
			if k := r.run.copyRow(b[5:], len(b)-5); k != 0 {
				return copyDataPart(b[5:], k) // over the policy's max_rows
			}
		}
	case 'C', 's':
		if r.run != nil && typ == 'C' && r.run.ownTag() {
			return nil // the proxy's own SET LOCAL
		}
		if typ == 'C' && schemaChangeTag(b[5:]) {
			sess.ddlDone.Store(true)
		}
		if r.run != nil {
			max, cut := r.run.capOf()
			sess.complete(r.run, typ, b[5:])
			if cut && relay {
				return truncationNotice(max, typ, b)
			}
		}
	case 'I', 'V':
		if r.run != nil {
			sess.complete(r.run, typ, b[5:])
		}
	case 'E':
		if r.guard != 0 {
			if why := lexGuardFailed(r.guard, b[5:]); why != "" {
				sess.lexHazard.Store(&why) // lexguard.go
				return nil
			}
		}
		sess.hold.backendError(be, r, b[5:])
		if isFatal(b[5:]) {
			sess.sawFatal = true
		}
		if r.run != nil {
			denied := r.run.next == r.run.denyIdx
			timedOut := r.run.timer != nil && r.run.timer.fired.Load()
			ms := 0
			if r.run.timer != nil {
				ms = r.run.timer.ms
			}
			var nb []byte
			switch {
			case denied:
				nb = denialError(b[5:], r.run.denyPos)
			case timedOut:
				nb = timeoutError(b[5:], r.run.policyMS(ms))
			default:
				if ms := r.run.serverTimeout(); ms > 0 {
					nb = serverTimeoutError(b[5:], ms)
				}
				if nb == nil {
					nb, r.run.violationID = checkViolation(b[5:])
				}
			}
			if nb == nil {
				sess.complete(r.run, typ, b[5:])
				break
			}
			sess.complete(r.run, typ, nb[5:])
			return nb
		}
	case 'S':
		var ps pgproto3.ParameterStatus
		if ps.Decode(b[5:]) == nil {
			if why := parser.SettingHazard(ps.Name, ps.Value); why != "" {
				// Something the proxy could not see changed how the
				// backend lexes SQL (lexguard.go): nothing more may run
				// on this session or this connection.
				sess.lexHazard.Store(&why)
				return nil
			}
			be.Params[ps.Name] = ps.Value
			if st, ok := beStates.Get(be); ok {
				st.paramGen.Add(1)
			}
			if ps.Name == "session_authorization" || ps.Name == "is_superuser" {
				return sess.rewriteParam(ps.Name, ps.Value)
			}
		}
	}
	if !relay {
		return nil
	}
	return b
}

// streamLarge relays a backend message too large for the buffer (a big
// DataRow or CopyData) in pieces, or skips it if it answers a swallowed request.
func (sess *session) streamLarge(br *msgReader, typ byte, n int) error {
	relay, r := sess.reqs.onBackend(typ)
	if relay && typ == 'd' && r.run != nil && r.run.copy.on {
		// A row of a COPY TO under max_rows: its first bytes tell.
		head, err := br.r.Peek(5 + min(n, 64))
		if err != nil {
			return err
		}
		if k := r.run.copyRow(head[5:], n); k != 0 {
			if k > 0 {
				if _, err := sess.cw.Write(copyDataPart(head[5:], k)); err != nil {
					return err
				}
			}
			_, err := br.r.Discard(5 + n)
			return err
		}
	}
	if relay && (typ != 'D' || r.run == nil || r.run.countRow()) {
		return br.copyThrough(sess.cw, n)
	}
	_, err := br.r.Discard(5 + n)
	return err
}

func (sess *session) rewriteParam(name, value string) []byte {
	buf, _ := (&pgproto3.ParameterStatus{Name: name, Value: sess.clientParamValue(name, value)}).Encode(nil)
	return buf
}

// pumpFailed ends the pump. A backend failure (fromBackend) that was not
// asked for tells the client and closes its connection, so that run's loop
// ends too.
func (sess *session) pumpFailed(be *pool.Conn, err error, fromBackend bool) {
	if sess.stopping.Load() {
		return
	}
	if fromBackend {
		be.MarkBroken()
		sess.log.Warn().Err(err).Msg("backend connection lost")
		if !sess.sawFatal {
			// The server's own FATAL (57P01 on a shutdown, say) was relayed
			// already when it sent one.
			sess.writeError(fatalf(CodeConnectionFailure, "server closed the connection unexpectedly"), "FATAL")
		}
		_ = sess.cw.Flush()
	}
	sess.closeClient()
}

// lexHazardFatal ends a session whose backend reported a setting that
// makes it lex SQL unlike the proxy (see lexguard.go): the client gets a
// FATAL error, the connection never returns to the pool.
func (sess *session) lexHazardFatal(be *pool.Conn) {
	be.MarkBroken()
	why := *sess.lexHazard.Load()
	sess.log.Error().Str("reason", why).Msg("backend setting changed under the proxy; ending the session")
	sess.writeError(fatalf(CodeFeatureNotSupported, "%s", why), "FATAL")
	_ = sess.cw.Flush()
	sess.closeClient()
}

// stopPump interrupts the pump's read and waits for it to end. In
// transaction pooling there may be no pump (no backend leased); then it only
// waits for the last one to have ended.
func (sess *session) stopPump() {
	sess.mu.Lock()
	sess.stopping.Store(true)
	be := sess.mu.be
	sess.mu.Unlock()
	sess.reqs.close()
	if sess.pumpDone == nil {
		return
	}
	if be == nil {
		<-sess.pumpDone
		return
	}
	_ = be.SetReadDeadline(time.Unix(1, 0))
	<-sess.pumpDone
	_ = be.SetReadDeadline(time.Time{})
}

// fatalFromLoop sends a FATAL error from run's goroutine: the pump is stopped
// first, so that the client writer has one owner.
func (sess *session) fatalFromLoop(e *Error) {
	sess.log.Info().Str("sqlstate", e.Code).Str("error", e.Message).Msg("closing client connection")
	sess.stopPump()
	_ = sess.conn.SetWriteDeadline(time.Now().Add(time.Second))
	sess.writeError(e, "FATAL")
	_ = sess.cw.Flush()
}

// backendFailed handles a write error toward the backend.
func (sess *session) backendFailed(be *pool.Conn, err error) {
	be.MarkBroken()
	sess.log.Warn().Err(err).Msg("writing to the backend failed")
	sess.fatalFromLoop(fatalf(CodeConnectionFailure, "server closed the connection unexpectedly"))
}

// teardown gives the backend back: reused when the session ended at a clean
// ReadyForQuery boundary (in session pooling: outside a transaction), else
// cancelled (if something runs) and closed, so no transaction or lock
// outlives the client.
func (sess *session) teardown(clean bool) {
	sess.closeClient()
	sess.stopPump()
	be := sess.detach()
	if be == nil {
		return
	}
	if !clean {
		sess.log.Debug().Msg("client disconnected without Terminate")
	}
	pending := sess.reqs.pending()
	if pending != 0 || be.Broken() || be.R.Buffered() > 0 || sess.panics.failed.Load() {
		if pending != 0 && !be.Broken() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = be.Cancel(ctx)
			cancel()
		}
		sess.backends.Destroy(be)
		return
	}
	sess.hold.giveBack(be)
}

// cancelRunning forwards a client's CancelRequest to the backend it holds,
// if a statement is running there.
func (sess *session) cancelRunning() {
	sess.cancelIf(nil)
}

// cancelIf cancels what runs on the session's backend if a request is
// outstanding there and cond (called with the session's lock held) agrees.
// The backend cannot be released, and so cannot serve another client, from
// the check until the cancel has been delivered: a cancel only ever reaches
// a statement of this client's.
func (sess *session) cancelIf(cond func() bool) bool {
	sess.mu.Lock()
	be := sess.mu.be
	if be == nil || sess.reqs.pending() == 0 || (cond != nil && !cond()) {
		sess.mu.Unlock()
		return false
	}
	sess.mu.cancelling++
	sess.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := be.Cancel(ctx); err != nil {
		sess.log.Warn().Err(err).Msg("forwarding cancel request failed")
	}
	cancel()
	sess.mu.Lock()
	sess.mu.cancelling--
	if sess.mu.cancelling == 0 {
		sess.cancelled.Broadcast()
	}
	sess.hold.cancelledLocked()
	sess.mu.Unlock()
	return true
}

// waitCancels holds the client's next message back while a cancel is on
// its way to the backend: PostgreSQL ignores a cancel that arrives between
// statements, but one still on the way could reach the statement that
// follows.
func (sess *session) waitCancels() {
	sess.mu.Lock()
	for sess.mu.cancelling > 0 {
		sess.cancelled.Wait()
	}
	sess.mu.Unlock()
}
