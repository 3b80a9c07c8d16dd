// Package status holds the value types the protocol server (package wire)
// shares with the components that observe or serve beside it: the admin
// console (package console) and the Prometheus metrics (package metrics).
//
// It is a leaf: it imports no dbalproxy package, so console and metrics
// can read the server's sessions and counts, and the console can take over
// a client connection, without importing wire. Only cmd/dbalproxy imports
// wire and connects them.
package status

import (
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Session is one client session as the admin console shows it.
type Session struct {
	ID              string
	User, Role      string // the login and its role
	Database        string
	ApplicationName string
	ClientAddr      string // host:port of the client
	LocalAddr       string // host:port the client connected to
	TLS             bool
	Connected       time.Time // when the connection was accepted
	// TxStatus is the last ReadyForQuery status the client was sent: 'I'
	// (idle), 'T' (in a transaction) or 'E' (in a failed transaction).
	TxStatus byte
	// BackendPID is the process id of the backend connection the session
	// holds now (0: none; in transaction pooling, between transactions).
	BackendPID uint32
	// Console is true for admin console sessions.
	Console bool
}

// ServerStats is a snapshot of a server's connection counts (its Stats
// method), for metrics.
type ServerStats struct {
	ClientConns   int    // client connections open now (including those in startup)
	Accepted      uint64 // client connections accepted since start
	RejectedTotal uint64 // refused because of the server's Limits.MaxClientConns (53300)
	RejectedLogin uint64 // refused because of a login's session limit (53300)
	Draining      bool   // the server is draining
}

// ConsoleConn is an authenticated client that asked for the admin console,
// handed over by the server to the console.
type ConsoleConn struct {
	// Session describes the client (its ID is the one SHOW CLIENTS and
	// KILL use).
	Session Session
	// Params are the client's startup parameters (application_name, ...).
	Params map[string]string
	// Backend reads the client's messages and writes the console's.
	Backend *pgproto3.Backend
	// Conn is the client's connection (after TLS), for deadlines.
	Conn net.Conn
	// Killed reports whether the session was killed (the server's
	// KillSession) or the server is draining: the console should end it
	// with FATAL 57P01.
	Killed func() bool
}
