package wire

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/dbalproxy/dbalproxy/audit"
	"github.com/dbalproxy/dbalproxy/parser"
	"github.com/dbalproxy/dbalproxy/plan"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"
)

// Startup packet codes (the first four bytes after the length).
const (
	codeProtocol3   = 3 << 16
	codeSSLRequest  = 80877103
	codeGSSENC      = 80877104
	codeCancel      = 80877102
	maxStartupBytes = 10000 // PostgreSQL's MAX_STARTUP_PACKET_LENGTH
	maxAuthBytes    = 10000
)

// readStartup reads startup packets until a StartupMessage, answering
// SSLRequest and GSSENCRequest on the way. It returns nil, nil for a
// CancelRequest, which it has handled.
func (sess *session) readStartup() (*pgproto3.StartupMessage, error) {
	sslDone, gssDone := false, false
	for {
		var lenBuf [4]byte
		if _, err := io.ReadFull(sess.cr.r, lenBuf[:]); err != nil {
			return nil, err
		}
		n := int(binary.BigEndian.Uint32(lenBuf[:]))
		if n < 8 || n > maxStartupBytes {
			return nil, fatalf(CodeProtocolViolation, "invalid length of startup packet")
		}
		body := make([]byte, n-4)
		if _, err := io.ReadFull(sess.cr.r, body); err != nil {
			return nil, err
		}
		code := binary.BigEndian.Uint32(body[:4])
		switch {
		case code == codeSSLRequest:
			if sslDone || sess.tls {
				return nil, fatalf(CodeProtocolViolation, "unexpected SSLRequest")
			}
			sslDone = true
			if err := sess.answerSSL(); err != nil {
				return nil, err
			}
		case code == codeGSSENC:
			if gssDone || sess.tls {
				return nil, fatalf(CodeProtocolViolation, "unexpected GSSENCRequest")
			}
			gssDone = true
			// No GSSAPI encryption: 'N' makes clients fall back to TLS or plain.
			if _, err := sess.conn.Write([]byte{'N'}); err != nil {
				return nil, err
			}
		case code == codeCancel:
			var m pgproto3.CancelRequest
			if err := m.Decode(body); err != nil {
				return nil, fatalf(CodeProtocolViolation, "invalid cancel request")
			}
			sess.srv.handleCancel(m.ProcessID, m.SecretKey)
			return nil, nil
		case code>>16 == 3:
			var m pgproto3.StartupMessage
			if err := m.Decode(body); err != nil {
				return nil, fatalf(CodeProtocolViolation, "invalid startup packet layout")
			}
			return &m, nil
		default:
			return nil, fatalf(CodeFeatureNotSupported, "unsupported frontend protocol %d.%d: server supports 3.0",
				code>>16, code&0xffff)
		}
	}
}

// answerSSL answers an SSLRequest and, with TLS configured, upgrades the
// connection.
func (sess *session) answerSSL() error {
	if sess.srv.cfg.TLS == nil {
		_, err := sess.conn.Write([]byte{'N'})
		return err
	}
	// Bytes sent after SSLRequest but before the handshake would be read as
	// if they had come over TLS: refuse them (CVE-2021-23214).
	if sess.cr.r.Buffered() > 0 {
		return fatalf(CodeProtocolViolation, "received unencrypted data after SSL request")
	}
	if _, err := sess.conn.Write([]byte{'S'}); err != nil {
		return err
	}
	tc := tls.Server(sess.conn, sess.srv.cfg.TLS)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	sess.conn = tc
	sess.tls = true
	sess.cr.r = bufio.NewReaderSize(tc, clientBufSize)
	sess.cw = bufio.NewWriterSize(tc, clientBufSize)
	return nil
}

// checkStartup validates the StartupMessage and fills in user, database and
// the parameters to apply on the backend.
func (sess *session) checkStartup(m *pgproto3.StartupMessage) error {
	if m.ProtocolVersion&0xffff != 0 {
		// A newer 3.x minor version: we speak 3.0. NegotiateProtocolVersion is
		// sent in greet, after authentication, as PostgreSQL does.
		sess.negotiateMinor = true
	}
	if sess.srv.cfg.RequireTLS && !sess.tls {
		return fatalf(CodeInvalidAuthorization, "this proxy requires TLS (connect with sslmode=require)")
	}
	params := map[string]string{}
	for k, v := range m.Parameters {
		switch {
		case k == "user":
			sess.user = v
		case k == "database":
			sess.database = v
		case k == "replication":
			if v != "false" && v != "off" && v != "0" && v != "no" {
				return fatalf(CodeFeatureNotSupported, "replication connections are not supported by the proxy")
			}
		case k == "options":
			opts, err := parseOptions(v)
			if err != nil {
				return err
			}
			for ok, ov := range opts {
				params[ok] = ov
			}
		case strings.HasPrefix(k, "_pq_."):
			sess.unknownOptions = append(sess.unknownOptions, k)
		default:
			params[k] = v
		}
	}
	if sess.user == "" {
		return fatalf(CodeInvalidAuthorization, "no PostgreSQL user name specified in startup packet")
	}
	if sess.database == "" {
		sess.database = sess.user
	}
	for k, v := range params {
		if err := checkStartupParam(k); err != nil {
			return err
		}
		if why := parser.SettingHazard(k, v); why != "" {
			return fatalf(CodeFeatureNotSupported, "%s", why) // see lexguard.go
		}
	}
	sess.startupParams = params
	return nil
}

// parseOptions reads the startup "options" value: command-line style
// "-c name=value" and "--name=value" switches, backslash escaping a space.
func parseOptions(s string) (map[string]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	out := map[string]string{}
	for i := 0; i < len(words); i++ {
		w := words[i]
		var kv string
		switch {
		case w == "-c" && i+1 < len(words):
			i++
			kv = words[i]
		case strings.HasPrefix(w, "-c"):
			kv = w[2:]
		case strings.HasPrefix(w, "--"):
			kv = w[2:]
		default:
			return nil, fatalf(CodeFeatureNotSupported, "unsupported startup option %q: only -c name=value and --name=value are supported", w)
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fatalf(CodeProtocolViolation, "-c %s requires a value", kv)
		}
		out[strings.ReplaceAll(k, "-", "_")] = v
	}
	return out, nil
}

// checkStartupParam refuses parameters that would change who the backend
// session acts as, or that the proxy reserves.
func checkStartupParam(name string) error {
	lower := strings.ToLower(name)
	if lower == "role" || lower == "session_authorization" || strings.HasPrefix(lower, "dbal.") {
		return fatalf(CodeInsufficientPriv, "parameter %q cannot be set at connection start through the proxy", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return fatalf(CodeProtocolViolation, "invalid parameter name %q in startup packet", name)
		}
	}
	return nil
}

// login takes a client from its StartupMessage to its first ReadyForQuery:
// authentication, the login's limits, the backend connection and its
// parameters, and the greeting. It writes the login's audit record once its
// outcome is known, and on failure tells the client (FATAL) and gives back
// whatever it took. On success the session holds its backend and its cancel
// key, and the caller must call release when the session ends.
func (sess *session) login(m *pgproto3.StartupMessage) (release func(), err error) {
	var lg *Login
	// A panic on the way skips what follows; recoverRun audits it then.
	release, err = sess.loginSteps(m, &lg)
	sess.auditLogin(lg, err)
	if err != nil {
		sess.startupFailed(err)
	}
	return release, err
}

// loginSteps is login up to its outcome; *lg is set once the client has
// authenticated (or the login was refused for a reason of its own).
func (sess *session) loginSteps(m *pgproto3.StartupMessage, lg **Login) (release func(), err error) {
	if err := sess.checkStartup(m); err != nil {
		return nil, err
	}
	sess.log = sess.log.With().Str("user", sess.user).Str("database", sess.database).Logger()
	login, err := sess.authenticate()
	*lg = login
	admitted, err := sess.srv.admitLogin(login, err) // per-login limit, drain: see wire/server.go
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok { // a failure, or a panic on the way (recover.go)
			sess.srv.cancels.unregister(sess)
			admitted()
		}
	}()
	sess.principal = plan.Principal{User: login.Name, Role: login.Role, Claims: login.Claims}
	if login.Backends != nil {
		sess.backends = login.Backends
	}
	if console, err := sess.consoleLogin(); console { // the admin console: see wire/console.go
		ok = err == nil
		return admitted, err
	}
	if !sess.srv.databaseAllowed(sess.database) {
		return nil, fatalf(CodeInvalidCatalogName, "database %q is not served by this proxy", sess.database)
	}
	ctx, cancel := context.WithTimeout(context.Background(), sess.srv.cfg.StartupTimeout)
	be, err := sess.backends.Acquire(ctx, sess.database)
	cancel()
	if err != nil {
		return nil, sess.acquireFailed(err)
	}
	sess.attach(be)
	ctx, cancel = context.WithTimeout(context.Background(), sess.srv.cfg.StartupTimeout)
	if sess.srv.cfg.TransactionPooling {
		// Statements are renamed for the backend even when not decided.
		sess.hold, sess.handles = newTxHold(sess), true
	}
	backendPID, err := sess.hold.login(ctx, be)
	cancel()
	if err != nil {
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			// The backend failed, not the client's parameters: the cause
			// is the proxy's to log, the client learns only that much.
			be.MarkBroken()
			sess.log.Warn().Err(err).Msg("backend connection failed while setting the client's parameters")
			err = fatalf(CodeConnectionFailure, "the proxy cannot connect to the database server")
		}
	}
	if err == nil {
		for _, k := range parser.LexerSettings {
			if why := parser.SettingHazard(k, be.Params[k]); why != "" {
				// The server's (or the role's) default (lexguard.go).
				err = fatalf(CodeFeatureNotSupported, "%s", why)
			}
		}
	}
	if err != nil {
		sess.releaseBackend()
		return nil, err
	}
	sess.initStatements()
	sess.srv.cancels.register(sess, backendPID)
	if err := sess.greet(); err != nil {
		sess.releaseBackend()
		return nil, err
	}
	ok = true
	return admitted, nil
}

// acquireFailed is the error a client gets when no backend connection
// could be had, at login or for a transaction's lease: the pool's own
// errors say what a client may see (never the backend's words about the
// proxy's own connection); a startup timeout that ran out while waiting is
// the pool's timeout; anything else is 08006.
func (sess *session) acquireFailed(err error) error {
	var ss sqlStater
	switch {
	case errors.As(err, &ss):
		return err
	case errors.Is(err, context.DeadlineExceeded):
		sess.log.Warn().Err(err).Msg("no backend connection within the startup timeout")
		return fatalf(CodeTooManyConnections, "timed out waiting for a free backend connection")
	}
	sess.log.Warn().Err(err).Msg("no backend connection for a new client")
	return fatalf(CodeConnectionFailure, "the proxy cannot connect to the database server")
}

// startupFailed reports an error during startup to the client and logs it.
// I/O errors (a client that went away, a startup timeout) are only logged.
// The log has the whole error (a backend's refusal of the proxy's own
// connection included); the client gets what toErrorResponse lets through.
func (sess *session) startupFailed(err error) {
	var pe *Error
	var ss sqlStater
	switch {
	case errors.As(err, &pe):
		sess.log.Info().Str("sqlstate", pe.Code).Str("error", pe.Message).Msg("connection refused")
	case errors.As(err, &ss):
		// The pool's or the backend's errors; checked before I/O errors:
		// a dial that timed out is not a client that gave up.
		sess.log.Warn().Err(err).Str("sqlstate", ss.SQLState()).Msg("login failed on the backend side")
	case isClosedOrTimeout(err):
		sess.log.Debug().Err(err).Msg("client gave up during startup")
		return
	default:
		sess.log.Warn().Err(err).Msg("startup failed")
	}
	sess.writeError(err, "FATAL")
	_ = sess.cw.Flush()
}

// auditLogin records the outcome of a login attempt (err nil: success),
// with the SQLSTATE and message the client was given and the time from
// accepting the connection to the outcome.
func (sess *session) auditLogin(login *Login, err error) {
	sess.panics.loginAudited = true
	if sess.srv.cfg.Auditor == nil {
		return
	}
	now := time.Now()
	rec := audit.Record{
		Event: audit.EventLogin, Time: now, SessionID: sess.id, ClientAddr: sess.conn.RemoteAddr().String(),
		User: sess.user, Database: sess.database, ApplicationName: sess.startupParams["application_name"],
		DurationMS: float64(now.Sub(sess.accepted).Microseconds()) / 1000,
		Rows:       -1, Success: err == nil, DecisionID: audit.NewDecisionID(),
	}
	if login != nil {
		rec.Role = login.Role
		rec.UserID = claimString(login.Claims, "user_id")
	}
	if err != nil {
		rec.SQLState, rec.Error = loginOutcome(err)
	}
	sess.srv.cfg.Auditor.Log(&rec)
}

// loginOutcome is the SQLSTATE and message of a failed login: what the
// client was told, or for a client that went away, why the login ended.
func loginOutcome(err error) (code, msg string) {
	var pe *Error
	var ss sqlStater
	switch {
	case errors.As(err, &pe), errors.As(err, &ss):
	case errors.Is(err, os.ErrDeadlineExceeded):
		return CodeQueryCanceled, "canceling authentication due to timeout"
	case isClosedOrTimeout(err):
		return CodeProtocolViolation, "the client closed the connection during login"
	}
	r := toErrorResponse(err, "FATAL", CodeInternalError)
	return r.Code, r.Message
}

func claimString(claims map[string]any, name string) string {
	if s, ok := claims[name].(string); ok {
		return s
	}
	return ""
}

// authenticate checks the client's credentials and returns its login.
func (sess *session) authenticate() (*Login, error) {
	srv := sess.srv
	login, known := srv.cfg.Logins.Login(sess.user)
	if known && login.Token != nil {
		// A token login proves itself with its token, whatever the method.
		return sess.authenticateToken(login)
	}
	if srv.cfg.AuthMethod == AuthTrust {
		if !known {
			return nil, fatalf(CodeInvalidAuthorization, "role %q does not exist", sess.user)
		}
		return login, nil
	}
	creds := srv.mockCredentials(sess.user)
	if known {
		creds = login.SCRAM
	}
	failed := fatalf(CodeInvalidPassword, "password authentication failed for user %q", sess.user)
	server, err := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return creds, nil })
	if err != nil {
		return nil, err
	}
	conv := server.NewConversation()
	if err := sess.sendStartupMsg(&pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256"}}); err != nil {
		return nil, err
	}
	body, err := sess.readAuthMessage(maxAuthBytes)
	if err != nil {
		return nil, err
	}
	var first pgproto3.SASLInitialResponse
	if err := first.Decode(body); err != nil {
		return nil, fatalf(CodeProtocolViolation, "invalid SASL initial response")
	}
	if first.AuthMechanism != "SCRAM-SHA-256" {
		return nil, fatalf(CodeProtocolViolation, "client selected an invalid SASL authentication mechanism")
	}
	resp, err := conv.Step(string(first.Data))
	if err != nil {
		return nil, failed
	}
	if err := sess.sendStartupMsg(&pgproto3.AuthenticationSASLContinue{Data: []byte(resp)}); err != nil {
		return nil, err
	}
	body, err = sess.readAuthMessage(maxAuthBytes)
	if err != nil {
		return nil, err
	}
	var final pgproto3.SASLResponse
	if err := final.Decode(body); err != nil {
		return nil, fatalf(CodeProtocolViolation, "invalid SASL response")
	}
	resp, err = conv.Step(string(final.Data))
	if err != nil || !conv.Valid() || !known {
		return nil, failed
	}
	if err := sess.sendStartupMsg(&pgproto3.AuthenticationSASLFinal{Data: []byte(resp)}); err != nil {
		return nil, err
	}
	return login, nil
}

// readAuthMessage reads one 'p' message body of at most max bytes during
// authentication.
func (sess *session) readAuthMessage(max int) ([]byte, error) {
	typ, n, err := sess.cr.header()
	if err != nil {
		return nil, err
	}
	if typ != 'p' {
		return nil, fatalf(CodeProtocolViolation, "expected authentication response, got message type %q", typ)
	}
	if n > max {
		return nil, fatalf(CodeProtocolViolation, "invalid authentication response length")
	}
	return sess.cr.readBody(n, nil)
}

func (sess *session) sendStartupMsg(m pgproto3.BackendMessage) error {
	buf, err := m.Encode(sess.scratch[:0])
	if err != nil {
		return err
	}
	sess.scratch = buf
	if _, err := sess.cw.Write(buf); err != nil {
		return err
	}
	return sess.cw.Flush()
}

func (srv *Server) mockCredentials(user string) scram.StoredCredentials {
	return mockCredentials(srv.mockSecret, user)
}

// databaseAllowed reports whether clients may ask for db.
func (srv *Server) databaseAllowed(db string) bool {
	if db == srv.cfg.DefaultDatabase {
		return true
	}
	return slices.Contains(srv.cfg.Databases, "*") || slices.Contains(srv.cfg.Databases, db)
}

// applyStartupParams sets the client's startup parameters on the backend
// connection with set_config, skipping those that already have the value.
func (sess *session) applyStartupParams(ctx context.Context) error {
	var q strings.Builder
	keys := make([]string, 0, len(sess.startupParams))
	for k := range sess.startupParams {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := sess.startupParams[k]
		if cur, ok := sess.be.Params[k]; ok && cur == v {
			continue
		}
		appendSetConfig(&q, k, v)
	}
	if q.Len() == 0 {
		return nil
	}
	return sess.be.Exec(ctx, q.String())
}

// greet sends what a server sends after authentication: AuthenticationOk,
// the backend's ParameterStatus values, the proxy's own BackendKeyData and
// ReadyForQuery.
func (sess *session) greet() error {
	var buf []byte
	var err error
	buf, err = (&pgproto3.AuthenticationOk{}).Encode(buf)
	if err != nil {
		return err
	}
	if sess.negotiateMinor {
		buf, err = (&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: sess.unknownOptions}).Encode(buf)
		if err != nil {
			return err
		}
	}
	names := make([]string, 0, len(sess.be.Params))
	for k := range sess.be.Params {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		buf, err = (&pgproto3.ParameterStatus{Name: k, Value: sess.clientParamValue(k, sess.be.Params[k])}).Encode(buf)
		if err != nil {
			return err
		}
	}
	var secret [4]byte
	binary.BigEndian.PutUint32(secret[:], sess.keySecret)
	buf, err = (&pgproto3.BackendKeyData{ProcessID: sess.keyPID, SecretKey: secret[:]}).Encode(buf)
	if err != nil {
		return err
	}
	buf, err = (&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(buf)
	if err != nil {
		return err
	}
	if _, err := sess.cw.Write(buf); err != nil {
		return err
	}
	return sess.cw.Flush()
}

// clientParamValue hides the backend's own identity: the client sees its
// login as session_authorization and is never told it is a superuser.
func (sess *session) clientParamValue(name, value string) string {
	switch name {
	case "session_authorization":
		return sess.user
	case "is_superuser":
		return "off"
	}
	return value
}

// handleCancel cancels what the session with this key runs on its backend.
// Unknown keys are ignored, as PostgreSQL does.
func (srv *Server) handleCancel(pid uint32, secret []byte) {
	sess := srv.cancels.lookup(pid, secret)
	if sess == nil && srv.forwardCancel(pid, secret) { // another proxy's key: see wire/server.go
		return
	}
	if sess == nil {
		srv.log.Debug().Msg("cancel request with an unknown key ignored")
		return
	}
	sess.cancelRunning()
}

// setDeadline sets a read and write deadline d from now; zero clears it.
func setDeadline(c net.Conn, d time.Duration) {
	if d == 0 {
		_ = c.SetDeadline(time.Time{})
		return
	}
	_ = c.SetDeadline(time.Now().Add(d))
}

// appendSetConfig adds `pg_catalog.set_config(<name>, <value>, false)` to a
// query that sets several parameters in one SELECT.
func appendSetConfig(q *strings.Builder, name, value string) {
	if q.Len() == 0 {
		q.WriteString("SELECT ")
	} else {
		q.WriteString(", ")
	}
	q.WriteString("pg_catalog.set_config(")
	writePLLiteral(q, name)
	q.WriteString(", ")
	writePLLiteral(q, value)
	q.WriteString(", false)")
}
