package bridge

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// plainRemote runs relayStartup and splice as for a plain WebSocket from
// another host (no cleartext password), between client and a session of
// the fuzz targets' server (logins, no backend).
func plainRemote(t *testing.T, client net.Conn) {
	t.Helper()
	toSession, sessionEnd := net.Pipe()
	if err := fuzzBridge().cfg.Server.ServeConn(sessionEnd, false); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer toSession.Close()
		defer client.Close()
		cr := bufio.NewReader(client)
		if relayStartup(cr, client, toSession, false) == nil {
			splice(cr, client, toSession)
		}
	}()
}

// TestPipelinedPasswordOverPlainRemote: a driver that pipelines its
// password in clear text over a plain WebSocket from another host is told
// what to change (28000), and its password never reaches the session.
func TestPipelinedPasswordOverPlainRemote(t *testing.T) {
	client, server := net.Pipe()
	plainRemote(t, server)
	_ = client.SetDeadline(time.Now().Add(5 * time.Second))
	startup, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "alice", "database": "app"}}).Encode(nil)
	password, _ := (&pgproto3.PasswordMessage{Password: "alice"}).Encode(nil)
	go func() { _, _ = client.Write(append(startup, password...)) }()
	fe := pgproto3.NewFrontend(client, client)
	msg, err := fe.Receive()
	if _, ok := msg.(*pgproto3.AuthenticationSASL); !ok || err != nil {
		t.Fatalf("first message %T %v, want the session's SASL request", msg, err)
	}
	msg, err = fe.Receive()
	e, ok := msg.(*pgproto3.ErrorResponse)
	if !ok || err != nil || e.Code != "28000" || !bytes.Contains([]byte(e.Message), []byte("pipelineConnect")) {
		t.Fatalf("then %#v %v, want 28000 naming pipelineConnect", msg, err)
	}
}

// TestSCRAMOverPlainRemote: a client doing SCRAM itself logs in over a
// plain WebSocket from another host; the bridge passes the exchange
// through.
func TestSCRAMOverPlainRemote(t *testing.T) {
	cfg, err := pgconn.ParseConfig("postgres://alice:alice@bridge.invalid/app?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	cfg.DialFunc = func(context.Context, string, string) (net.Conn, error) {
		client, server := net.Pipe()
		plainRemote(t, server)
		return client, nil
	}
	cfg.LookupFunc = func(context.Context, string) ([]string, error) { return []string{"bridge.invalid"}, nil }
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = pgconn.ConnectConfig(ctx, cfg)
	// Authenticated: the session then fails for want of a backend.
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code == "28000" || pe.Code == "28P01" || pe.Code == "08P01" {
		t.Fatalf("SCRAM through the bridge: %v, want the no-backend error after the login", err)
	}
	cfg.Password = "wrong"
	_, err = pgconn.ConnectConfig(ctx, cfg)
	if !errors.As(err, &pe) || pe.Code != "28P01" {
		t.Fatalf("wrong password: %v, want 28P01", err)
	}
}
