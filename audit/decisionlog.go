package audit

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DecisionLogPath is the decision-log "path" of every statement decision:
// the policy's entry point, data.dbal.decision.
const DecisionLogPath = "dbal/decision"

// DecisionLogConfig configures a DecisionLog: statement decisions written in
// OPA's decision-log format, to a file and/or POSTed in batches to an HTTP
// endpoint, as OPA's decision_logs plugin does.
type DecisionLogConfig struct {
	// File, if set, receives one event per line (JSON), appended; it is
	// created with mode 0600.
	File string
	// URL, if set, receives batches of events: a POST of a gzipped JSON
	// array (Content-Encoding: gzip), as OPA uploads to {service}/logs.
	URL string
	// Token, if set, is sent as "Authorization: Bearer <Token>".
	Token string
	// Labels are every event's "labels" (OPA: id, version, ...).
	Labels map[string]string
	// BatchSize is the most events per POST (and per file write); 0 means
	// 500.
	BatchSize int
	// FlushInterval is how long an event may wait for its batch to fill;
	// 0 means 5s.
	FlushInterval time.Duration
	// BufferSize bounds the events waiting for each output; when it is full
	// the oldest event is dropped and counted (Dropped). 0 means 10000.
	BufferSize int
	// RetryMin and RetryMax bound the backoff between attempts of a failed
	// upload (doubling from RetryMin, jittered); 0 means 100ms and 30s. A
	// failed batch is retried until it is sent or Close gives up.
	RetryMin, RetryMax time.Duration
	// Timeout bounds one POST; 0 means 30s.
	Timeout time.Duration
	// LogLiterals puts the statement's original text (Record.QueryRaw) in
	// the input instead of the normalized one. Off by default.
	LogLiterals bool
	// Client is the HTTP client; nil means one with Timeout.
	Client *http.Client
}

// DecisionEvent is one decision in OPA's decision-log format. Input and
// result are dbalproxy's view of the statement and of the policy's decision
// (the input is the audit record's, not the whole policy input: claims
// other than user_id are not logged).
type DecisionEvent struct {
	Labels     map[string]string         `json:"labels,omitempty"`
	DecisionID string                    `json:"decision_id"`
	Revision   string                    `json:"revision,omitempty"`
	Bundles    map[string]BundleRevision `json:"bundles,omitempty"`
	Path       string                    `json:"path"`
	Input      DecisionInput             `json:"input"`
	Result     DecisionResult            `json:"result"`
	Timestamp  time.Time                 `json:"timestamp"`
	Metrics    map[string]float64        `json:"metrics,omitempty"`
}

// BundleRevision is a bundle's revision in DecisionEvent.Bundles.
type BundleRevision struct {
	Revision string `json:"revision"`
}

// DecisionInput is the statement and session a decision was about.
type DecisionInput struct {
	Session struct {
		ID              string `json:"id,omitempty"`
		User            string `json:"user"`
		Role            string `json:"role,omitempty"`
		UserID          string `json:"user_id,omitempty"`
		EndUser         string `json:"end_user,omitempty"`
		Database        string `json:"database,omitempty"`
		ApplicationName string `json:"application_name,omitempty"`
		ClientAddr      string `json:"client_addr,omitempty"`
	} `json:"session"`
	Statement struct {
		Command     string   `json:"command,omitempty"`
		Tables      []string `json:"tables"`
		Functions   []string `json:"functions,omitempty"`
		Fingerprint string   `json:"fingerprint,omitempty"`
		Text        string   `json:"text,omitempty"`
	} `json:"statement"`
}

// DecisionResult is what was decided and how the statement ended.
type DecisionResult struct {
	Allow     bool   `json:"allow"`
	Decision  string `json:"decision"` // allow, rewrite, deny, would_deny
	Reason    string `json:"reason,omitempty"`
	Rewritten string `json:"rewritten,omitempty"`
	Success   bool   `json:"success"`
	SQLState  string `json:"sqlstate,omitempty"`
}

// DecisionLog writes statement decisions in OPA's decision-log format. Log
// never blocks on an output: each output has a bounded buffer and its own
// goroutine. It is safe for concurrent use.
type DecisionLog struct {
	cfg     DecisionLogConfig
	outputs []*dlOutput
	dropped atomic.Uint64
}

// dlOutput is one destination (the file or the URL) with its buffer.
type dlOutput struct {
	name string
	send func(ctx context.Context, batch []*DecisionEvent) error
	log  *DecisionLog

	mu     sync.Mutex
	buf    []*DecisionEvent // oldest first
	closed bool
	wake   chan struct{} // capacity 1
	quit   chan struct{}
	done   chan struct{}

	sent, failed atomic.Uint64
	lastErr      atomic.Pointer[error]
}

// NewDecisionLog opens the outputs of cfg and starts their writers. At least
// one of File and URL must be set.
func NewDecisionLog(cfg DecisionLogConfig) (*DecisionLog, error) {
	if cfg.File == "" && cfg.URL == "" {
		return nil, errors.New("audit: decision log: no file and no url")
	}
	if cfg.BatchSize < 0 || cfg.BufferSize < 0 || cfg.FlushInterval < 0 || cfg.RetryMin < 0 || cfg.RetryMax < 0 || cfg.Timeout < 0 {
		return nil, errors.New("audit: decision log: negative size or duration")
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 500
	}
	if cfg.BufferSize == 0 {
		cfg.BufferSize = 10000
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = 5 * time.Second
	}
	if cfg.RetryMin == 0 {
		cfg.RetryMin = 100 * time.Millisecond
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = 30 * time.Second
	}
	cfg.RetryMax = max(cfg.RetryMax, cfg.RetryMin)
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.URL != "" && !strings.HasPrefix(cfg.URL, "http://") && !strings.HasPrefix(cfg.URL, "https://") {
		return nil, fmt.Errorf("audit: decision log: url %q is not http:// or https://", cfg.URL)
	}
	d := &DecisionLog{cfg: cfg}
	if cfg.File != "" {
		f, err := os.OpenFile(cfg.File, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, fmt.Errorf("audit: decision log: %w", err)
		}
		d.outputs = append(d.outputs, d.newOutput("file", func(_ context.Context, batch []*DecisionEvent) error {
			var b bytes.Buffer
			enc := json.NewEncoder(&b)
			for _, ev := range batch {
				if err := enc.Encode(ev); err != nil {
					return err
				}
			}
			_, err := f.Write(b.Bytes())
			return err
		}, func() { _ = f.Close() }))
	}
	if cfg.URL != "" {
		client := cfg.Client
		if client == nil {
			client = &http.Client{Timeout: cfg.Timeout}
		}
		d.outputs = append(d.outputs, d.newOutput("url", func(ctx context.Context, batch []*DecisionEvent) error {
			return d.post(ctx, client, batch)
		}, nil))
	}
	return d, nil
}

func (d *DecisionLog) newOutput(name string, send func(context.Context, []*DecisionEvent) error, closeFn func()) *dlOutput {
	o := &dlOutput{name: name, send: send, log: d, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(o.done)
		if closeFn != nil {
			defer closeFn()
		}
		o.run()
	}()
	return o
}

// Log turns a statement record into a decision event and queues it for
// every output. Login records are not decisions and are skipped.
func (d *DecisionLog) Log(r *Record) {
	if r == nil || (r.Event != "" && r.Event != EventStatement) || r.Decision == "" {
		return
	}
	ev := d.event(r)
	for _, o := range d.outputs {
		o.push(ev)
	}
}

// event is r in the decision-log format.
func (d *DecisionLog) event(r *Record) *DecisionEvent {
	ev := &DecisionEvent{Labels: d.cfg.Labels, DecisionID: r.DecisionID, Path: DecisionLogPath, Timestamp: r.Time}
	if ev.Timestamp.IsZero() {
		ev.Timestamp = time.Now()
	}
	ev.Timestamp = ev.Timestamp.UTC()
	// A bundle's version is "revision@hash"; a directory's is the hash.
	if rev, _, ok := strings.Cut(r.PolicyVersion, "@"); ok {
		ev.Revision = rev
		ev.Bundles = map[string]BundleRevision{"dbal": {Revision: rev}}
	} else {
		ev.Revision = r.PolicyVersion
	}
	s := &ev.Input.Session
	s.ID, s.User, s.Role, s.UserID, s.EndUser = r.SessionID, r.User, r.Role, r.UserID, r.EndUser
	s.Database, s.ApplicationName, s.ClientAddr = r.Database, r.ApplicationName, r.ClientAddr
	st := &ev.Input.Statement
	st.Command, st.Fingerprint = r.Command, r.Fingerprint
	st.Tables = append([]string{}, r.Tables...) // the caller reuses its array
	st.Functions = r.Functions                  // kept as given (see Record)
	st.Text = r.Query
	if d.cfg.LogLiterals && r.QueryRaw != "" {
		st.Text = r.QueryRaw
	}
	ev.Result = DecisionResult{
		Allow:    r.Decision != DecisionDeny,
		Decision: r.Decision, Reason: r.Reason, Rewritten: r.Rewritten,
		Success: r.Success, SQLState: r.SQLState,
	}
	ev.Metrics = map[string]float64{"timer_statement_ms": r.DurationMS}
	return ev
}

// push queues ev, dropping the oldest event when the buffer is full.
func (o *dlOutput) push(ev *DecisionEvent) {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		o.log.dropped.Add(1)
		return
	}
	if len(o.buf) >= o.log.cfg.BufferSize {
		o.buf[0] = nil
		o.buf = o.buf[1:]
		o.log.dropped.Add(1)
	}
	o.buf = append(o.buf, ev)
	full := len(o.buf) >= o.log.cfg.BatchSize
	o.mu.Unlock()
	if full {
		select {
		case o.wake <- struct{}{}:
		default:
		}
	}
}

// take removes up to BatchSize events from the front of the buffer.
func (o *dlOutput) take() []*DecisionEvent {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := min(len(o.buf), o.log.cfg.BatchSize)
	if n == 0 {
		return nil
	}
	batch := make([]*DecisionEvent, n)
	copy(batch, o.buf[:n])
	clear(o.buf[:n])
	o.buf = o.buf[n:]
	if len(o.buf) == 0 {
		o.buf = nil // release the backing array
	}
	return batch
}

// run sends batches: when one is full or FlushInterval passed, and
// everything left at Close. A failed batch is retried with backoff.
func (o *dlOutput) run() {
	cfg := &o.log.cfg
	tick := time.NewTicker(cfg.FlushInterval)
	defer tick.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-o.quit
		// Close's deadline: stop waiting in retries.
		t := time.NewTimer(closeTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-ctx.Done():
		}
	}()
	quitting := false
	for {
		if !quitting {
			select {
			case <-tick.C:
			case <-o.wake:
			case <-o.quit:
				quitting = true
			}
		}
		for {
			batch := o.take()
			if batch == nil {
				break
			}
			if !o.sendWithRetry(ctx, batch) {
				return // Close gave up
			}
			if !quitting && len(batch) < cfg.BatchSize {
				break
			}
		}
		if quitting {
			return
		}
	}
}

// sendWithRetry sends batch until it succeeds; false when ctx ends first
// (the batch is then counted as dropped).
func (o *dlOutput) sendWithRetry(ctx context.Context, batch []*DecisionEvent) bool {
	cfg := &o.log.cfg
	delay := cfg.RetryMin
	for {
		err := o.send(ctx, batch)
		if err == nil {
			o.sent.Add(uint64(len(batch)))
			return true
		}
		o.failed.Add(1)
		o.lastErr.Store(&err)
		wait := delay/2 + rand.N(delay/2+1)
		delay = min(delay*2, cfg.RetryMax)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			o.log.dropped.Add(uint64(len(batch)))
			return false
		case <-t.C:
		}
	}
}

// post uploads batch as a gzipped JSON array.
func (d *DecisionLog) post(ctx context.Context, client *http.Client, batch []*DecisionEvent) error {
	var body bytes.Buffer
	zw := gzip.NewWriter(&body)
	if err := json.NewEncoder(zw).Encode(batch); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.cfg.URL, &body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "gzip")
	if d.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+d.cfg.Token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("decision log upload: %s answered %s", d.cfg.URL, resp.Status)
	}
	return nil
}

// Dropped is how many events were dropped: the oldest of a full buffer,
// events logged after Close, and what Close could not send in time.
func (d *DecisionLog) Dropped() uint64 { return d.dropped.Load() }

// Sent is how many events the outputs accepted (an event sent to both the
// file and the URL counts twice).
func (d *DecisionLog) Sent() uint64 {
	var n uint64
	for _, o := range d.outputs {
		n += o.sent.Load()
	}
	return n
}

// Failures is how many sends failed (each retry counts).
func (d *DecisionLog) Failures() uint64 {
	var n uint64
	for _, o := range d.outputs {
		n += o.failed.Load()
	}
	return n
}

// Close stops accepting events and sends what is buffered, giving up on
// retries after 5s; it reports the last send error if it gave up.
func (d *DecisionLog) Close() error {
	var errs []error
	for _, o := range d.outputs {
		o.mu.Lock()
		already := o.closed
		o.closed = true
		o.mu.Unlock()
		if already {
			continue
		}
		close(o.quit)
	}
	for _, o := range d.outputs {
		<-o.done
		o.mu.Lock()
		left := len(o.buf)
		o.buf = nil
		o.mu.Unlock()
		if left > 0 {
			d.dropped.Add(uint64(left))
			e := fmt.Errorf("audit: decision log %s: %d events not sent", o.name, left)
			if p := o.lastErr.Load(); p != nil {
				e = fmt.Errorf("%w: %w", e, *p)
			}
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}
