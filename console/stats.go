package console

import (
	"slices"
	"sync"
	"time"

	"github.com/dbalproxy/dbalproxy/audit"
)

// Stats counts statements per database for SHOW STATS. Put it in the
// server's audit path with Auditor; it reads the records the server writes
// anyway (statements, their outcome and duration).
type Stats struct {
	mu  sync.Mutex
	dbs map[string]*dbStats
}

type dbStats struct {
	queries, denied, failed uint64
	queryTime               time.Duration // sum of statement durations
	logins, loginFailures   uint64
}

// NewStats returns empty statistics.
func NewStats() *Stats { return &Stats{dbs: map[string]*dbStats{}} }

// observe counts one audit record.
func (s *Stats) observe(r *audit.Record) {
	if r == nil || r.Database == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dbs[r.Database]
	if d == nil {
		d = &dbStats{}
		s.dbs[r.Database] = d
	}
	switch r.Event {
	case audit.EventLogin:
		d.logins++
		if !r.Success {
			d.loginFailures++
		}
	case audit.EventStatement:
		d.queries++
		d.queryTime += time.Duration(r.DurationMS * float64(time.Millisecond))
		switch {
		case r.Decision == "deny":
			d.denied++
		case !r.Success:
			d.failed++
		}
	}
}

// DatabaseStats are one database's totals since start.
type DatabaseStats struct {
	Database      string
	Queries       uint64        // statements (allowed, denied or failed)
	Denied        uint64        // statements the policies denied
	Failed        uint64        // allowed statements that failed
	QueryTime     time.Duration // sum of their durations
	Logins        uint64        // login attempts
	LoginFailures uint64        // failed login attempts
}

// Snapshot returns the totals per database, sorted by name.
func (s *Stats) Snapshot() []DatabaseStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]DatabaseStats, 0, len(s.dbs))
	for name, d := range s.dbs {
		out = append(out, DatabaseStats{
			Database: name, Queries: d.queries, Denied: d.denied, Failed: d.failed, QueryTime: d.queryTime,
			Logins: d.logins, LoginFailures: d.loginFailures,
		})
	}
	slices.SortFunc(out, func(a, b DatabaseStats) int { return compare(a.Database, b.Database) })
	return out
}

// Auditor receives audit records: the server's audit sink (wire.Auditor has
// the same method, so either converts to the other).
type Auditor interface {
	Log(r *audit.Record)
}

// Auditor returns an Auditor that counts each record and passes it on to
// next (which may be nil).
func (s *Stats) Auditor(next Auditor) Auditor { return statsAuditor{s: s, next: next} }

type statsAuditor struct {
	s    *Stats
	next Auditor
}

func (a statsAuditor) Log(r *audit.Record) {
	a.s.observe(r)
	if a.next != nil {
		a.next.Log(r)
	}
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
