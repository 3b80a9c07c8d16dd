package wire

import (
	"sync/atomic"

	"github.com/dbalproxy/dbalproxy/status"
)

// serverCounters are the server's event counts since start.
type serverCounters struct {
	accepted      atomic.Uint64
	rejectedTotal atomic.Uint64
	rejectedLogin atomic.Uint64
}

// Stats returns the server's connection counts. It is cheap and safe to call
// from any goroutine.
func (s *Server) Stats() status.ServerStats {
	return status.ServerStats{
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
