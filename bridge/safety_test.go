package bridge_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/dbalproxy/dbalproxy/bridge"
	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/wire"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"
)

// TestOrigins: a browser origin other than the request's host is refused
// unless configured, for WebSocket and HTTP; a preflight of an allowed
// origin gets the CORS headers.
func TestOrigins(t *testing.T) {
	p := startProxy(t, func(_ *wire.Config, _ *pool.Config, b *bridge.Config) {
		b.AllowedOrigins = []string{"app.example.com", "https://*.example.org"}
	})
	dial := func(origin string) error {
		h := http.Header{}
		h.Set("Origin", origin)
		c, _, err := websocket.Dial(ctxT(t, 5*time.Second), "ws://"+p.WSAddr+"/v2", &websocket.DialOptions{HTTPHeader: h})
		if err == nil {
			c.CloseNow()
		}
		return err
	}
	for _, o := range []string{"https://app.example.com", "http://" + p.WSAddr, "https://x.example.org"} {
		if err := dial(o); err != nil {
			t.Errorf("origin %s refused: %v", o, err)
		}
	}
	for _, o := range []string{"https://evil.example.net", "http://x.example.org", "null"} {
		if err := dial(o); err == nil {
			t.Errorf("origin %s accepted", o)
		}
	}
	code, _ := postSQL(t, p, "alice", `{"query":"SELECT 1","params":[]}`, map[string]string{"Origin": "https://evil.example.net"})
	if code != http.StatusForbidden {
		t.Errorf("POST from a foreign origin: %d", code)
	}
	req, _ := http.NewRequest("OPTIONS", "http://"+p.WSAddr+"/sql", nil)
	req.Header.Set("Origin", "https://app.example.com")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Neon-Connection-String") {
		t.Errorf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
}

// TestLimits: body and frame sizes, the HTTP request timeout, the idle
// timeout of a WebSocket, and the per-login session limit over both.
func TestLimits(t *testing.T) {
	p := startProxy(t, func(w *wire.Config, _ *pool.Config, b *bridge.Config) {
		b.MaxBodySize = 200
		b.MaxFrameSize = 1000
		b.RequestTimeout = 500 * time.Millisecond
		b.IdleTimeout = 300 * time.Millisecond
		w.LoginMaxConns = map[string]int{"bob": 1}
	})
	code, out := postSQL(t, p, "alice", `{"query":"SELECT '`+strings.Repeat("x", 300)+`'","params":[]}`, nil)
	if code != http.StatusRequestEntityTooLarge || out["code"] != "54000" {
		t.Errorf("big body: %d %v", code, out)
	}
	code, out = postSQL(t, p, "carol", `{"query":"SELECT pg_sleep(3)","params":[]}`, nil)
	if code != 400 || out["code"] != "57014" {
		t.Errorf("request timeout: %d %v", code, out)
	}

	// A frame over the limit ends the connection.
	conn, err := wsConnect(t, p, "alice")
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctxT(t, 5*time.Second), "SELECT '"+strings.Repeat("y", 2000)+"'").ReadAll()
	if err == nil {
		t.Error("a 2000-byte frame went through a 1000-byte limit")
	}
	conn.Close(context.Background())

	// An idle WebSocket is closed.
	conn, err = wsConnect(t, p, "alice")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(800 * time.Millisecond)
	if _, err := conn.Exec(ctxT(t, 5*time.Second), "SELECT 1").ReadAll(); err == nil {
		t.Error("idle WebSocket still open")
	}
	conn.Close(context.Background())

	// bob may hold one session: a second one over WebSocket or HTTP is 53300.
	first, err := wsConnect(t, p, "bob")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close(context.Background())
	_, err = wsConnect(t, p, "bob")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "53300" {
		t.Errorf("second WebSocket session of bob: %v", err)
	}
	code, out = postSQL(t, p, "bob", `{"query":"SELECT 1","params":[]}`, nil)
	if code != 400 || out["code"] != "53300" {
		t.Errorf("HTTP session of bob over his limit: %d %v", code, out)
	}
}

// TestNoCredentialsInLogs: refused logins and bad requests log neither the
// password nor the connection string.
func TestNoCredentialsInLogs(t *testing.T) {
	var logs syncBuffer
	p := startProxy(t, func(w *wire.Config, _ *pool.Config, b *bridge.Config) {
		w.Logger = zerolog.New(&logs).Level(zerolog.DebugLevel)
		b.Logger = w.Logger
	})
	const secret = "s3cr3t-Pa55"
	postSQL(t, p, "alice", `{"query":"SELECT 1","params":[]}`, map[string]string{"Neon-Connection-String": "postgres://alice:" + secret + "@h/" + p.DB})
	postSQL(t, p, "alice", `{"query":`, map[string]string{"Neon-Connection-String": "postgres://alice:" + secret + "@h/" + p.DB})
	postSQL(t, p, "alice", `{"query":"SELECT 1"}`, map[string]string{"Neon-Connection-String": "mysql://alice:" + secret + "@h/"})
	h := http.Header{}
	h.Set("Origin", "https://evil.example.net")
	if c, _, err := websocket.Dial(ctxT(t, 5*time.Second), "ws://"+p.WSAddr+"/v2?password="+secret, &websocket.DialOptions{HTTPHeader: h}); err == nil {
		c.CloseNow()
	}
	time.Sleep(100 * time.Millisecond)
	if s := logs.String(); strings.Contains(s, secret) || s == "" {
		t.Fatalf("logs (empty, or with the password):\n%s", s)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
