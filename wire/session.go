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
	principal      Principal
	scratch        []byte
	bodyBuf        []byte

	keyPID    uint32
	keySecret uint32

	be *pool.Conn // the backend held for the session (session pooling)

	// outstanding counts sync points (Query, Sync, FunctionCall) sent to the
	// backend whose ReadyForQuery has not come back yet. run increments it
	// before forwarding; the pump decrements it.
	outstanding atomic.Int32

	pumpDone chan struct{}
	stopping atomic.Bool

	closeOnce sync.Once
	mu        struct {
		sync.Mutex
		be *pool.Conn // readable by cancel from other goroutines
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
	}
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
	setDeadline(sess.conn, sess.srv.cfg.StartupTimeout)
	m, err := sess.readStartup()
	if err != nil {
		sess.startupFailed(err)
		return
	}
	if m == nil {
		return // a cancel request, handled
	}
	if err := sess.checkStartup(m); err != nil {
		sess.startupFailed(err)
		return
	}
	sess.log = sess.log.With().Str("user", sess.user).Str("database", sess.database).Logger()
	login, err := sess.authenticate()
	if err != nil {
		sess.startupFailed(err)
		return
	}
	sess.principal = Principal{User: login.Name, Role: login.Role, Claims: login.Claims}
	if !sess.srv.databaseAllowed(sess.database) {
		sess.startupFailed(fatalf(CodeInvalidCatalogName, "database %q is not served by this proxy", sess.database))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), sess.srv.cfg.StartupTimeout)
	be, err := sess.srv.cfg.Backends.Acquire(ctx, sess.database)
	cancel()
	if err != nil {
		sess.startupFailed(err)
		return
	}
	sess.attach(be)
	ctx, cancel = context.WithTimeout(context.Background(), sess.srv.cfg.StartupTimeout)
	err = sess.applyStartupParams(ctx)
	cancel()
	if err != nil {
		sess.startupFailed(err)
		sess.releaseBackend()
		return
	}
	sess.srv.cancels.register(sess)
	defer sess.srv.cancels.unregister(sess)
	if err := sess.greet(); err != nil {
		sess.releaseBackend()
		return
	}
	setDeadline(sess.conn, 0)
	sess.log.Debug().Str("role", sess.principal.Role).Msg("client connected")

	sess.pumpDone = make(chan struct{})
	go sess.pump()
	clean := sess.loop()
	sess.teardown(clean)
}

// startupFailed reports an error during startup and logs it. I/O errors
// (a client that went away, a startup timeout) are only logged.
func (sess *session) startupFailed(err error) {
	var pe *Error
	if errors.As(err, &pe) {
		sess.log.Info().Str("sqlstate", pe.Code).Str("error", pe.Message).Msg("connection refused")
		sess.writeError(err, "FATAL")
		_ = sess.cw.Flush()
		return
	}
	if isClosedOrTimeout(err) {
		sess.log.Debug().Err(err).Msg("client gave up during startup")
		return
	}
	var ss sqlStater
	if errors.As(err, &ss) {
		sess.log.Warn().Err(err).Msg("backend unavailable for new client")
		sess.writeError(err, "FATAL")
		_ = sess.cw.Flush()
		return
	}
	sess.log.Warn().Err(err).Msg("startup failed")
	sess.writeError(err, "FATAL")
	_ = sess.cw.Flush()
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
	be := sess.be
	sess.be = nil
	sess.mu.Lock()
	sess.mu.be = nil
	sess.mu.Unlock()
	return be
}

// releaseBackend gives the backend back before the pump ever started.
func (sess *session) releaseBackend() {
	if be := sess.detach(); be != nil {
		sess.srv.cfg.Backends.Release(be)
	}
}

// loop relays client messages to the backend until the client terminates or
// fails. It reports whether the client ended with Terminate.
func (sess *session) loop() (clean bool) {
	be := sess.be
	for {
		typ, n, err := sess.cr.header()
		if err != nil {
			var tooLarge *errMessageTooLarge
			if errors.As(err, &tooLarge) {
				sess.fatalFromLoop(fatalf(CodeProtocolViolation, "invalid message: %s", tooLarge.Error()))
			} else if !isClosedOrTimeout(err) {
				sess.fatalFromLoop(fatalf(CodeProtocolViolation, "invalid message format"))
			}
			return false
		}
		switch typ {
		case 'X':
			return true
		case 'Q', 'S', 'F':
			sess.outstanding.Add(1)
		case 'P', 'B', 'D', 'E', 'C', 'H', 'd', 'c', 'f':
		default:
			sess.fatalFromLoop(fatalf(CodeProtocolViolation, "invalid frontend message type %d", typ))
			return false
		}
		if err := sess.forward(be, n); err != nil {
			if errors.Is(err, errClientRead) {
				return false
			}
			sess.backendFailed(err)
			return false
		}
		if sess.cr.buffered() == 0 {
			if err := be.W.Flush(); err != nil {
				sess.backendFailed(err)
				return false
			}
		}
	}
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
func (sess *session) pump() {
	defer close(sess.pumpDone)
	be := sess.be
	br := msgReader{r: be.R, max: 1 << 30}
	for {
		typ, n, err := br.header()
		if err != nil {
			sess.pumpFailed(err, true)
			return
		}
		if br.fits(n) {
			b, err := br.peekWhole(n)
			if err != nil {
				sess.pumpFailed(err, true)
				return
			}
			switch typ {
			case 'Z':
				be.TxStatus = b[5]
				sess.outstanding.Add(-1)
			case 'S':
				var ps pgproto3.ParameterStatus
				if ps.Decode(b[5:]) == nil {
					be.Params[ps.Name] = ps.Value
					if ps.Name == "session_authorization" || ps.Name == "is_superuser" {
						b = sess.rewriteParam(ps.Name, ps.Value)
						_, err = sess.cw.Write(b)
						br.discard(5 + n)
						if err != nil {
							sess.pumpFailed(err, false)
							return
						}
						continue
					}
				}
			}
			_, err = sess.cw.Write(b)
			br.discard(len(b))
			if err != nil {
				sess.pumpFailed(err, false)
				return
			}
		} else if err := br.copyThrough(sess.cw, n); err != nil {
			// Either side may have failed mid-message: the backend's stream
			// is cut either way. Telling a client that is gone costs nothing.
			sess.pumpFailed(err, true)
			return
		}
		if br.buffered() == 0 {
			if err := sess.cw.Flush(); err != nil {
				sess.pumpFailed(err, false)
				return
			}
		}
	}
}

func (sess *session) rewriteParam(name, value string) []byte {
	buf, _ := (&pgproto3.ParameterStatus{Name: name, Value: sess.clientParamValue(name, value)}).Encode(nil)
	return buf
}

// pumpFailed ends the pump. A backend failure (fromBackend) that was not
// asked for tells the client and closes its connection, so that run's loop
// ends too.
func (sess *session) pumpFailed(err error, fromBackend bool) {
	if sess.stopping.Load() {
		return
	}
	if fromBackend {
		sess.be.MarkBroken()
		sess.log.Warn().Err(err).Msg("backend connection lost")
		sess.writeError(fatalf(CodeConnectionFailure, "server closed the connection unexpectedly"), "FATAL")
		_ = sess.cw.Flush()
	}
	sess.closeClient()
}

// stopPump interrupts the pump's read and waits for it to end.
func (sess *session) stopPump() {
	sess.stopping.Store(true)
	_ = sess.be.SetReadDeadline(time.Unix(1, 0))
	<-sess.pumpDone
	_ = sess.be.SetReadDeadline(time.Time{})
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
func (sess *session) backendFailed(err error) {
	sess.be.MarkBroken()
	sess.fatalFromLoop(fatalf(CodeConnectionFailure, "server closed the connection unexpectedly"))
}

// teardown gives the backend back: reused when the session ended at a clean
// ReadyForQuery boundary, else cancelled (if something runs) and closed, so
// no transaction or lock outlives the client.
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
	if sess.outstanding.Load() != 0 || be.Broken() || be.R.Buffered() > 0 {
		if sess.outstanding.Load() != 0 && !be.Broken() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = be.Cancel(ctx)
			cancel()
		}
		sess.srv.cfg.Backends.Destroy(be)
		return
	}
	sess.srv.cfg.Backends.Release(be)
}

// cancelRunning forwards a client's CancelRequest to the backend it holds,
// if a statement is running there.
func (sess *session) cancelRunning() {
	sess.mu.Lock()
	be := sess.mu.be
	sess.mu.Unlock()
	if be == nil || sess.outstanding.Load() == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := be.Cancel(ctx); err != nil {
		sess.log.Warn().Err(err).Msg("forwarding cancel request failed")
	}
}
