// Package wire is dbalproxy's client-facing side of the PostgreSQL protocol
// (version 3.0): the listener, TLS, the startup handshake, client
// authentication, cancel requests, and the per-session message loop that relays
// between a client and a backend connection.
//
// Protocol reference: https://www.postgresql.org/docs/current/protocol-flow.html
// and https://www.postgresql.org/docs/current/protocol-message-formats.html.
//
// # Session flow
//
//	client                        proxy (wire)                         backend (pool)
//	  | SSLRequest                  |                                     |
//	  |---------------------------->| 'S' + TLS handshake, or 'N'         |
//	  | StartupMessage              |                                     |
//	  |---------------------------->|                                     |
//	  |  AuthenticationSASL ...     | SCRAM-SHA-256 against the logins    |
//	  |  (or CleartextPassword)     | a token login: verify the JWT       |
//	  |<--------------------------->|                                     |
//	  |                             | Acquire (53300 after the wait limit)|
//	  |                             |------------------------------------>|
//	  |                             | set_config(startup parameters)      |
//	  |                             |------------------------------------>|
//	  |  AuthenticationOk, ParameterStatus (the backend's),               |
//	  |  BackendKeyData (its pid: the backend's in session pooling),      |
//	  |  ReadyForQuery                                                    |
//	  |<----------------------------|                                     |
//	  | Query / Parse Bind Execute Sync ...                               |
//	  |---------------------------->|------------------------------------>|
//	  |              results stream back, flushed when the backend pauses |
//	  |<----------------------------|<------------------------------------|
//	  | Terminate                   | Release: ROLLBACK if needed,        |
//	  |---------------------------->| DISCARD ALL, back to the pool       |
//
// # Two goroutines per session
//
// The session goroutine reads client messages and forwards them; the pump
// goroutine reads backend messages and forwards them to the client. Messages
// are framed, not decoded: a message that fits the 32 KiB read buffer is
// relayed with one copy and no allocation, and larger DataRow and CopyData
// messages are streamed through in pieces, so a result set is never held in
// memory. Only ReadyForQuery and ParameterStatus are looked into on the way
// back. Each direction writes into a buffer and flushes it only when its
// reader has nothing more buffered, that is, when the other side would
// otherwise wait: one flush per round trip instead of one per message.
//
// # The path of one statement
//
// A simple Query "SELECT * FROM pages" from a pgx client in transaction
// pooling, package by package:
//
//  1. wire (session.go): the session goroutine reads the Query frame
//     (frame.go) and leases a backend (txmode.go; pool.Pool.TryAcquire,
//     else Acquire) if it holds none.
//  2. wire (statements.go) asks its Decider with the session's plan.Session
//     (principal, database, transaction state, backend parameters); the
//     Decider is a *planner.Planner (see package planner for its steps:
//     plan cache, shape, parser, catalog, policy through the decision memo,
//     rewrite). It answers a *plan.Plan: the text to send (here the
//     statement with the role's row filter), one plan.Statement per
//     statement for audit, and a plan.Denial if one may not run.
//  3. wire sends the plan's text (or, for a denial, the statements before
//     it and a DO block that raises the denial), arms the policy timeout,
//     and queues a request (requests.go) for the pump.
//  4. wire's pump goroutine streams the backend's answer to the client,
//     withholds rows past the plan's row cap, and at CommandComplete
//     writes the statement's audit record (package audit); at the
//     ReadyForQuery that leaves the backend idle it gives it back with
//     pool.Pool.Put.
//
// # Decisions
//
// With a Decider (a planner.Planner: parser facts, functions resolved in
// the database's catalog, then the policy engine; plans cached per
// statement text, principal, policy version and catalog generation, and
// decisions memoized by the whole policy input, so a new text with known
// facts skips OPA), every Query, every Parse and every fast-path
// FunctionCall (resolved by OID) is decided before it is forwarded:
//
//	client                        proxy (wire)                         backend
//	  | Query "SELECT 1; DELETE FROM packages"                            |
//	  |---------------------------->| plan: statement 2 denied            |
//	  |                             | Query "SELECT 1;                    |
//	  |                             |   DO $dbalproxy$BEGIN RAISE ... 42501 ...$dbalproxy$"
//	  |                             |------------------------------------>|
//	  |  RowDescription, DataRow, CommandComplete, ErrorResponse 42501,   |
//	  |  ReadyForQuery (E inside a transaction block, as PostgreSQL)      |
//	  |<----------------------------|<------------------------------------|
//
// The denied statement never reaches the backend; the backend raises the
// denial in its place, so ordering, implicit-transaction rollback and the
// aborted state of a transaction block are PostgreSQL's own. In the extended
// protocol a denied Parse is replaced by Parse/Bind/Execute of the DO
// statement (the pump swallows the ParseComplete and BindComplete the client
// did not ask for and strips the PL/pgSQL CONTEXT from the error), and the
// client's messages are skipped until Sync. A prepared statement decided
// under an older policy version is decided again at Bind. The pump follows
// each request to its answer (the reqQueue) and writes one audit record per
// statement with its command tag, row count, SQLSTATE and duration. A
// committed schema change (a CREATE, ALTER or DROP tag, then an idle
// ReadyForQuery) makes the catalog be read again (Decider.CatalogChanged).
//
// # Transaction pooling
//
// How a session holds its backend is its holding (holding.go), the one
// thing the two modes do differently: the loop, the statement handlers, the
// pump and teardown call it at a dozen points and otherwise read the same
// in both. sessionHold keeps the login's backend for the whole session.
// With Config.TransactionPooling, *txHold holds a backend only while the
// client works (txmode.go): run's goroutine leases one for the first message
// of a transaction or an extended batch, gives it the client's parameters
// (only what differs) and starts a pump for it; the pump gives it back at
// the ReadyForQuery that leaves it idle ('I') when no request is pending, no
// extended batch is open, run's goroutine is not handling a message and no
// cancel is in flight. Prepared statements are kept per client and prepared
// on each backend under a name derived from their rewritten text and
// parameter types (txstate.go); statements with session effects (SET,
// LISTEN, temporary objects, advisory locks, WITH HOLD cursors, SQL-level
// PREPARE) pin the client to its backend for the rest of the session.
//
// Sessions also come from the WebSocket bridge (package bridge), which
// hands each connection to Server.ServeConn: one session implementation for
// TCP and WebSocket.
//
// # Cancel
//
// Clients get a BackendKeyData with the proxy's own secret; its process id is
// the backend's in session pooling (pg_backend_pid() agrees) and the proxy's
// own in transaction pooling. A CancelRequest carrying it is looked up (by
// process id and secret, compared in constant time) and turned into a cancel of
// the backend connection the session holds, with the backend's own key, and
// only while a statement is outstanding there. With Config.PeerID set, keys
// carry the proxy instance's id, and a cancel for another instance's key is
// forwarded to it (Config.Peers).
//
// # Errors
//
// Errors the proxy itself reports are *Error values with an SQLSTATE; one
// mapping (toErrorResponse) turns any error into the ErrorResponse a client
// sees, and internal causes are logged, never sent. Errors of a client's
// statements are relayed byte for byte, every field intact; errors of the
// proxy's own connection to the backend (a refused login, an unreachable
// server) are not: they could name the backend role or host, so the client
// gets 08006 (or the server's 57P03, 3D000) and the proxy's log the cause.
//
// # Bounds
//
// The startup phase (TLS, startup packet, authentication, backend acquire) has
// a deadline; startup packets are limited to 10000 bytes; other client
// messages to Config.MaxMessageSize (CopyData is streamed and exempt). An
// oversized, malformed or unknown message ends that session with a FATAL
// 08P01; other sessions are not affected, and a panic in a session is
// recovered and logged. Client connections are limited in total and per
// login (Limits, changeable with Server.SetLimits); past a limit the client
// gets FATAL 53300.
//
// # Drain
//
// Server.Drain stops accepting and closes each session with FATAL 57P01 as
// soon as it is idle (outside a transaction, nothing in flight), letting
// transactions finish until its context ends; logins still in startup get
// 57P03. It wakes a session's loop with a past read deadline on the client
// connection; the loop (drainWake) either closes the session or, if it is
// busy after all, clears the deadline and reads on.
package wire
