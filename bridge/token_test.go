package bridge_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/bridge"
	"github.com/dbalproxy/dbalproxy/identity"
	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/wire"
	"github.com/jackc/pgx/v5/pgconn"
)

var tokenSecret = []byte("a test secret of at least 32 bytes, for HS256")

// hs256 signs claims as a JWT.
func hs256(t *testing.T, claims map[string]any) string {
	t.Helper()
	enc := base64.RawURLEncoding
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	msg := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(payload)
	mac := hmac.New(sha256.New, tokenSecret)
	mac.Write([]byte(msg))
	return msg + "." + enc.EncodeToString(mac.Sum(nil))
}

// TestTokenLogin: the driver's authToken (Authorization: Bearer)
// is a token login's password; the token's claims drive the row filter.
func TestTokenLogin(t *testing.T) {
	v, err := identity.New(identity.Config{Name: "test", HS256Secret: tokenSecret, UserIDClaim: "sub"})
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, func(w *wire.Config, _ *pool.Config, _ *bridge.Config) {
		logins := w.Logins.(wire.Logins)
		logins["app"] = &wire.Login{Name: "app", Token: v}
		w.TokenTransport = wire.TokenOverTLSOrLoopback
	})
	tok := hs256(t, map[string]any{"sub": "u_bob", "role": "user", "exp": time.Now().Add(time.Hour).Unix()})
	code, out := postSQL(t, p, "app", `{"query":"SELECT id FROM users","params":[]}`,
		map[string]string{"Neon-Connection-String": "postgres://app@h/" + p.DB, "Authorization": "Bearer " + tok})
	rows, _ := json.Marshal(out["rows"])
	if code != 200 || string(rows) != `[["u_bob"]]` {
		t.Fatalf("token login over HTTP: %d %v", code, out)
	}
	code, out = postSQL(t, p, "app", `{"query":"SELECT 1","params":[]}`,
		map[string]string{"Neon-Connection-String": "postgres://app@h/" + p.DB, "Authorization": "Bearer " + tok + "x"})
	if code != 400 || out["code"] != "28P01" && out["code"] != "28000" {
		t.Fatalf("bad token over HTTP: %d %v", code, out)
	}

	// Over WebSocket: the session asks for the token in clear text, which
	// the bridge passes through.
	cfg, err := pgconn.ParseConfig(p.URL(p.WSAddr, "app"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = tok
	cfg.DialFunc = wsDial(p.WSAddr)
	conn, err := pgconn.ConnectConfig(ctxT(t, 10*time.Second), cfg)
	if err != nil {
		t.Fatalf("token login over WebSocket: %v", err)
	}
	defer conn.Close(context.Background())
	res, err := conn.Exec(ctxT(t, 10*time.Second), "SELECT id FROM users").ReadAll()
	if err != nil || len(res[0].Rows) != 1 || string(res[0].Rows[0][0]) != "u_bob" {
		t.Fatalf("token login over WebSocket sees %v, %v", res, err)
	}
}
