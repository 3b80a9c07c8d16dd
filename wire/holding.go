package wire

import (
	"context"

	"github.com/dbalproxy/dbalproxy/plan"
	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/jackc/pgx/v5/pgproto3"
)

// holding is how a session holds its backend connection: the one thing
// session and transaction pooling do differently. Session pooling
// (sessionHold, below) keeps the backend the client logged in with for the
// whole session; transaction pooling (*txHold, txmode.go) leases one per
// transaction, carries the client's parameters and prepared statements from
// backend to backend, and pins the client to its backend where it must.
// The session's loop, statement handling and pump call it at the points
// below and otherwise read the same in both modes, as CockroachDB's SQL
// proxy keeps connection migration beside its forwarder.
type holding interface {
	// login gives the backend the login acquired the client's startup
	// parameters, and returns the process id for the client's
	// BackendKeyData: the backend's own, or 0 for one the proxy makes.
	login(ctx context.Context, be *pool.Conn) (keyPID uint32, err error)
	// start runs once the client is greeted: it starts the pump, or
	// gives the backend back until the client's first transaction.
	start()

	// backendFor returns the backend a client message of type typ goes
	// to; nil means the message has nowhere to go and is dropped (a Flush
	// between transactions). messageDone follows each message.
	backendFor(typ byte) (*pool.Conn, error)
	messageDone(typ byte)
	// release gives be back if the client no longer needs it; true means
	// it was given back and be's pump ends. The pump asks at each
	// ReadyForQuery and when nudged.
	release(be *pool.Conn) bool
	// nudged reports whether err, a read error of be's pump, is the
	// holding's own wake-up (see release) rather than a failure.
	nudged(be *pool.Conn, err error) bool
	// cancelledLocked runs when a cancel forwarded to the backend was
	// delivered, with the session's mu held.
	cancelledLocked()
	// pin keeps the client's backend for the rest of its session: it did
	// something whose effect outlives the transaction on that connection.
	pin(why string)
	// giveBack ends the session's hold on be when the session ends.
	giveBack(be *pool.Conn)

	// query does the bookkeeping for a simple Query the client wrote as
	// text, about to be sent as sql: the text to send, or a denial.
	query(be *pool.Conn, text, sql string) (string, *plan.Denial, error)
	// prefixRuns does it for the statements before a denied one (sql),
	// which run: a denial means none of them may.
	prefixRuns(be *pool.Conn, sql string) *plan.Denial
	// denying says that the proxy's denial statement takes the backend's
	// unnamed statement.
	denying(be *pool.Conn)
	// checkParse returns the plan of a denial in place of the client's
	// Parse m, or nil; sendParse sends it, as recorded under m's name in
	// ps (false: the caller sends it as it is).
	checkParse(be *pool.Conn, m *pgproto3.Parse) *plan.Plan
	sendParse(be *pool.Conn, name string, ps *prepared) (bool, error)
	// extended handles a Bind, Describe or Close of typ whose header was
	// peeked (false: the caller handles it).
	extended(be *pool.Conn, typ byte, n int) (bool, error)
	// backendError does the bookkeeping for an ErrorResponse (body) that
	// answers r, and schemaChanged for a committed schema change.
	backendError(be *pool.Conn, r request, body []byte)
	schemaChanged()
}

// sessionHold is session pooling: the client keeps the backend it logged
// in with, and its statements reach it under their own names.
type sessionHold struct{ sess *session }

func (h sessionHold) login(ctx context.Context, be *pool.Conn) (uint32, error) {
	return be.PID, h.sess.applyStartupParams(ctx)
}

func (h sessionHold) start() {
	h.sess.pumpDone = make(chan struct{})
	go h.sess.pump(h.sess.be)
}

func (h sessionHold) backendFor(byte) (*pool.Conn, error) { return h.sess.be, nil }
func (sessionHold) messageDone(byte)                      {}
func (sessionHold) release(*pool.Conn) bool               { return false }
func (sessionHold) nudged(*pool.Conn, error) bool         { return false }
func (sessionHold) cancelledLocked()                      {}
func (sessionHold) pin(string)                            {}

// giveBack destroys a backend left inside a transaction, as PostgreSQL's
// own would end with its client (and PgBouncer closes a server that was
// not idle), so the next client never gets the process id this one was
// told; an idle one goes back to be reset.
func (h sessionHold) giveBack(be *pool.Conn) {
	if be.TxStatus != 'I' {
		h.sess.backends.Destroy(be)
		return
	}
	h.sess.backends.Release(be)
}

func (sessionHold) query(_ *pool.Conn, _, sql string) (string, *plan.Denial, error) {
	return sql, nil, nil
}
func (sessionHold) prefixRuns(*pool.Conn, string) *plan.Denial            { return nil }
func (sessionHold) denying(*pool.Conn)                                    {}
func (sessionHold) checkParse(*pool.Conn, *pgproto3.Parse) *plan.Plan     { return nil }
func (sessionHold) sendParse(*pool.Conn, string, *prepared) (bool, error) { return false, nil }
func (sessionHold) extended(*pool.Conn, byte, int) (bool, error)          { return false, nil }
func (sessionHold) backendError(*pool.Conn, request, []byte)              {}
func (sessionHold) schemaChanged()                                        {}
