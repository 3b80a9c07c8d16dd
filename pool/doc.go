// Package pool owns dbalproxy's backend connections: it dials PostgreSQL with the
// proxy's own credentials (pgconn handles SCRAM, md5, trust and TLS as the URL's
// sslmode says), hands the raw connection over with pgconn's Hijack, and keeps
// idle connections for reuse.
//
// # Limits and waiting
//
// Each database has its own sub-pool of at most Config.MaxConns connections. A
// caller that finds none free waits in Acquire for at most Config.AcquireTimeout and
// then gets ErrAcquireTimeout, which the wire layer reports as SQLSTATE 53300.
//
// # Reset
//
// A connection goes back to the pool only when the session left it idle at a
// ReadyForQuery boundary. Release then rolls back an open transaction and runs the
// reset query (DISCARD ALL by default) before the next client sees it. Any doubt
// (a client that disconnected mid-statement, mid-COPY, or a reset that failed)
// destroys the connection instead: closing the socket makes PostgreSQL roll back
// and release every lock of that session.
//
// Put is the other way back, for transaction pooling: the caller asserts the
// connection is idle outside a transaction with no session state of a client's
// own, and it is kept as it is, prepared statements and the holder's State (pool.State)
// included. A connection inside a transaction, broken, or with bytes unread is
// destroyed instead.
//
// # Health
//
// Every idle connection is checked before it is handed out, with a
// non-blocking peek at its socket (or, where the socket cannot be peeked, as
// under TLS, a short read if it sat idle for over a second), so one that the
// server closed (restart, pg_terminate_backend, idle timeout) is replaced
// rather than given to a client.
//
// The package does not parse SQL and knows nothing of principals.
package pool
