package bridge

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"
)

// Startup packet codes (see wire/startup.go).
const (
	codeCancel     = 80877102
	codeSSLRequest = 80877103
	codeGSSENC     = 80877104

	maxStartupBytes = 10000 // PostgreSQL's MAX_STARTUP_PACKET_LENGTH
	maxAuthBytes    = 10000
	maxServerAuth   = 1 << 20
)

// relayStartup carries a WebSocket client's startup to the session and
// bridges the one difference between the Neon driver and a TCP client: by
// default (pipelineConnect: "password") the driver sends its password in
// clear text right behind the StartupMessage, without waiting to be asked,
// and ignores an AuthenticationCleartextPassword request. A SCRAM login
// cannot take that password, so when the session asks for SCRAM and
// cleartext is acceptable (wss, or a loopback client), the bridge asks the
// client for its password in clear text (a pipelining client has already
// sent it and ignores the request) and runs the SCRAM exchange with the
// session on the client's behalf, checking the server's proof too. The
// session still verifies the password against the login's verifier: the
// bridge knows nothing of logins. Otherwise (plain ws from another host)
// the SCRAM request reaches the client unchanged; such a client must set
// pipelineConnect to false and does SCRAM itself.
//
// SSLRequest and GSSENCRequest are answered 'N' here: a WebSocket is
// encrypted by wss or not at all. Everything else (a token login's
// cleartext request, trust, errors) passes through. relayStartup returns
// once the bytes can flow unchanged both ways.
func relayStartup(cr io.Reader, client io.Writer, session net.Conn, cleartextOK bool) error {
	user := ""
	for {
		body, err := readStartupPacket(cr)
		if err != nil {
			return err
		}
		code := binary.BigEndian.Uint32(body[:4])
		if code == codeSSLRequest || code == codeGSSENC {
			if _, err := client.Write([]byte{'N'}); err != nil {
				return err
			}
			continue
		}
		if code>>16 == 3 {
			var m pgproto3.StartupMessage
			if m.Decode(body) == nil {
				user = m.Parameters["user"]
			}
		}
		if err := writePacket(session, 0, body); err != nil {
			return err
		}
		if code == codeCancel || code>>16 != 3 {
			return nil // the session handles it and closes
		}
		break
	}
	typ, body, err := readMessage(session, maxServerAuth)
	if err != nil {
		return err
	}
	if typ != 'R' || len(body) < 4 || binary.BigEndian.Uint32(body) != 10 ||
		!bytes.Contains(body[4:], []byte("SCRAM-SHA-256\x00")) {
		return writePacket(client, typ, body)
	}
	if !cleartextOK {
		// The client must do SCRAM itself. A pipelining driver has sent
		// its password in clear text already: tell it what to change
		// rather than let the session call it a protocol violation.
		if err := writePacket(client, typ, body); err != nil {
			return err
		}
		typ, resp, err := readMessage(cr, maxAuthBytes)
		if err != nil {
			return err
		}
		if typ != 'p' || !bytes.HasPrefix(resp, []byte("SCRAM-SHA-256\x00")) {
			refuseClient(client, "28000", "a password in clear text is accepted over wss or from a loopback client only: use wss, or set the driver's pipelineConnect to false")
			return errStartup
		}
		return writePacket(session, typ, resp)
	}
	// Ask for the password; a pipelining client has sent it already.
	if err := writePacket(client, 'R', []byte{0, 0, 0, 3}); err != nil {
		return err
	}
	password, err := readPassword(cr)
	if err != nil {
		return err
	}
	return scramForClient(session, client, user, password)
}

// scramForClient runs SCRAM-SHA-256 with the session as the client would,
// and forwards the session's answer when it is not the next SCRAM step (an
// error, typically).
func scramForClient(session net.Conn, client io.Writer, user, password string) error {
	sc, err := scram.SHA256.NewClient("*", password, "")
	if err != nil {
		// SASLprep refused the password: no verifier can match it; let
		// the session refuse the login with its own error.
		sc, err = scram.SHA256.NewClient("*", "not a valid password "+rand.Text(), "")
		if err != nil {
			return err
		}
	}
	conv := sc.NewConversation()
	first, err := conv.Step("")
	if err != nil {
		return err
	}
	msg, err := (&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte(first)}).Encode(nil)
	if err != nil {
		return err
	}
	if _, err := session.Write(msg); err != nil {
		return err
	}
	for _, want := range []uint32{11, 12} { // SASLContinue, SASLFinal
		typ, body, err := readMessage(session, maxServerAuth)
		if err != nil {
			return err
		}
		if typ != 'R' || len(body) < 4 || binary.BigEndian.Uint32(body) != want {
			return writePacket(client, typ, body)
		}
		reply, err := conv.Step(string(body[4:]))
		if err != nil {
			// A server proof that does not match: not our proxy.
			return fmt.Errorf("bridge: SCRAM with the session failed for %q: %w", user, err)
		}
		if want == 12 {
			return nil
		}
		msg, err := (&pgproto3.SASLResponse{Data: []byte(reply)}).Encode(nil)
		if err != nil {
			return err
		}
		if _, err := session.Write(msg); err != nil {
			return err
		}
	}
	return nil
}

// refuseClient sends a FATAL ErrorResponse to the client.
func refuseClient(client io.Writer, code, msg string) {
	buf, err := (&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg}).Encode(nil)
	if err == nil {
		_, _ = client.Write(buf)
	}
}

// readStartupPacket reads one length-prefixed startup packet and returns
// its body (from the code on).
func readStartupPacket(r io.Reader) ([]byte, error) {
	var lenBuf [4]byte
	if _, err := io.ReadFull(r, lenBuf[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(lenBuf[:]))
	if n < 8 || n > maxStartupBytes {
		return nil, errStartup
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return body, nil
}

// readMessage reads one typed message of at most max body bytes.
func readMessage(r io.Reader, max int) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[1:]))
	if n < 4 || n-4 > max {
		return 0, nil, errStartup
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return hdr[0], body, nil
}

// readPassword reads the client's PasswordMessage.
func readPassword(r io.Reader) (string, error) {
	typ, body, err := readMessage(r, maxAuthBytes)
	if err != nil {
		return "", err
	}
	if typ != 'p' || len(body) == 0 || body[len(body)-1] != 0 {
		return "", errStartup
	}
	return string(body[:len(body)-1]), nil
}

// writePacket writes a message: with typ 0, an untyped startup packet.
func writePacket(w io.Writer, typ byte, body []byte) error {
	buf := make([]byte, 0, 5+len(body))
	if typ != 0 {
		buf = append(buf, typ)
	}
	buf = binary.BigEndian.AppendUint32(buf, uint32(4+len(body)))
	buf = append(buf, body...)
	_, err := w.Write(buf)
	return err
}
