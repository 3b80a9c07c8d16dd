package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5/pgconn"
)

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestServeWebSocket: websocket.listen serves PostgreSQL over WebSocket and
// SQL over HTTP with the configured policies, and a shutdown drains the
// WebSocket sessions as it drains TCP ones.
func TestServeWebSocket(t *testing.T) {
	addr := freeAddr(t)
	s := startServe(t, fmt.Sprintf("websocket: {listen: %q, allowed_origins: [app.example.com]}\n", addr))

	cfg, err := pgconn.ParseConfig(s.url("alice", "alice"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DialFunc = func(ctx context.Context, _, _ string) (net.Conn, error) {
		c, _, err := websocket.Dial(ctx, "ws://"+addr+"/v2", nil)
		if err != nil {
			return nil, err
		}
		return websocket.NetConn(context.Background(), c, websocket.MessageBinary), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var conn *pgconn.PgConn
	waitFor(t, "the WebSocket listener", func() bool {
		conn, err = pgconn.ConnectConfig(ctx, cfg)
		return err == nil
	})
	defer conn.Close(context.Background())
	res, err := conn.Exec(ctx, "SELECT id FROM users").ReadAll()
	if err != nil || len(res[0].Rows) != 1 || string(res[0].Rows[0][0]) != "u_alice" {
		t.Fatalf("alice over WebSocket: %v %v", res, err)
	}

	req, _ := http.NewRequest("POST", "http://"+addr+"/sql", strings.NewReader(`{"query":"DELETE FROM packages","params":[]}`))
	req.Header.Set("Neon-Connection-String", s.url("alice", "alice"))
	req.Header.Set("Origin", "https://app.example.com")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if resp.StatusCode != 400 || out["code"] != "42501" || out["decision_id"] == nil {
		t.Fatalf("denial over HTTP: %d %v", resp.StatusCode, out)
	}

	s.stop()
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
		s.done <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return")
	}
	_, err = conn.Exec(ctx, "SELECT 1").ReadAll()
	var pe *pgconn.PgError
	if err == nil || (errors.As(err, &pe) && pe.Code != "57P01") {
		t.Fatalf("idle WebSocket session after the drain: %v, want 57P01 or closed", err)
	}
}
