package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// syncBuffer is a bytes.Buffer safe to read while the writer goroutine writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// blockingWriter blocks every Write until release is closed, and signals
// entered (without blocking) each time a Write starts.
type blockingWriter struct {
	entered chan struct{}
	release chan struct{}
	out     syncBuffer
}

func newBlockingWriter() *blockingWriter {
	return &blockingWriter{entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	select {
	case w.entered <- struct{}{}:
	default:
	}
	<-w.release
	return w.out.Write(p)
}

func (w *blockingWriter) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-w.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the writer never called Write")
	}
}

func mustNew(t *testing.T, cfg Config) *Logger {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return l
}

func mustClose(t *testing.T, l *Logger) {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// decodeLines decodes every line of out as one JSON object.
func decodeLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for line := range strings.Lines(out) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line is not a JSON object: %v\n%s", err, line)
		}
		recs = append(recs, m)
	}
	return recs
}

func fullRecord() Record {
	return Record{
		Event:           EventStatement,
		Time:            time.Date(2024, 1, 15, 10, 30, 0, 123456789, time.FixedZone("CET", 3600)),
		SessionID:       "s-1",
		ClientAddr:      "127.0.0.1:5555",
		User:            "alice",
		Role:            "admin",
		UserID:          "user_123",
		EndUser:         "bob",
		Database:        "app",
		ApplicationName: "psql",
		Command:         "UPDATE",
		Tables:          []string{"public.users", "public.orders"},
		Fingerprint:     "a0b1c2d3",
		Query:           "UPDATE users SET email = $1 WHERE id = $2",
		QueryRaw:        "UPDATE users SET email = 'a@example.com' WHERE id = 7",
		Decision:        DecisionRewrite,
		Reason:          "users may update their own row",
		PolicyVersion:   "v42",
		Rewritten:       "UPDATE users SET email = $1 WHERE id = $2 AND id = $3",
		DurationMS:      1.25,
		Rows:            1,
		SQLState:        "23505",
		Success:         false,
		DecisionID:      "7k3q9x0m2c8v4d1r",
		Error:           "duplicate key",
	}
}

func TestRecordFields(t *testing.T) {
	var out syncBuffer
	l := mustNew(t, Config{Writer: &out})
	r := fullRecord()
	l.Log(&r)
	mustClose(t, l)

	if !strings.HasPrefix(out.String(), `{"time":"`) || !strings.HasSuffix(out.String(), "}\n") {
		t.Errorf("want one JSON line starting with time, got %q", out.String())
	}
	recs := decodeLines(t, out.String())
	if len(recs) != 1 {
		t.Fatalf("got %d records, want 1", len(recs))
	}
	got := recs[0]
	want := map[string]any{
		"time":             "2024-01-15T09:30:00.123456789Z",
		"event":            "statement",
		"session_id":       "s-1",
		"client_addr":      "127.0.0.1:5555",
		"user":             "alice",
		"role":             "admin",
		"user_id":          "user_123",
		"end_user":         "bob",
		"database":         "app",
		"application_name": "psql",
		"command":          "UPDATE",
		"tables":           []any{"public.users", "public.orders"},
		"fingerprint":      "a0b1c2d3",
		"query":            "UPDATE users SET email = $1 WHERE id = $2",
		"decision":         "rewrite",
		"reason":           "users may update their own row",
		"policy_version":   "v42",
		"rewritten":        "UPDATE users SET email = $1 WHERE id = $2 AND id = $3",
		"duration_ms":      1.25,
		"rows":             float64(1),
		"sqlstate":         "23505",
		"success":          false,
		"decision_id":      "7k3q9x0m2c8v4d1r",
		"error":            "duplicate key",
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("field %q missing", k)
			continue
		}
		if fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("field %q = %#v, want %#v", k, g, w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected field %q = %#v", k, got[k])
		}
	}
	if l.Written() != 1 || l.Dropped() != 0 {
		t.Errorf("Written=%d Dropped=%d, want 1, 0", l.Written(), l.Dropped())
	}
}

func TestEmptyFieldsOmitted(t *testing.T) {
	var out syncBuffer
	l := mustNew(t, Config{Writer: &out})
	before := time.Now()
	l.Log(&Record{Rows: -1, Success: true}) // zero Time and Event: filled in
	l.Log(&Record{Event: EventLogin, User: "mallory", Rows: -1, SQLState: "28P01", Error: "password authentication failed"})
	mustClose(t, l)

	recs := decodeLines(t, out.String())
	if len(recs) != 2 {
		t.Fatalf("got %d records, want 2", len(recs))
	}
	var keys []string
	for k := range recs[0] {
		keys = append(keys, k)
	}
	if len(keys) != 4 {
		t.Errorf("minimal record has fields %v, want only time, event, duration_ms, success", keys)
	}
	if recs[0]["event"] != "statement" || recs[0]["success"] != true || recs[0]["duration_ms"] != 0.0 {
		t.Errorf("minimal record = %v", recs[0])
	}
	ts, err := time.Parse(time.RFC3339Nano, recs[0]["time"].(string))
	if err != nil || ts.Before(before.Add(-time.Second)) || ts.After(time.Now().Add(time.Second)) {
		t.Errorf("time %v (err %v) not filled with now", recs[0]["time"], err)
	}
	if !strings.HasSuffix(recs[0]["time"].(string), "Z") {
		t.Errorf("time %v is not UTC", recs[0]["time"])
	}
	login := recs[1]
	if login["event"] != "login" || login["user"] != "mallory" || login["sqlstate"] != "28P01" ||
		login["error"] != "password authentication failed" || login["success"] != false {
		t.Errorf("login record = %v", login)
	}
	if _, ok := login["rows"]; ok {
		t.Errorf("negative Rows written: %v", login)
	}
}

func TestLogCopiesRecord(t *testing.T) {
	bw := newBlockingWriter()
	l := mustNew(t, Config{Writer: bw, QueueSize: 4})
	l.Log(&Record{User: "first", Rows: -1})
	bw.waitEntered(t) // the writer is now stuck: the next record is encoded after we mutate it

	r := Record{User: "alice", Tables: []string{"public.users"}, Rows: -1}
	l.Log(&r)
	r.User = "mutated"
	r.Tables[0] = "public.mutated"
	close(bw.release)
	mustClose(t, l)

	recs := decodeLines(t, bw.out.String())
	if len(recs) != 2 {
		t.Fatalf("got %d records, want 2", len(recs))
	}
	if recs[1]["user"] != "alice" || fmt.Sprint(recs[1]["tables"]) != "[public.users]" {
		t.Errorf("Log did not copy the record: %v", recs[1])
	}
}

func TestLiterals(t *testing.T) {
	const literal = "s3cret-literal-4711"
	r := Record{
		Query:    "SELECT * FROM users WHERE password = $1",
		QueryRaw: "SELECT * FROM users WHERE password = '" + literal + "'",
		Rows:     -1,
	}
	onlyRaw := Record{QueryRaw: "SELECT '" + literal + "'", Rows: -1} // no normalized text: no query at all

	t.Run("off", func(t *testing.T) {
		var out syncBuffer
		l := mustNew(t, Config{Writer: &out})
		if l.LogLiterals() {
			t.Error("LogLiterals() = true, want false")
		}
		l.Log(&r)
		l.Log(&onlyRaw)
		mustClose(t, l)
		if strings.Contains(out.String(), literal) {
			t.Fatalf("literal leaked into the output:\n%s", out.String())
		}
		recs := decodeLines(t, out.String())
		if recs[0]["query"] != r.Query {
			t.Errorf("query = %v, want the normalized %q", recs[0]["query"], r.Query)
		}
		if _, ok := recs[1]["query"]; ok {
			t.Errorf("query written from QueryRaw: %v", recs[1])
		}
	})
	t.Run("on", func(t *testing.T) {
		var out syncBuffer
		l := mustNew(t, Config{Writer: &out, LogLiterals: true})
		if !l.LogLiterals() {
			t.Error("LogLiterals() = false, want true")
		}
		l.Log(&r)
		mustClose(t, l)
		recs := decodeLines(t, out.String())
		if recs[0]["query"] != r.QueryRaw {
			t.Errorf("query = %v, want the raw %q", recs[0]["query"], r.QueryRaw)
		}
		if strings.Count(out.String(), "password =") != 1 {
			t.Errorf("want the query once (raw only):\n%s", out.String())
		}
	})
}

func TestFileOutput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	for i, user := range []string{"first", "second"} {
		l := mustNew(t, Config{Output: path})
		l.Log(&Record{User: user, Rows: -1})
		mustClose(t, l)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("logger %d: mode %v, want 0600", i, fi.Mode().Perm())
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recs := decodeLines(t, string(data))
	if len(recs) != 2 || recs[0]["user"] != "first" || recs[1]["user"] != "second" {
		t.Errorf("want two appended records, got:\n%s", data)
	}
}

func TestFileOutputRestrictsMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte("{\"old\":true}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	l := mustNew(t, Config{Output: path})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v after New, want 0600", fi.Mode().Perm())
	}
	l.Log(&Record{User: "new", Rows: -1})
	mustClose(t, l)
	data, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(data), "{\"old\":true}\n") || len(decodeLines(t, string(data))) != 2 {
		t.Errorf("existing content not kept or record not appended:\n%s", data)
	}
}

func TestSlowSink(t *testing.T) {
	const blockTimeout = 100 * time.Millisecond
	const slack = 400 * time.Millisecond // -race and a loaded 2-core machine
	bw := newBlockingWriter()
	l := mustNew(t, Config{Writer: bw, QueueSize: 2, BlockTimeout: blockTimeout})

	l.Log(&Record{User: "u0", Rows: -1})
	bw.waitEntered(t) // the writer holds u0 and is stuck in Write
	for _, u := range []string{"u1", "u2"} {
		start := time.Now()
		l.Log(&Record{User: u, Rows: -1})
		if d := time.Since(start); d >= blockTimeout {
			t.Errorf("Log with room in the queue took %v", d)
		}
	}
	for i := range 3 { // queue full: each waits BlockTimeout, then drops
		start := time.Now()
		l.Log(&Record{User: "dropped", Rows: -1})
		d := time.Since(start)
		if d < blockTimeout-10*time.Millisecond || d > blockTimeout+slack {
			t.Errorf("Log %d on a full queue returned after %v, want about %v", i, d, blockTimeout)
		}
	}
	if got := l.Dropped(); got != 3 {
		t.Errorf("Dropped = %d, want 3", got)
	}
	if got := l.Written(); got != 0 {
		t.Errorf("Written = %d before the sink unblocked, want 0", got)
	}

	// Close while the sink is still stuck, then unblock it: Close must drain.
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	for !isClosing(l) {
		time.Sleep(time.Millisecond)
	}
	close(bw.release)
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	recs := decodeLines(t, bw.out.String())
	var users []string
	for _, r := range recs {
		users = append(users, r["user"].(string))
	}
	if strings.Join(users, ",") != "u0,u1,u2" {
		t.Errorf("drained %v, want u0,u1,u2", users)
	}
	if l.Written() != 3 || l.Dropped() != 3 {
		t.Errorf("Written=%d Dropped=%d, want 3, 3", l.Written(), l.Dropped())
	}
}

func isClosing(l *Logger) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.closed
}

func TestFullQueueNoWaitDropsAtOnce(t *testing.T) {
	bw := newBlockingWriter()
	l := mustNew(t, Config{Writer: bw, QueueSize: 1}) // BlockTimeout 0
	l.Log(&Record{Rows: -1})
	bw.waitEntered(t)
	l.Log(&Record{Rows: -1}) // fills the queue
	start := time.Now()
	for range 100 {
		l.Log(&Record{Rows: -1})
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("100 drops took %v, want no waiting", d)
	}
	if l.Dropped() != 100 {
		t.Errorf("Dropped = %d, want 100", l.Dropped())
	}
	close(bw.release)
	mustClose(t, l)
	if l.Written() != 2 {
		t.Errorf("Written = %d, want 2", l.Written())
	}
}

func TestCloseDrainIsBounded(t *testing.T) {
	bw := newBlockingWriter()
	l := mustNew(t, Config{Writer: bw, QueueSize: 8})
	l.drainTimeout = 100 * time.Millisecond
	l.Log(&Record{Rows: -1})
	bw.waitEntered(t)
	for range 3 {
		l.Log(&Record{Rows: -1})
	}
	start := time.Now()
	err := l.Close()
	if err == nil {
		t.Fatal("Close on a stuck sink returned nil, want a drain timeout error")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v, want about 100ms", d)
	}
	if err2 := l.Close(); err2 != err {
		t.Errorf("second Close = %v, want the first result %v", err2, err)
	}
	close(bw.release) // the stuck Write returns; the writer drops the 3 queued records
	deadline := time.Now().Add(5 * time.Second)
	for l.Dropped() != 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if l.Dropped() != 3 || l.Written() != 1 {
		t.Errorf("after abandoning: Dropped=%d Written=%d, want 3, 1", l.Dropped(), l.Written())
	}
}

func TestCloseIdempotentAndLogAfterClose(t *testing.T) {
	var out syncBuffer
	l := mustNew(t, Config{Writer: &out})
	l.Log(&Record{User: "before", Rows: -1})
	mustClose(t, l)
	mustClose(t, l)
	before := out.String()
	l.Log(&Record{User: "after", Rows: -1})
	if l.Dropped() != 1 || l.Written() != 1 {
		t.Errorf("Dropped=%d Written=%d, want 1, 1", l.Dropped(), l.Written())
	}
	mustClose(t, l)
	if out.String() != before || strings.Contains(out.String(), "after") {
		t.Errorf("output changed after Close:\n%s", out.String())
	}
}

func TestConsoleFormat(t *testing.T) {
	var out syncBuffer
	// The test writer also shows the console lines with go test -v.
	l := mustNew(t, Config{Writer: io.MultiWriter(&out, zerolog.NewTestWriter(t)), Format: "console"})
	r := fullRecord()
	r.Decision = DecisionDeny
	l.Log(&r)
	mustClose(t, l)

	s := out.String()
	if json.Valid([]byte(strings.TrimSpace(s))) || strings.Contains(s, `"user":`) {
		t.Fatalf("console output is JSON:\n%s", s)
	}
	for _, want := range []string{"statement", "decision=deny", "user=alice", "role=admin", "decision_id=7k3q9x0m2c8v4d1r", "10:30:00.123"} {
		if want == "10:30:00.123" {
			// Rendered in the local zone: check only the fractional part.
			want = ":00.123"
		}
		if !strings.Contains(s, want) {
			t.Errorf("console output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "\x1b[") {
		t.Errorf("console output to a non-terminal is colored:\n%q", s)
	}
	if strings.Count(s, "\n") != 1 {
		t.Errorf("want one line per record:\n%s", s)
	}
}

func TestConcurrentLog(t *testing.T) {
	const goroutines, perG = 16, 300
	var out syncBuffer
	l := mustNew(t, Config{Writer: &out, QueueSize: 64, BlockTimeout: 10 * time.Second})
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			r := Record{Rows: -1, Tables: make([]string, 1)} // reused for every Log
			for i := range perG {
				r.DecisionID = fmt.Sprintf("g%d-%d", g, i)
				r.Tables[0] = r.DecisionID
				l.Log(&r)
			}
		})
	}
	wg.Wait()
	mustClose(t, l)

	recs := decodeLines(t, out.String())
	if len(recs) != goroutines*perG || l.Written() != goroutines*perG || l.Dropped() != 0 {
		t.Fatalf("lines=%d Written=%d Dropped=%d, want %d, %d, 0", len(recs), l.Written(), l.Dropped(), goroutines*perG, goroutines*perG)
	}
	seen := make(map[string]bool)
	for _, r := range recs {
		id := r["decision_id"].(string)
		if fmt.Sprint(r["tables"]) != "["+id+"]" {
			t.Fatalf("record mixes two Logs: %v", r)
		}
		seen[id] = true
	}
	if len(seen) != goroutines*perG {
		t.Errorf("%d distinct records, want %d", len(seen), goroutines*perG)
	}
}

// TestConcurrentClose logs from many goroutines while Close runs: no panic
// (send on a closed channel), and every record is either written or dropped.
func TestConcurrentClose(t *testing.T) {
	const goroutines, perG = 8, 2000
	l := mustNew(t, Config{Writer: io.Discard, QueueSize: 16, BlockTimeout: time.Millisecond})
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range goroutines {
		wg.Go(func() {
			<-start
			for range perG {
				l.Log(&Record{Rows: -1})
			}
		})
	}
	close(start)
	time.Sleep(5 * time.Millisecond)
	mustClose(t, l)
	wg.Wait()
	if got := l.Written() + l.Dropped(); got != goroutines*perG {
		t.Errorf("Written %d + Dropped %d = %d, want %d", l.Written(), l.Dropped(), got, goroutines*perG)
	}
}

type failingWriter struct {
	mu   sync.Mutex
	fail bool
	out  bytes.Buffer
}

func (w *failingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail {
		return 0, errors.New("disk full")
	}
	return w.out.Write(p)
}

func TestSinkErrors(t *testing.T) {
	fw := &failingWriter{fail: true}
	l := mustNew(t, Config{Writer: fw})
	l.Log(&Record{User: "lost", Rows: -1})
	deadline := time.Now().Add(5 * time.Second)
	for l.Failed() != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	fw.mu.Lock()
	fw.fail = false
	fw.mu.Unlock()
	l.Log(&Record{User: "kept", Rows: -1})
	mustClose(t, l)
	if l.Failed() != 1 || l.Written() != 1 {
		t.Errorf("Failed=%d Written=%d, want 1, 1", l.Failed(), l.Written())
	}
	if s := fw.out.String(); strings.Contains(s, "lost") || !strings.Contains(s, "kept") {
		t.Errorf("output after recovery:\n%s", s)
	}
}

func TestOutputOff(t *testing.T) {
	l := mustNew(t, Config{Output: "off"})
	l.Log(&Record{})
	mustClose(t, l)
	if l.Written() != 0 || l.Dropped() != 0 {
		t.Errorf("off: Written=%d Dropped=%d, want 0, 0", l.Written(), l.Dropped())
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{Format: "yaml"},
		{QueueSize: -1},
		{BlockTimeout: -time.Second},
		{Output: filepath.Join(t.TempDir(), "missing", "audit.log")},
	} {
		if l, err := New(cfg); err == nil {
			l.Close()
			t.Errorf("New(%+v) succeeded, want an error", cfg)
		}
	}
}

func TestNewDecisionID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-hjkmnp-tv-z]{16}$`)
	const goroutines, perG = 4, 25000
	ids := make(chan string, goroutines*perG)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range perG {
				ids <- NewDecisionID()
			}
		})
	}
	wg.Wait()
	close(ids)
	seen := make(map[string]bool, goroutines*perG)
	var chars [256]int
	for id := range ids {
		if !re.MatchString(id) {
			t.Fatalf("id %q does not match %s", id, re)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
		for i := range len(id) {
			chars[id[i]]++
		}
	}
	// Every alphabet character is used, at every position's share: a broken
	// bit extraction (e.g. constant characters) would leave some unused.
	for i := range len(decisionIDAlphabet) {
		if n := chars[decisionIDAlphabet[i]]; n < goroutines*perG*DecisionIDLen/32/2 {
			t.Errorf("character %q used %d times, want about %d", decisionIDAlphabet[i], n, goroutines*perG*DecisionIDLen/32)
		}
	}
}

func TestSeedOperation(t *testing.T) {
	for cmd, want := range map[string]string{
		"SELECT": "read", "select": "read", "INSERT": "create", "UPDATE": "update",
		"DELETE": "delete", "MERGE": "merge", "TRUNCATE": "truncate",
	} {
		if got := SeedOperation(cmd); got != want {
			t.Errorf("SeedOperation(%q) = %q, want %q", cmd, got, want)
		}
	}
}

// TestLogDoesNotAllocate checks steady state on both sides, Log (producer)
// and the writer goroutine, whose allocations testing.AllocsPerRun also
// counts: each run logs a burst and waits until the writer has written it.
func TestLogDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under -race")
	}
	const burst = 64
	l := mustNew(t, Config{Writer: io.Discard})
	defer l.Close()
	r := fullRecord()
	var want uint64
	run := func() {
		for range burst {
			l.Log(&r)
		}
		want += burst
		for l.Written() < want {
			time.Sleep(50 * time.Microsecond)
		}
	}
	for range 20 { // grow the queue slots and the encode buffer
		run()
	}
	if n := testing.AllocsPerRun(50, run); n != 0 {
		t.Errorf("%v allocations per %d records (Log + writer), want 0", n, burst)
	}
	if l.Dropped() != 0 {
		t.Errorf("Dropped = %d, want 0", l.Dropped())
	}
}

func BenchmarkLog(b *testing.B) {
	r := fullRecord()
	r.Time = time.Time{} // Log fills it, as in production
	b.Run("producer", func(b *testing.B) {
		// Log alone, with a consumer that only recycles: what a session pays.
		l, err := newLogger(Config{Writer: io.Discard, BlockTimeout: time.Second})
		if err != nil {
			b.Fatal(err)
		}
		go func() { // takes and empties batches, as the writer does, without encoding
			var batch []Record
			for {
				var ok bool
				if batch, _, ok = l.take(batch); !ok {
					break
				}
				for i := range batch {
					clearSlot(&batch[i])
				}
			}
			close(l.done)
		}()
		b.ReportAllocs()
		for b.Loop() {
			l.Log(&r)
		}
		b.StopTimer()
		l.Close()
	})
	b.Run("end_to_end", func(b *testing.B) {
		// Log and the real writer into io.Discard; ns/op is the throughput of
		// the pipeline, allocs/op counts both goroutines.
		l := mustNewB(b, Config{Writer: io.Discard, BlockTimeout: time.Second})
		b.ReportAllocs()
		for b.Loop() {
			l.Log(&r)
		}
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(l.Dropped())/float64(b.N), "dropped/op")
	})
	b.Run("paced", func(b *testing.B) {
		// Some work between Logs, as a session has: ns/Log is what the
		// session pays (it includes two time.Now calls, about 50 ns here).
		l := mustNewB(b, Config{Writer: io.Discard, BlockTimeout: time.Second})
		b.ReportAllocs()
		var inLog time.Duration
		for b.Loop() {
			work(10000)
			t0 := time.Now()
			l.Log(&r)
			inLog += time.Since(t0)
		}
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(inLog.Nanoseconds())/float64(b.N), "ns/Log")
		b.ReportMetric(float64(l.Dropped())/float64(b.N), "dropped/op")
	})
	b.Run("parallel", func(b *testing.B) {
		l := mustNewB(b, Config{Writer: io.Discard, BlockTimeout: time.Second})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			r := fullRecord()
			for pb.Next() {
				l.Log(&r)
			}
		})
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(l.Dropped())/float64(b.N), "dropped/op")
	})
}

// BenchmarkEncode is the writer's cost per record (encoding into the batch),
// without the queue.
func BenchmarkEncode(b *testing.B) {
	l, err := newLogger(Config{Writer: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	r := fullRecord()
	b.ReportAllocs()
	for b.Loop() {
		l.w.encode(&r, false)
		l.w.pending++
		if len(l.w.buf.b) >= flushSize {
			l.flush()
		}
	}
}

var workSink int

// work burns CPU for a few microseconds, standing in for a session's work.
func work(n int) {
	s := 0
	for i := range n {
		s += i * i
	}
	workSink += s
}

func BenchmarkNewDecisionID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = NewDecisionID()
	}
}

func mustNewB(b *testing.B, cfg Config) *Logger {
	b.Helper()
	l, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// TestReopen is log rotation: after the file is moved away and Reopen is
// called, new records go to a new file at the configured path, records
// written before stay in the moved file, and nothing is lost.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	l := mustNew(t, Config{Output: path})
	l.Log(&Record{User: "before", Rows: -1})
	// Wait until the writer wrote it, as a rotation happens between writes.
	for deadline := time.Now().Add(5 * time.Second); l.Written() < 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first record was not written")
		}
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Log(&Record{User: "after", Rows: -1})
	if err := l.Reopen(); err != nil { // twice before a write: the first file is not leaked
		t.Fatal(err)
	}
	l.Log(&Record{User: "after2", Rows: -1})
	mustClose(t, l)
	if err := l.Reopen(); err != nil { // after Close: nothing
		t.Fatal(err)
	}
	old, _ := os.ReadFile(path + ".1")
	cur, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no new file after Reopen: %v", err)
	}
	if recs := decodeLines(t, string(old)); len(recs) != 1 || recs[0]["user"] != "before" {
		t.Errorf("moved file:\n%s", old)
	}
	if recs := decodeLines(t, string(cur)); len(recs) != 2 || recs[0]["user"] != "after" || recs[1]["user"] != "after2" {
		t.Errorf("new file:\n%s", cur)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("new file mode %v, want 0600", fi.Mode().Perm())
	}
	// Not a file: Reopen does nothing.
	var buf bytes.Buffer
	w := mustNew(t, Config{Writer: &buf})
	if err := w.Reopen(); err != nil {
		t.Error(err)
	}
	mustClose(t, w)
}
