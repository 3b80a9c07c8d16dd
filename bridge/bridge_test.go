package bridge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5/pgconn"
)

// wsConnect connects pgconn through the bridge's WebSocket, as a client
// doing SCRAM itself (pipelineConnect false in the Neon driver).
func wsConnect(t *testing.T, p *proxy, login string) (*pgconn.PgConn, error) {
	t.Helper()
	cfg, err := pgconn.ParseConfig(p.URL(p.WSAddr, login))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DialFunc = wsDial(p.WSAddr)
	return pgconn.ConnectConfig(ctxT(t, 10*time.Second), cfg)
}

// wsDial dials the bridge's WebSocket at addr, as a pgconn DialFunc.
func wsDial(addr string) pgconn.DialFunc {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		c, _, err := websocket.Dial(ctx, "ws://"+addr+"/v2", nil)
		if err != nil {
			return nil, err
		}
		return websocket.NetConn(context.Background(), c, websocket.MessageBinary), nil
	}
}

// TestWebSocketSession runs a session over a WebSocket: SCRAM login, a row
// filter, and a denial with its decision id, as over TCP.
func TestWebSocketSession(t *testing.T) {
	p := startProxy(t)
	conn, err := wsConnect(t, p, "alice")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	ctx := ctxT(t, 10*time.Second)
	res, err := conn.Exec(ctx, "SELECT id FROM users ORDER BY id").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(res[0].Rows) != 1 || string(res[0].Rows[0][0]) != "u_alice" {
		t.Fatalf("alice sees %v, want only u_alice (the row filter)", res[0].Rows)
	}
	_, err = conn.Exec(ctx, "DELETE FROM packages").ReadAll()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" || !strings.Contains(pe.Detail, "decision_id=") {
		t.Fatalf("DELETE FROM packages: %v, want 42501 with a decision_id", err)
	}
	// COPY streams over the frames, filtered as over TCP.
	var buf bytes.Buffer
	if _, err := conn.CopyTo(ctx, &buf, "COPY (SELECT id FROM users) TO STDOUT"); err != nil || buf.String() != "u_alice\n" {
		t.Fatalf("COPY TO over WebSocket: %q %v", buf.String(), err)
	}
	if _, err := wsConnect(t, p, "nobody"); err == nil {
		t.Fatal("unknown login accepted")
	}
}

// postSQL posts a body to /sql with the driver's headers.
func postSQL(t *testing.T, p *proxy, login string, body string, hdr map[string]string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest("POST", "http://"+p.WSAddr+"/sql", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Neon-Connection-String", p.URL("db.example.com", login))
	req.Header.Set("Neon-Raw-Text-Output", "true")
	req.Header.Set("Neon-Array-Mode", "true")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&out); err != nil {
		t.Fatalf("response %d %q: %v", resp.StatusCode, b, err)
	}
	return resp.StatusCode, out
}

// TestHTTPSQL runs queries over HTTP: results in the driver's format, a
// row filter, a denial with its decision id, and a batch in one
// transaction that rolls back as a whole.
func TestHTTPSQL(t *testing.T) {
	p := startProxy(t)
	code, out := postSQL(t, p, "alice", `{"query":"SELECT id, $1::int + 1 AS n FROM users","params":["41"]}`, nil)
	if code != 200 {
		t.Fatalf("status %d: %v", code, out)
	}
	rows, _ := json.Marshal(out["rows"])
	if string(rows) != `[["u_alice","42"]]` || out["command"] != "SELECT" || out["rowCount"] != 1.0 {
		t.Fatalf("got %v", out)
	}
	code, out = postSQL(t, p, "alice", `{"query":"DELETE FROM packages","params":[]}`, nil)
	if code != 400 || out["code"] != "42501" || out["decision_id"] == nil || out["decision_id"] == "" {
		t.Fatalf("denial: %d %v", code, out)
	}
	code, out = postSQL(t, p, "alice", `{"query":"SELECT 1","params":[]}`, map[string]string{"Neon-Connection-String": "postgres://alice:wrong@x/" + p.DB})
	if code != 400 || out["code"] != "28P01" {
		t.Fatalf("wrong password: %d %v", code, out)
	}
	// A batch: the second query fails, so the first is rolled back.
	code, out = postSQL(t, p, "carol", `{"queries":[{"query":"UPDATE page_views SET title = 'X' WHERE slug = $1","params":["home"]},{"query":"SELECT 1/0","params":[]}]}`,
		map[string]string{"Neon-Batch-Isolation-Level": "Serializable", "Neon-Batch-Read-Only": "false"})
	if code != 400 || out["code"] != "22012" {
		t.Fatalf("failing batch: %d %v", code, out)
	}
	code, out = postSQL(t, p, "bob", `{"queries":[{"query":"SELECT title FROM page_views WHERE slug = $1","params":["home"]},{"query":"SHOW transaction_isolation","params":[]}]}`,
		map[string]string{"Neon-Batch-Isolation-Level": "RepeatableRead", "Neon-Batch-Read-Only": "true"})
	got, _ := json.Marshal(out["results"])
	if code != 200 || !strings.Contains(string(got), `"rows":[["Home"]]`) || !strings.Contains(string(got), `"rows":[["repeatable read"]]`) {
		t.Fatalf("batch: %d %s", code, got)
	}
}
