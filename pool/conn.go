package pool

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// bufSize is the size of each connection's read and write buffer.
const bufSize = 32 * 1024

// Conn is one backend connection, held by one session at a time. Its R and W
// are the only reader and writer of the socket: whoever holds the connection
// reads and writes through them, so bytes buffered by one holder are never lost
// to the next.
type Conn struct {
	// R reads backend messages. W buffers messages to the backend.
	R *bufio.Reader
	W *bufio.Writer
	// PID and SecretKey are the backend's own cancel key.
	PID       uint32
	SecretKey []byte
	// Params holds the ParameterStatus values the backend has reported. The
	// holder updates it as it relays ParameterStatus messages.
	Params map[string]string
	// InitialParams are the ParameterStatus values the server reported when
	// the connection was opened: its defaults before any client set anything.
	InitialParams map[string]string
	// TxStatus is the status of the last ReadyForQuery: 'I', 'T' or 'E'. The
	// holder updates it as it relays ReadyForQuery.
	TxStatus byte
	state    any // see State

	netConn  net.Conn
	tlsCfg   *tls.Config
	sub      *subPool
	lastUsed time.Time
	broken   bool

	// The liveness probe, made once per connection (see peekAlive).
	raw      syscall.RawConn
	peekFn   func(fd uintptr) bool
	peekN    int
	peekErr  error
	peekOnce bool
}

func newConn(hc *pgconn.HijackedConn, s *subPool) *Conn {
	params := make(map[string]string, len(hc.ParameterStatuses))
	for k, v := range hc.ParameterStatuses {
		params[k] = v
	}
	initial := make(map[string]string, len(params))
	for k, v := range params {
		initial[k] = v
	}
	return &Conn{
		InitialParams: initial,
		R:             bufio.NewReaderSize(hc.Conn, bufSize),
		W:             bufio.NewWriterSize(hc.Conn, bufSize),
		PID:           hc.PID,
		SecretKey:     hc.SecretKey,
		Params:        params,
		TxStatus:      hc.TxStatus,
		netConn:       hc.Conn,
		tlsCfg:        hc.TLSConfig,
		sub:           s,
		lastUsed:      time.Now(),
	}
}

// NewConn wraps an established backend connection that is idle at a
// ReadyForQuery boundary, for custom dialers and for tests that script a
// backend. The result belongs to no pool: give it back with Close, not
// Release or Destroy.
func NewConn(c net.Conn, pid uint32, secretKey []byte, params map[string]string) *Conn {
	if params == nil {
		params = map[string]string{}
	}
	initial := make(map[string]string, len(params))
	for k, v := range params {
		initial[k] = v
	}
	return &Conn{
		InitialParams: initial,
		R:             bufio.NewReaderSize(c, bufSize), W: bufio.NewWriterSize(c, bufSize),
		PID: pid, SecretKey: secretKey, Params: params, TxStatus: 'I',
		netConn: c, sub: &subPool{}, lastUsed: time.Now(),
	}
}

// Close closes a connection made with NewConn.
func (c *Conn) Close() { c.close() }

// Database is the database this connection is logged in to.
func (c *Conn) Database() string { return c.sub.database }

// SetDeadline sets the socket's read and write deadline (see net.Conn).
func (c *Conn) SetDeadline(t time.Time) error { return c.netConn.SetDeadline(t) }

// SetReadDeadline sets the socket's read deadline; a reader blocked in R
// returns with a timeout error, leaving R's buffered bytes intact.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.netConn.SetReadDeadline(t) }

// MarkBroken records that the connection's protocol state is unknown (for
// example a message was cut off); Release then destroys it.
func (c *Conn) MarkBroken() { c.broken = true }

// Broken reports whether MarkBroken was called.
func (c *Conn) Broken() bool { return c.broken }

func (c *Conn) close() {
	_ = c.netConn.SetDeadline(time.Now().Add(time.Second))
	// A polite Terminate; the server would also clean up after a bare close.
	_, _ = c.netConn.Write([]byte{'X', 0, 0, 0, 4})
	_ = c.netConn.Close()
}

// recentlyUsed is how long after Put a connection is handed out again
// without a liveness probe. Under load (transaction pooling leases a
// connection per transaction) connections come back within microseconds,
// and the probe, a system call, was a tenth of the proxy's work per
// transaction; a backend that died in this window fails the transaction
// that gets it, as one that dies during a transaction does.
const recentlyUsed = 2 * time.Millisecond

// alive reports whether an idle connection still looks usable: nothing to read
// and no EOF. A connection put back within recentlyUsed is not probed; one
// idle for longer is, with a non-blocking MSG_PEEK where the socket allows
// it, else (TLS) with a 1 ms read when it was idle for over a second.
func (c *Conn) alive() bool {
	if c.broken {
		return false
	}
	if c.R.Buffered() > 0 {
		// The server said something while idle: a FATAL before it closed, or
		// a notice. Either way the connection is not clean.
		return false
	}
	if time.Since(c.lastUsed) < recentlyUsed {
		return true
	}
	if ok, known := c.peekAlive(); known {
		return ok
	}
	if time.Since(c.lastUsed) < time.Second {
		return true
	}
	if err := c.netConn.SetReadDeadline(time.Now().Add(time.Millisecond)); err != nil {
		return false
	}
	_, err := c.R.Peek(1)
	_ = c.netConn.SetReadDeadline(time.Time{})
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// peekAlive checks the socket without blocking (a MSG_PEEK of one byte): a
// connection with nothing to read is alive; one with bytes waiting (a FATAL
// the server sent before closing) or at EOF is not. known is false where the
// socket cannot be probed this way (TLS, or no raw socket).
func (c *Conn) peekAlive() (ok, known bool) {
	if !c.peekOnce {
		// The raw connection and the probe are made once: a connection is
		// probed every time it is leased.
		c.peekOnce = true
		if sc, isSys := c.netConn.(syscall.Conn); isSys {
			if raw, err := sc.SyscallConn(); err == nil {
				c.raw = raw
				c.peekFn = func(fd uintptr) bool {
					var b [1]byte
					c.peekN, _, c.peekErr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
					return true
				}
			}
		}
	}
	if c.raw == nil {
		return false, false
	}
	if cerr := c.raw.Read(c.peekFn); cerr != nil {
		return false, true
	}
	n, rerr := c.peekN, c.peekErr
	if rerr != nil {
		if errors.Is(rerr, syscall.EAGAIN) || errors.Is(rerr, syscall.EWOULDBLOCK) {
			return true, true
		}
		return false, true
	}
	// n == 0 is EOF; n > 0 means the server said something while idle.
	_ = n
	return false, true
}

// Exec runs one simple-protocol query to completion, discarding its rows and
// recording ParameterStatus and ReadyForQuery. It returns the server's error as
// a *pgconn.PgError. Only the holder of an idle connection may call it.
func (c *Conn) Exec(ctx context.Context, sql string) error {
	if d, ok := ctx.Deadline(); ok {
		_ = c.netConn.SetDeadline(d)
		defer c.netConn.SetDeadline(time.Time{})
	}
	buf, err := (&pgproto3.Query{String: sql}).Encode(nil)
	if err != nil {
		return err
	}
	if _, err := c.W.Write(buf); err != nil {
		c.broken = true
		return err
	}
	if err := c.W.Flush(); err != nil {
		c.broken = true
		return err
	}
	var first error
	for {
		typ, body, err := c.readMessage()
		if err != nil {
			c.broken = true
			return err
		}
		switch typ {
		case 'E':
			var m pgproto3.ErrorResponse
			if err := m.Decode(body); err != nil {
				c.broken = true
				return err
			}
			if first == nil {
				first = pgconn.ErrorResponseToPgError(&m)
			}
		case 'S':
			var m pgproto3.ParameterStatus
			if err := m.Decode(body); err == nil {
				c.Params[m.Name] = m.Value
			}
		case 'Z':
			if len(body) != 1 {
				c.broken = true
				return errors.New("pool: malformed ReadyForQuery")
			}
			c.TxStatus = body[0]
			return first
		case 'G', 'H':
			// COPY from a reset query: refuse politely and mark unusable.
			c.broken = true
			return errors.New("pool: unexpected COPY during a reset query")
		}
	}
}

// readMessage reads one whole message for Exec; bodies are small here.
func (c *Conn) readMessage() (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(c.R, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[1:])) - 4
	if n < 0 || n > 64<<20 {
		return 0, nil, fmt.Errorf("pool: invalid message length %d", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.R, body); err != nil {
		return 0, nil, err
	}
	return hdr[0], body, nil
}

// Cancel asks the server to cancel whatever this connection is running, the
// way a client's CancelRequest does. It must only be called while the caller
// holds the connection: a cancel that arrives after the connection moved to
// another client would cancel that client's statement.
func (c *Conn) Cancel(ctx context.Context) error {
	addr := c.netConn.RemoteAddr()
	var d net.Dialer
	conn, err := d.DialContext(ctx, addr.Network(), addr.String())
	if err != nil {
		return fmt.Errorf("pool: cancel: %w", err)
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	if c.tlsCfg != nil {
		// Encrypt the cancel like the connection, so the key is not sent in clear.
		if _, err := conn.Write([]byte{0, 0, 0, 8, 4, 210, 22, 47}); err != nil {
			return fmt.Errorf("pool: cancel: %w", err)
		}
		var resp [1]byte
		if _, err := io.ReadFull(conn, resp[:]); err != nil {
			return fmt.Errorf("pool: cancel: %w", err)
		}
		if resp[0] == 'S' {
			tc := tls.Client(conn, c.tlsCfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				return fmt.Errorf("pool: cancel: %w", err)
			}
			conn = tc
		}
	}
	msg, err := (&pgproto3.CancelRequest{ProcessID: c.PID, SecretKey: c.SecretKey}).Encode(nil)
	if err != nil {
		return err
	}
	if _, err := conn.Write(msg); err != nil {
		return fmt.Errorf("pool: cancel: %w", err)
	}
	// The server closes the connection when it has handled the request.
	_, _ = conn.Read(make([]byte, 1))
	return nil
}

// State gives a holder typed access to its bookkeeping about a
// connection's session state (for example which prepared statements exist
// on it): declare one `var x pool.State[*T]` and use x.Get and x.Set. The
// pool keeps it across Put and Acquire, and drops it when Release resets
// the connection, since the reset discards that state on the server too. A
// connection has one such slot: one holder type per program.
type State[T any] struct{}

// Get returns c's bookkeeping, and false if it has none of type T (a new
// connection, or one reset since).
func (State[T]) Get(c *Conn) (v T, ok bool) {
	v, ok = c.state.(T)
	return v, ok
}

// Set stores v as c's bookkeeping.
func (State[T]) Set(c *Conn, v T) { c.state = v }
