package audit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Values of Record.Event.
const (
	EventStatement = "statement" // one record per statement decision
	EventLogin     = "login"     // one record per login attempt, successful or not
)

// Values of Record.Decision.
const (
	DecisionAllow     = "allow"      // forwarded unchanged
	DecisionDeny      = "deny"       // refused with SQLSTATE 42501
	DecisionRewrite   = "rewrite"    // forwarded after rewrite (filters, checks, caps)
	DecisionWouldDeny = "would_deny" // permissive mode: allowed, but strict mode would deny
)

// Record is one audit event. The caller fills it; Log copies it (callers may
// reuse their Record, including the Tables backing array, as soon as Log
// returns).
//
// String fields are written as given: the caller is responsible for passing
// normalized SQL in Query and Rewritten, and for never putting a password or a
// token in Error or Reason. Empty optional fields are omitted from the output.
type Record struct {
	Event           string    // EventStatement or EventLogin; empty means EventStatement
	Time            time.Time // zero: filled by Log with time.Now()
	SessionID       string    // the proxy's session id
	ClientAddr      string    // client's remote address, "host:port"
	User            string    // the login
	Role            string    // the principal's role
	UserID          string    // claims.user_id when present
	EndUser         string    // an end user the service login switched to for a transaction; omitted when empty
	Database        string    // database named in the startup message
	ApplicationName string    // application_name from the startup message
	Command         string    // statement command, e.g. "SELECT", "UPDATE"
	Tables          []string  // "schema.table", in statement order; omitted when empty
	Functions       []string  // the functions the statement calls, as resolved in the catalog ("schema.name"); omitted when empty. Kept as given: callers must not modify it after Log
	Fingerprint     string    // pg_query fingerprint of the statement
	Query           string    // normalized text (literals removed); written as "query" unless Config.LogLiterals
	QueryRaw        string    // original text; written as "query" instead of Query ONLY when Config.LogLiterals is true (Log discards it otherwise)
	Decision        string    // DecisionAllow, DecisionDeny, DecisionRewrite or DecisionWouldDeny
	Reason          string    // the policy's reason, written as given
	PolicyVersion   string    // version of the policy set that decided
	Rewritten       string    // normalized rewritten text, omitted when empty
	DurationMS      float64   // time from receiving the statement to its completion, in milliseconds; always written
	Rows            int64     // rows returned or affected; negative: unknown (omitted). Callers should set -1 when there is no count (logins, denials)
	SQLState        string    // "" on success (omitted)
	Success         bool      // the statement (or login) succeeded; always written
	DecisionID      string    // NewDecisionID(); also sent to a denied client in the error's DETAIL
	Error           string    // short message for failures, written as given (never a password or token)
}

// Config configures a Logger. The zero value writes JSON lines to stdout with
// a 4096-record queue that drops at once when full.
type Config struct {
	// Output is "stdout" (default when empty), "stderr", "off" (Log does
	// nothing), or a file path. A file is opened O_APPEND|O_CREATE|O_WRONLY
	// with mode 0600; an existing regular file with broader permissions is
	// chmod-ed to 0600.
	Output string
	// Format is "json" (default when empty): one JSON object per line; or
	// "console": zerolog.ConsoleWriter, human-readable text for the demo
	// (colored only when the output is a terminal and NO_COLOR is unset).
	Format string
	// QueueSize is the number of records that may wait for the sink.
	// 0 means 4096; negative is an error. Memory grows with use up to about
	// 2 x QueueSize x 400 bytes (the queue and the writer's batch) plus the
	// queued strings.
	QueueSize int
	// BlockTimeout is how long Log may wait for room when the queue is full
	// before dropping the record. 0 means never wait (drop at once); negative
	// is an error.
	BlockTimeout time.Duration
	// LogLiterals writes Record.QueryRaw (the original text, with literals)
	// as "query" instead of the normalized Record.Query. Off by default:
	// literals may carry personal data or secrets.
	LogLiterals bool
	// Writer, when non-nil, overrides Output (tests, embedding). The Logger
	// never closes it.
	Writer io.Writer
}

const (
	defaultQueueSize = 4096
	// closeTimeout bounds how long Close waits for the writer to drain.
	closeTimeout = 5 * time.Second
	// linger is how long the writer pauses after a flush before it takes
	// the queue again (see run).
	linger = time.Millisecond
	// flushSize: the writer hands its buffer to the sink at the end of each
	// batch, or earlier when the buffer reaches this size.
	flushSize = 64 << 10
	// maxKeptBuffer: an encode buffer that grew beyond this (huge queries)
	// is released after a flush instead of being kept for reuse.
	maxKeptBuffer = 1 << 20
	// maxKeptTables: a queue slot keeps its Tables array for reuse up to
	// this capacity.
	maxKeptTables = 64
)

// Logger writes audit records through a bounded queue and one background
// writer goroutine. Create it with New; it is safe for concurrent use.
type Logger struct {
	off          bool          // Output "off": Log is a no-op
	literals     bool          // Config.LogLiterals
	queueSize    int           // Config.QueueSize or its default
	blockTimeout time.Duration // Config.BlockTimeout
	drainTimeout time.Duration // Close's bound; closeTimeout except in tests

	mu struct {
		sync.Mutex
		// queue holds the records waiting for the writer, at most queueSize.
		// Log appends copies into its slots (reusing each slot's Tables
		// array); the writer swaps the whole slice for its emptied previous
		// batch, so slots are recycled and steady state does not allocate.
		queue []Record
		// closed is set by Close; Log then drops.
		closed bool
		// parked: the writer waits on wake for the queue to become non-empty.
		// The Log (or Close) that clears it sends on wake.
		parked bool
		// room, when non-nil, is closed by the writer when it takes the
		// queue (or by Close): Logs waiting for room wait on it.
		room chan struct{}
	}
	wake chan struct{} // capacity 1: wakes the writer (parked, or pausing while the queue is full)
	quit chan struct{} // closed by Close: ends the writer's pause
	done chan struct{} // closed by the writer goroutine when it has exited

	closeOnce sync.Once
	closeErr  error // result of the first Close

	path     string                  // the output file's path ("" unless New opened a file)
	reopened atomic.Pointer[os.File] // set by Reopen; the writer switches to it before its next write

	dropped   atomic.Uint64 // see Dropped
	written   atomic.Uint64 // see Written
	failed    atomic.Uint64 // see Failed
	abandoned atomic.Bool   // set by Close when the drain timed out; the writer then drops the rest

	w writer // owned by the writer goroutine
}

// writer is the state of the background writer goroutine. Only that goroutine
// touches it, except exitErr, which Close reads after done is closed.
type writer struct {
	zl      zerolog.Logger // encodes each event into buf
	console bool           // Config.Format "console"
	buf     *encodeBuffer  // encoded records not yet handed to the sink
	pending uint64         // records in buf
	sink    io.Writer      // where buf goes
	file    *os.File       // non-nil when New opened the output file; closed on exit
	timeBuf []byte         // scratch for the RFC3339Nano timestamp
	pause   *time.Timer    // the pause after a flush
	exitErr error          // error closing file, read by Close after done
}

// encodeBuffer collects encoded records until the next flush. It never
// fails, so zerolog never reports a write error of its own; sink errors are
// counted by the writer at flush time.
type encodeBuffer struct{ b []byte }

func (b *encodeBuffer) Write(p []byte) (int, error) {
	b.b = append(b.b, p...)
	return len(p), nil
}

// timerPool recycles the timers of Log's slow path (queue full, BlockTimeout
// > 0). Since Go 1.23 a stopped timer delivers no stale value, so a pooled
// timer can be Reset safely.
var timerPool sync.Pool

// New validates cfg, opens the output, and starts the background writer.
// The caller must Close the Logger to flush it and release the output.
func New(cfg Config) (*Logger, error) {
	l, err := newLogger(cfg)
	if err != nil {
		return nil, err
	}
	if !l.off {
		go l.run()
	}
	return l, nil
}

// newLogger is New without starting the writer goroutine (the producer-side
// benchmark replaces it).
func newLogger(cfg Config) (*Logger, error) {
	if cfg.QueueSize < 0 {
		return nil, fmt.Errorf("audit: queue size %d is negative", cfg.QueueSize)
	}
	if cfg.BlockTimeout < 0 {
		return nil, fmt.Errorf("audit: block timeout %s is negative", cfg.BlockTimeout)
	}
	var console bool
	switch cfg.Format {
	case "", "json":
	case "console":
		console = true
	default:
		return nil, fmt.Errorf("audit: unknown format %q (want \"json\" or \"console\")", cfg.Format)
	}
	l := &Logger{
		literals:     cfg.LogLiterals,
		queueSize:    cfg.QueueSize,
		blockTimeout: cfg.BlockTimeout,
		drainTimeout: closeTimeout,
	}
	if l.queueSize == 0 {
		l.queueSize = defaultQueueSize
	}

	var sink io.Writer
	var file *os.File
	switch {
	case cfg.Writer != nil:
		sink = cfg.Writer
	case cfg.Output == "" || cfg.Output == "stdout":
		sink = os.Stdout
	case cfg.Output == "stderr":
		sink = os.Stderr
	case cfg.Output == "off":
		l.off = true
		return l, nil
	default:
		f, err := openFile(cfg.Output)
		if err != nil {
			return nil, err
		}
		sink, file = f, f
		l.path = cfg.Output
	}

	l.wake = make(chan struct{}, 1)
	l.quit = make(chan struct{})
	l.done = make(chan struct{})

	buf := &encodeBuffer{b: make([]byte, 0, flushSize)}
	var enc io.Writer = buf
	if console {
		enc = zerolog.ConsoleWriter{
			Out:          buf,
			NoColor:      !isTerminal(sink) || os.Getenv("NO_COLOR") != "",
			TimeFormat:   "15:04:05.000",
			PartsExclude: []string{zerolog.LevelFieldName, zerolog.CallerFieldName},
			FieldsOrder: []string{
				"decision", "user", "role", "user_id", "end_user", "database", "command", "tables",
				"functions", "query", "rewritten", "reason", "success", "sqlstate", "rows", "duration_ms", "error",
				"decision_id", "session_id",
			},
		}
	}
	l.w = writer{
		zl:      zerolog.New(enc),
		console: console,
		buf:     buf,
		sink:    sink,
		file:    file,
		timeBuf: make([]byte, 0, len(time.RFC3339Nano)+8),
	}
	return l, nil
}

// openFile opens (creating if needed) an append-only audit file readable by
// its owner only.
func openFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: open output: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: open output: %w", err)
	}
	// Only regular files: chmod-ing /dev/stdout or a FIFO would change a
	// terminal's or someone else's permissions.
	if fi.Mode().IsRegular() && fi.Mode().Perm()&^0o600 != 0 {
		if err := f.Chmod(0o600); err != nil {
			f.Close()
			return nil, fmt.Errorf("audit: restrict output to mode 0600: %w", err)
		}
	}
	return f, nil
}

// isTerminal reports whether w is a character device (a terminal), without
// depending on an isatty package.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// LogLiterals reports whether the Logger writes Record.QueryRaw (the text
// with literals) instead of Record.Query. Callers may use it to skip keeping
// the raw text when it would be discarded anyway.
func (l *Logger) LogLiterals() bool { return l.literals }

// Log queues a copy of r for the writer. It never blocks longer than
// Config.BlockTimeout (plus a mutex hold of a few hundred nanoseconds): when
// the queue is still full after that (at once when BlockTimeout is 0), the
// record is dropped and counted by Dropped. After Close, Log drops every
// record. Log is safe for concurrent use and does not allocate in steady
// state (only waiting for room on a full queue may). A nil r is ignored.
func (l *Logger) Log(r *Record) {
	if r == nil || l.off {
		return
	}
	var now time.Time
	if r.Time.IsZero() {
		now = time.Now()
	}

	l.mu.Lock()
	if !l.mu.closed && len(l.mu.queue) >= l.queueSize && l.blockTimeout > 0 {
		l.waitForRoom() // returns with l.mu held
	}
	if l.mu.closed || len(l.mu.queue) >= l.queueSize {
		l.mu.Unlock()
		l.dropped.Add(1)
		return
	}
	q := l.mu.queue
	n := len(q)
	if n < cap(q) {
		q = q[:n+1]
	} else {
		q = append(q, Record{})
	}
	slot := &q[n]
	copyRecord(slot, r, l.literals)
	if slot.Time.IsZero() {
		slot.Time = now
	}
	l.mu.queue = q
	wake := l.mu.parked
	l.mu.parked = false
	l.mu.Unlock()
	if wake {
		l.signal()
	}
}

// waitForRoom waits, at most BlockTimeout, until the queue has room or the
// Logger is closed. It is called and returns with l.mu held.
func (l *Logger) waitForRoom() {
	var t *time.Timer
	for !l.mu.closed && len(l.mu.queue) >= l.queueSize {
		if l.mu.room == nil {
			l.mu.room = make(chan struct{})
		}
		room := l.mu.room
		l.mu.Unlock()
		if t == nil {
			t, _ = timerPool.Get().(*time.Timer)
			if t == nil {
				t = time.NewTimer(l.blockTimeout)
			} else {
				t.Reset(l.blockTimeout)
			}
			l.signal() // the writer may be pausing: the queue is full, it should not
		}
		var timedOut bool
		select {
		case <-room:
		case <-t.C:
			timedOut = true
		}
		l.mu.Lock()
		if timedOut {
			break
		}
	}
	if t != nil {
		t.Stop()
		timerPool.Put(t)
	}
}

// signal wakes the writer without blocking: wake has room for one token and a
// pending token is enough.
func (l *Logger) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// copyRecord copies src into the queue slot dst, reusing dst's Tables array.
func copyRecord(dst, src *Record, literals bool) {
	tables := dst.Tables[:0]
	*dst = *src
	dst.Tables = append(tables, src.Tables...)
	if !literals {
		dst.QueryRaw = "" // never keep the literals around when they will not be written
	}
}

// clearSlot empties a handled queue slot so that it does not pin query
// strings, keeping a modest Tables array for reuse.
func clearSlot(rec *Record) {
	tables := rec.Tables[:0]
	if cap(tables) > maxKeptTables {
		tables = nil
	}
	*rec = Record{Tables: tables}
}

// Close stops accepting records, waits for the writer to hand everything
// already queued to the sink (at most 5 s), flushes, and closes the file New
// opened (never Config.Writer, stdout or stderr). If the sink does not drain
// within the bound, Close returns an error and the records still queued are
// dropped (and counted) as soon as the sink's current Write returns. Close
// is idempotent: later calls return the first call's result.
func (l *Logger) Close() error {
	l.closeOnce.Do(func() { l.closeErr = l.close() })
	return l.closeErr
}

func (l *Logger) close() error {
	if l.off {
		return nil
	}
	l.mu.Lock()
	l.mu.closed = true
	if l.mu.room != nil {
		close(l.mu.room) // Logs waiting for room see closed and drop
		l.mu.room = nil
	}
	wake := l.mu.parked
	l.mu.parked = false
	l.mu.Unlock()
	close(l.quit)
	if wake {
		l.signal()
	}

	t := time.NewTimer(l.drainTimeout)
	defer t.Stop()
	select {
	case <-l.done:
		return l.w.exitErr
	case <-t.C:
		l.abandoned.Store(true)
		return fmt.Errorf("audit: close: the sink did not take the queued records within %s; the rest are dropped", l.drainTimeout)
	}
}

// Reopen opens the output file again by its path, for log rotation: after
// `mv audit.jsonl audit.jsonl.1` and Reopen, records go to a new
// audit.jsonl. The file is opened at once (an error leaves the current file
// in use); the writer switches to it before its next write and closes the
// old one. Reopen does nothing when the output is not a file New opened
// (stdout, stderr, off, Config.Writer) or after Close.
func (l *Logger) Reopen() error {
	if l.path == "" {
		return nil
	}
	f, err := openFile(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.closed {
		// The writer may have exited already: it would never take f.
		f.Close()
		return nil
	}
	// The writer takes the file before it exits (run), since Close sets
	// closed after this under the same lock.
	if old := l.reopened.Swap(f); old != nil {
		old.Close() // a Reopen the writer had not yet taken
	}
	return nil
}

// switchFile makes f the sink (the writer goroutine only), closing the file
// it replaces.
func (l *Logger) switchFile(f *os.File) {
	w := &l.w
	if w.file != nil {
		_ = w.file.Close()
	}
	w.sink, w.file = f, f
}

// Dropped returns the number of records dropped because the queue was full
// (after BlockTimeout), because they were logged after Close, because Close
// gave up waiting for a slow sink, or because zerolog is disabled globally.
// With Output "off" nothing is counted.
func (l *Logger) Dropped() uint64 { return l.dropped.Load() }

// Written returns the number of records the sink accepted (its Write returned
// no error).
func (l *Logger) Written() uint64 { return l.written.Load() }

// Failed returns the number of records lost because the sink's Write
// returned an error (for example a full disk). The writer keeps going: later
// records are written if the sink recovers.
func (l *Logger) Failed() uint64 { return l.failed.Load() }

// run is the writer goroutine. While the queue is empty it is parked, and
// the next Log wakes it. It takes the whole queue at once (swapping in its
// emptied previous batch), encodes the batch, hands it to the sink in one
// Write, and then, unless the batch was large, pauses for linger before
// taking the queue again, so that under load a Log finds no parked writer to
// wake (a wake-up costs the producer more than the rest of Log) and the sink
// gets one write per batch.
func (l *Logger) run() {
	w := &l.w
	defer close(l.done)
	var batch []Record
	for {
		var closing, ok bool
		batch, closing, ok = l.take(batch)
		if !ok {
			break
		}
		for i := range batch {
			l.handle(&batch[i])
		}
		l.flush()
		if !closing && len(batch)*4 < l.queueSize {
			l.pause()
		}
	}
	if f := l.reopened.Swap(nil); f != nil {
		l.switchFile(f)
	}
	if w.file != nil {
		w.exitErr = errors.Join(w.file.Sync(), w.file.Close())
		if w.exitErr != nil {
			w.exitErr = fmt.Errorf("audit: close output: %w", w.exitErr)
		}
	}
}

// take waits until the queue is non-empty, then swaps it for spare (emptied)
// and returns it, with whether Close has begun. ok is false when the Logger
// is closed and the queue is empty: the writer is done.
func (l *Logger) take(spare []Record) (batch []Record, closing, ok bool) {
	l.mu.Lock()
	for len(l.mu.queue) == 0 {
		if l.mu.closed {
			l.mu.Unlock()
			return spare, true, false
		}
		l.mu.parked = true
		l.mu.Unlock()
		<-l.wake
		l.mu.Lock()
	}
	batch = l.mu.queue
	l.mu.queue = spare[:0]
	if l.mu.room != nil {
		close(l.mu.room)
		l.mu.room = nil
	}
	closing = l.mu.closed
	l.mu.Unlock()
	return batch, closing, true
}

// pause waits linger, or less if a Log finds the queue full or Close begins.
func (l *Logger) pause() {
	w := &l.w
	if w.pause == nil {
		w.pause = time.NewTimer(linger)
	} else {
		w.pause.Reset(linger)
	}
	select {
	case <-w.pause.C:
		return
	case <-l.wake:
	case <-l.quit:
	}
	w.pause.Stop()
}

// handle encodes one record into the buffer (or drops it once Close gave up
// on the sink) and clears its slot.
func (l *Logger) handle(rec *Record) {
	w := &l.w
	switch {
	case l.abandoned.Load():
		l.dropped.Add(1)
	case w.encode(rec, l.literals):
		w.pending++
		if len(w.buf.b) >= flushSize {
			l.flush()
		}
	default:
		l.dropped.Add(1) // zerolog disabled globally
	}
	clearSlot(rec)
}

// flush hands the buffer to the sink and accounts for its records. Records
// encoded before Close gave up on the sink are dropped instead.
func (l *Logger) flush() {
	w := &l.w
	if w.pending == 0 {
		w.buf.b = w.buf.b[:0]
		return
	}
	if f := l.reopened.Swap(nil); f != nil {
		l.switchFile(f)
	}
	if l.abandoned.Load() {
		l.dropped.Add(w.pending)
	} else {
		n, err := w.sink.Write(w.buf.b)
		if err == nil && n < len(w.buf.b) {
			err = io.ErrShortWrite
		}
		if err != nil {
			l.failed.Add(w.pending)
		} else {
			l.written.Add(w.pending)
		}
	}
	w.pending = 0
	if cap(w.buf.b) > maxKeptBuffer {
		w.buf.b = make([]byte, 0, flushSize)
	} else {
		w.buf.b = w.buf.b[:0]
	}
}

// encode appends one record to the buffer. Field names and the omission
// rules are documented in doc.go. It returns false when zerolog is disabled
// globally and nothing was encoded.
func (w *writer) encode(r *Record, literals bool) bool {
	e := w.zl.Log()
	if e == nil {
		return false
	}
	w.timeBuf = r.Time.UTC().AppendFormat(w.timeBuf[:0], time.RFC3339Nano)
	e.Bytes("time", w.timeBuf)
	event := r.Event
	if event == "" {
		event = EventStatement
	}
	e.Str("event", event)
	optStr(e, "session_id", r.SessionID)
	optStr(e, "client_addr", r.ClientAddr)
	optStr(e, "user", r.User)
	optStr(e, "role", r.Role)
	optStr(e, "user_id", r.UserID)
	optStr(e, "end_user", r.EndUser)
	optStr(e, "database", r.Database)
	optStr(e, "application_name", r.ApplicationName)
	optStr(e, "command", r.Command)
	if len(r.Tables) > 0 {
		e.Strs("tables", r.Tables)
	}
	if len(r.Functions) > 0 {
		e.Strs("functions", r.Functions)
	}
	optStr(e, "fingerprint", r.Fingerprint)
	if literals && r.QueryRaw != "" {
		e.Str("query", r.QueryRaw)
	} else {
		optStr(e, "query", r.Query)
	}
	optStr(e, "decision", r.Decision)
	optStr(e, "reason", r.Reason)
	optStr(e, "policy_version", r.PolicyVersion)
	optStr(e, "rewritten", r.Rewritten)
	e.Float64("duration_ms", r.DurationMS)
	if r.Rows >= 0 {
		e.Int64("rows", r.Rows)
	}
	optStr(e, "sqlstate", r.SQLState)
	e.Bool("success", r.Success)
	optStr(e, "decision_id", r.DecisionID)
	optStr(e, "error", r.Error)
	if w.console {
		e.Msg(event) // the console line starts with time and event
		return true
	}
	e.Send()
	return true
}

func optStr(e *zerolog.Event, key, val string) {
	if val != "" {
		e.Str(key, val)
	}
}

// SeedOperation maps a statement command to the seed record's "operation"
// (see the package documentation): SELECT -> read, INSERT -> create,
// UPDATE -> update, DELETE -> delete; any other command is returned
// lower-cased (e.g. "merge", "copy", "truncate").
func SeedOperation(command string) string {
	switch strings.ToUpper(command) {
	case "SELECT":
		return "read"
	case "INSERT":
		return "create"
	case "UPDATE":
		return "update"
	case "DELETE":
		return "delete"
	}
	return strings.ToLower(command)
}
