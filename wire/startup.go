package wire

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

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
		if why := settingHazard(k, v); why != "" {
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
