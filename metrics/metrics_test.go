package metrics

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/audit"
	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/status"
	dto "github.com/prometheus/client_model/go"
)

type recorder struct {
	mu   sync.Mutex
	recs []string
}

func (r *recorder) Log(rec *audit.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Decision)
}

// value returns the value of the sample of family name whose labels
// include labels ("k=v" pairs), -1 if there is none; for a histogram, its
// count.
func value(t *testing.T, m *Metrics, name string, labels ...string) float64 {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, mt := range f.GetMetric() {
			have := map[string]string{}
			for _, lp := range mt.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for _, l := range labels {
				k, v, _ := strings.Cut(l, "=")
				if have[k] != v {
					continue next
				}
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				return mt.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				return mt.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				return float64(mt.GetHistogram().GetSampleCount())
			}
		}
	}
	return -1
}

// series counts the samples of family name.
func series(t *testing.T, m *Metrics, name string) int {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			return len(f.GetMetric())
		}
	}
	return 0
}

func TestAuditorCountsAndForwards(t *testing.T) {
	m := New()
	first, second := &recorder{}, &recorder{}
	a := m.Auditor(first)
	a.Log(&audit.Record{Decision: audit.DecisionAllow, DurationMS: 2})
	a.Log(&audit.Record{Decision: audit.DecisionDeny, SQLState: "42501"})
	if old := a.Swap(second); old != first {
		t.Fatalf("Swap returned %v", old)
	}
	a.Log(&audit.Record{Event: audit.EventLogin, Success: false, SQLState: "28P01"})
	a.Log(&audit.Record{Event: audit.EventLogin, Success: true})
	a.Log(nil)
	if len(first.recs) != 2 || len(second.recs) != 2 {
		t.Fatalf("forwarded %d and %d records, want 2 and 2", len(first.recs), len(second.recs))
	}
	for _, c := range []struct {
		got  float64
		want float64
		what string
	}{
		{value(t, m, "dbalproxy_decisions_total", "decision=allow"), 1, "allow"},
		{value(t, m, "dbalproxy_decisions_total", "decision=deny"), 1, "deny"},
		{value(t, m, "dbalproxy_errors_total", "sqlstate=42501"), 1, "42501"},
		{value(t, m, "dbalproxy_errors_total", "sqlstate=28P01"), 1, "28P01"},
		{value(t, m, "dbalproxy_logins_total", "result=ok"), 1, "logins ok"},
		{value(t, m, "dbalproxy_logins_total", "result=failed"), 1, "logins failed"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	for _, d := range []string{"allow", "deny"} {
		if n := value(t, m, "dbalproxy_statement_duration_seconds", "decision="+d); n != 1 {
			t.Errorf("latency observations (%s) = %v, want 1", d, n)
		}
	}
	a.Log(&audit.Record{Decision: audit.DecisionWouldDeny, DurationMS: 1})
	if n := value(t, m, "dbalproxy_statement_duration_seconds", "decision=would_deny"); n != 1 {
		t.Errorf("latency observations (would_deny) = %v, want 1", n)
	}
	// Records only counted when the sink is nil.
	a.Swap(nil)
	a.Log(&audit.Record{Decision: audit.DecisionRewrite})
	if got := value(t, m, "dbalproxy_decisions_total", "decision=rewrite"); got != 1 {
		t.Errorf("rewrite = %v", got)
	}
}

func TestSQLStateLabelsAreBounded(t *testing.T) {
	m := New()
	a := m.Auditor(nil)
	for i := range maxSQLStates + 50 {
		a.Log(&audit.Record{Decision: audit.DecisionAllow, SQLState: fmt.Sprintf("X%04d", i)})
	}
	a.Log(&audit.Record{Decision: audit.DecisionAllow, SQLState: "not a code"})
	if n := series(t, m, "dbalproxy_errors_total"); n != maxSQLStates+1 {
		t.Fatalf("%d sqlstate series, want %d (+ other)", n, maxSQLStates+1)
	}
	if got := value(t, m, "dbalproxy_errors_total", "sqlstate=other"); got != 51 {
		t.Fatalf("other = %v, want 51", got)
	}
}

// TestBackendsCountsFailures: an unreachable backend is an 08006 acquire
// error, and the wait is timed.
func TestBackendsCountsFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	p, err := pool.New(pool.Config{ConnString: "postgres://u:p@" + addr + "/db?sslmode=disable&connect_timeout=2"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	m := New()
	m.SetSources(Sources{Pool: p})
	b := m.Backends(p)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := b.Acquire(ctx, "db"); err == nil {
		t.Fatal("acquire from a closed port succeeded")
	}
	if got := value(t, m, "dbalproxy_pool_acquire_errors_total", "sqlstate=08006"); got != 1 {
		t.Errorf("acquire errors 08006 = %v", got)
	}
	if got := value(t, m, "dbalproxy_pool_acquire_seconds"); got != 1 {
		t.Errorf("acquire histogram series = %v", got)
	}
	if got := value(t, m, "dbalproxy_backend_dials_total", "result=failed"); got != 1 {
		t.Errorf("failed dials = %v", got)
	}
}

// BenchmarkAuditorLog is what the metrics add to each statement's audit
// record (the sink itself excluded).
func BenchmarkAuditorLog(b *testing.B) {
	a := New().Auditor(nil)
	r := &audit.Record{Event: audit.EventStatement, Decision: audit.DecisionAllow, DurationMS: 0.3}
	b.ReportAllocs()
	for b.Loop() {
		a.Log(r)
	}
}

// TestLoginLabelIsBounded: decisions and logins carry the login only for
// the configured logins (at most maxLoginLabels of them); any other name,
// such as a failed login attempt's, is counted as "other", so clients cannot
// grow the label set.
func TestLoginLabelIsBounded(t *testing.T) {
	m := New()
	names := []string{"alice", "bob"}
	for i := range maxLoginLabels + 10 {
		names = append(names, fmt.Sprintf("svc%03d", i))
	}
	m.SetLogins(names)
	a := m.Auditor(nil)
	a.Log(&audit.Record{User: "alice", Decision: audit.DecisionDeny})
	a.Log(&audit.Record{User: "alice", Decision: audit.DecisionWouldDeny})
	a.Log(&audit.Record{User: "bob", Event: audit.EventLogin, Success: true})
	for i := range 50 {
		a.Log(&audit.Record{User: fmt.Sprintf("guess%d", i), Event: audit.EventLogin, Success: false})
	}
	a.Log(&audit.Record{User: names[len(names)-1], Decision: audit.DecisionAllow}) // past the bound
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"dbalproxy_decisions_total", []string{"decision=deny", "login=alice"}, 1},
		{"dbalproxy_decisions_total", []string{"decision=would_deny", "login=alice"}, 1},
		{"dbalproxy_decisions_total", []string{"decision=deny", "login=bob"}, 0},
		{"dbalproxy_decisions_total", []string{"decision=allow", "login=other"}, 1},
		{"dbalproxy_logins_total", []string{"result=ok", "login=bob"}, 1},
		{"dbalproxy_logins_total", []string{"result=failed", "login=other"}, 50},
		{"dbalproxy_logins_total", []string{"result=failed", "login=guess1"}, -1},
		{"dbalproxy_logins_total", []string{"login=" + names[len(names)-1]}, -1},
	} {
		if got := value(t, m, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// Every configured login within the bound, plus other, has its series
	// from the start (so rate() works from the first record): 3 decisions
	// and 2 login results each, would_deny once for alice.
	if n, want := series(t, m, "dbalproxy_decisions_total"), 3*(maxLoginLabels+1)+1; n != want {
		t.Errorf("%d decision series, want %d", n, want)
	}
	if n, want := series(t, m, "dbalproxy_logins_total"), 2*(maxLoginLabels+1); n != want {
		t.Errorf("%d login series, want %d", n, want)
	}
	// A reload that removes a login removes its series; its records count
	// as other from then on.
	m.SetLogins([]string{"bob"})
	a.Log(&audit.Record{User: "alice", Decision: audit.DecisionDeny})
	if got := value(t, m, "dbalproxy_decisions_total", "login=alice"); got != -1 {
		t.Errorf("alice's series stay after her removal: %v", got)
	}
	if got := value(t, m, "dbalproxy_decisions_total", "decision=deny", "login=other"); got != 1 {
		t.Errorf("deny by other after alice's removal = %v, want 1", got)
	}
	if got := value(t, m, "dbalproxy_logins_total", "result=ok", "login=bob"); got != 1 {
		t.Errorf("bob's count lost in the reload: %v", got)
	}
}

type fakeServer struct{ sessions map[string]int }

func (s fakeServer) Stats() status.ServerStats  { return status.ServerStats{} }
func (s fakeServer) LoginConns(name string) int { return s.sessions[name] }

// TestLoginSessions: open sessions per configured login, read at scrape
// time.
func TestLoginSessions(t *testing.T) {
	m := New()
	m.SetLogins([]string{"alice", "bob"})
	m.SetSources(Sources{Server: fakeServer{sessions: map[string]int{"alice": 3, "mallory": 9}}})
	if got := value(t, m, "dbalproxy_login_sessions", "login=alice"); got != 3 {
		t.Errorf("alice's sessions = %v, want 3", got)
	}
	if got := value(t, m, "dbalproxy_login_sessions", "login=bob"); got != 0 {
		t.Errorf("bob's sessions = %v, want 0", got)
	}
	if n := series(t, m, "dbalproxy_login_sessions"); n != 2 {
		t.Errorf("%d session series, want 2 (configured logins only)", n)
	}
}

// TestBuildInfo: dbalproxy_build_info{version,revision,goversion} 1.
func TestBuildInfo(t *testing.T) {
	m := New()
	m.SetSources(Sources{Build: BuildInfo{Version: "v1.2.3", Revision: "0123456789ab", GoVersion: "go1.99"}})
	if got := value(t, m, "dbalproxy_build_info", "version=v1.2.3", "revision=0123456789ab", "goversion=go1.99"); got != 1 {
		t.Fatalf("dbalproxy_build_info = %v, want 1", got)
	}
}
