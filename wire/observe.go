package wire

import "sync/atomic"

// serverCounters are the server's event counts since start.
type serverCounters struct {
	accepted      atomic.Uint64
	rejectedTotal atomic.Uint64
	rejectedLogin atomic.Uint64
}

// ServerStats is a snapshot of a server's connection counts, for metrics.
type ServerStats struct {
	ClientConns   int    // client connections open now (including those in startup)
	Accepted      uint64 // client connections accepted since start
	RejectedTotal uint64 // refused because of Limits.MaxClientConns (53300)
	RejectedLogin uint64 // refused because of a login's session limit (53300)
	Draining      bool   // Drain was called
}

// Stats returns the server's connection counts. It is cheap and safe to call
// from any goroutine.
func (s *Server) Stats() ServerStats {
	return ServerStats{
		ClientConns:   int(s.clients.Load()),
		Accepted:      s.counters.accepted.Load(),
		RejectedTotal: s.counters.rejectedTotal.Load(),
		RejectedLogin: s.counters.rejectedLogin.Load(),
		Draining:      s.draining.Load(),
	}
}

// LoginConns returns the number of open sessions of a login (after
// authentication).
func (s *Server) LoginConns(name string) int {
	s.logins.mu.Lock()
	defer s.logins.mu.Unlock()
	return s.logins.m[name]
}
