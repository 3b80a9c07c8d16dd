package wire

import (
	"slices"
	"strconv"
	"time"

	"github.com/dbalproxy/dbalproxy/status"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Console serves the admin console: a client that logs in to the console's
// database talks to it instead of a backend (package console implements
// it). The login is authenticated and counted as any other, and audited as
// a login; the console's own commands are not statements and are not
// decided by the policies.
type Console interface {
	// Database is the database name that selects the console.
	Database() string
	// Admits reports whether a login of this role may use the console.
	// Others are refused at login with FATAL 42501.
	Admits(role string) bool
	// Serve runs one console session. It is called after authentication,
	// sends everything from AuthenticationOk on, and returns when the
	// client leaves (or its connection fails, or the server drains or kills
	// it: reading then fails with os.ErrDeadlineExceeded and the console
	// should send FATAL 57P01). The session's connection is closed after.
	Serve(c *status.ConsoleConn)
}

// Sessions returns the sessions past login (console sessions included),
// ordered by id. It is safe to call from any goroutine.
func (s *Server) Sessions() []status.Session {
	s.mu.Lock()
	sessions := make([]*session, 0, len(s.mu.sessions))
	for sess := range s.mu.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	out := make([]status.Session, 0, len(sessions))
	for _, sess := range sessions {
		// txStatus is stored once login has set everything read here
		// (and the connection no longer changes).
		st := sess.txStatus.Load()
		if st == 0 {
			continue
		}
		out = append(out, sess.status(byte(st)))
	}
	slices.SortFunc(out, func(a, b status.Session) int {
		x, _ := strconv.ParseUint(a.ID, 10, 64)
		y, _ := strconv.ParseUint(b.ID, 10, 64)
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	})
	return out
}

func (sess *session) status(tx byte) status.Session {
	st := status.Session{
		ID: sess.id, User: sess.principal.User, Role: sess.principal.Role, Database: sess.database,
		ApplicationName: sess.startupParams["application_name"], ClientAddr: sess.conn.RemoteAddr().String(),
		LocalAddr: sess.conn.LocalAddr().String(), TLS: sess.tls, Connected: sess.accepted, TxStatus: tx,
		Console: sess.console,
	}
	sess.mu.Lock()
	if be := sess.mu.be; be != nil {
		st.BackendPID = be.PID
	}
	sess.mu.Unlock()
	return st
}

// KillSession closes the session with this id as PostgreSQL's
// pg_terminate_backend does: the client gets FATAL 57P01 and its open
// transaction is rolled back. A session that cannot be told within a second
// has its connection closed. It reports whether the session existed.
func (s *Server) KillSession(id string) bool {
	var found *session
	s.mu.Lock()
	for sess := range s.mu.sessions {
		if sess.id == id && sess.txStatus.Load() != 0 {
			found = sess
			break
		}
	}
	s.mu.Unlock()
	if found == nil {
		return false
	}
	found.killed.Store(true)
	// The message loop's read fails at once, and drainWake ends it.
	_ = found.conn.SetReadDeadline(time.Unix(1, 0))
	time.AfterFunc(drainGrace, found.terminate)
	return true
}

// consoleLogin reports whether the client asked for the admin console, and
// if so, whether its login may use it. It is called once the client has
// authenticated.
func (sess *session) consoleLogin() (bool, error) {
	c := sess.srv.cfg.Console
	if c == nil || sess.database != c.Database() {
		return false, nil
	}
	if !c.Admits(sess.principal.Role) {
		return true, fatalf(CodeInsufficientPriv, "login %q (role %q) may not use the admin console", sess.principal.User, sess.principal.Role)
	}
	sess.console = true
	sess.txStatus.Store('I') // listed by Sessions, drained by Drain
	return true, nil
}

// serveConsole hands the client to the admin console.
func (sess *session) serveConsole() {
	be := pgproto3.NewBackend(sess.cr.r, sess.conn)
	be.SetMaxBodyLen(1 << 20)
	sess.srv.cfg.Console.Serve(&status.ConsoleConn{
		Session: sess.status('I'), Params: sess.startupParams, Backend: be, Conn: sess.conn,
		Killed: func() bool { return sess.killed.Load() || sess.srv.draining.Load() },
	})
}
