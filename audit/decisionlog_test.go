package audit

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func dlRecord(i int) *Record {
	return &Record{
		Event: EventStatement, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), SessionID: "7",
		User: "alice", Role: "user", UserID: "u_alice", Database: "app", ClientAddr: "127.0.0.1:5",
		Command: "SELECT", Tables: []string{"public.users"}, Fingerprint: "abc",
		Query: "SELECT * FROM users WHERE email = $1", QueryRaw: "SELECT * FROM users WHERE email = 'alice@example.com'",
		Decision: DecisionRewrite, Reason: "own rows", PolicyVersion: "r9@0123456789ab",
		Rewritten: "SELECT ... WHERE id = $2", DurationMS: 1.5, Rows: 1, Success: true,
		DecisionID: fmt.Sprintf("id%02d", i),
	}
}

// logServer collects the events POSTed to it; it answers 503 while failing
// is set.
type logServer struct {
	*httptest.Server
	mu       sync.Mutex
	batches  [][]map[string]any
	failing  atomic.Bool
	attempts atomic.Int64
}

func newLogServer(t *testing.T) *logServer {
	s := &logServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.attempts.Add(1)
		if r.Method != http.MethodPost || r.Header.Get("Content-Encoding") != "gzip" || r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if s.failing.Load() {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var batch []map[string]any
		if err := json.NewDecoder(zr).Decode(&batch); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.batches = append(s.batches, batch)
		s.mu.Unlock()
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *logServer) ids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for _, b := range s.batches {
		for _, ev := range b {
			ids = append(ids, ev["decision_id"].(string))
		}
	}
	return ids
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Events are POSTed in gzipped batches in OPA's format; literals stay out.
func TestDecisionLogUpload(t *testing.T) {
	srv := newLogServer(t)
	d, err := NewDecisionLog(DecisionLogConfig{URL: srv.URL + "/logs", Token: "tok", BatchSize: 2, FlushInterval: 20 * time.Millisecond,
		Labels: map[string]string{"id": "proxy-1", "version": "v1.2.3"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		d.Log(dlRecord(i))
	}
	d.Log(&Record{Event: EventLogin, User: "alice", Success: true}) // not a decision
	waitFor(t, "3 events", func() bool { return len(srv.ids()) == 3 })
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	ev := srv.batches[0][0]
	nBatches := len(srv.batches)
	srv.mu.Unlock()
	if nBatches != 2 {
		t.Errorf("%d batches for 3 events of batch size 2", nBatches)
	}
	b, _ := json.Marshal(ev)
	got := string(b)
	for _, want := range []string{
		`"decision_id":"id00"`, `"path":"dbal/decision"`, `"revision":"r9"`, `"bundles":{"dbal":{"revision":"r9"}}`,
		`"timestamp":"2026-01-02T03:04:05Z"`, `"labels":{"id":"proxy-1","version":"v1.2.3"}`,
		`"text":"SELECT * FROM users WHERE email = $1"`, `"tables":["public.users"]`, `"user":"alice"`,
		`"result":{"allow":true,"decision":"rewrite","reason":"own rows","rewritten":"SELECT ... WHERE id = $2","success":true}`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("event lacks %s:\n%s", want, got)
		}
	}
	if strings.Contains(got, "alice@example.com") {
		t.Errorf("literal logged without LogLiterals:\n%s", got)
	}
}

// A failing endpoint is retried with backoff; meanwhile the buffer keeps
// the newest events and counts the oldest it drops.
func TestDecisionLogRetryAndBoundedBuffer(t *testing.T) {
	srv := newLogServer(t)
	srv.failing.Store(true)
	d, err := NewDecisionLog(DecisionLogConfig{URL: srv.URL, Token: "tok", BatchSize: 2, BufferSize: 3,
		FlushInterval: time.Hour, RetryMin: 10 * time.Millisecond, RetryMax: 40 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	d.Log(dlRecord(1))
	d.Log(dlRecord(2)) // a full batch: taken and retried
	waitFor(t, "retries", func() bool { return srv.attempts.Load() >= 3 })
	for i := 3; i <= 10; i++ {
		d.Log(dlRecord(i))
	}
	if n := d.Dropped(); n != 5 {
		t.Fatalf("dropped %d, want 5 (3..7)", n)
	}
	srv.failing.Store(false)
	waitFor(t, "the kept events", func() bool { return len(srv.ids()) >= 4 })
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(srv.ids(), ","); got != "id01,id02,id08,id09,id10" {
		t.Fatalf("sent %s", got)
	}
	if d.Failures() < 2 || d.Sent() != 5 {
		t.Fatalf("failures %d, sent %d", d.Failures(), d.Sent())
	}
}

// The file output gets one event per line; LogLiterals puts the original
// text in.
func TestDecisionLogFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decisions.jsonl")
	d, err := NewDecisionLog(DecisionLogConfig{File: path, LogLiterals: true})
	if err != nil {
		t.Fatal(err)
	}
	d.Log(dlRecord(1))
	d.Log(dlRecord(2))
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if st, _ := f.Stat(); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode().Perm())
	}
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var ev DecisionEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		n++
		if ev.DecisionID != fmt.Sprintf("id%02d", n) || !strings.Contains(ev.Input.Statement.Text, "alice@example.com") {
			t.Fatalf("line %d: %+v", n, ev)
		}
	}
	if n != 2 {
		t.Fatalf("%d lines", n)
	}
}
