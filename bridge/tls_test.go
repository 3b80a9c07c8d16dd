package bridge_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/dbalproxy/dbalproxy/bridge"
	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/wire"
	"github.com/jackc/pgx/v5/pgconn"
)

// selfSigned makes a throwaway certificate for 127.0.0.1, its own CA.
func selfSigned(t *testing.T) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dbalproxy bridge test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, leaf
}

func withTLS(cert tls.Certificate) option {
	return func(w *wire.Config, _ *pool.Config, b *bridge.Config) {
		w.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		w.RequireTLS = true
		b.TLS = w.TLS
	}
}

// TestSecureWebSocket: with the TCP listener's certificates the bridge
// serves wss and https, and its sessions count as TLS (tls.required lets
// them in); the Neon driver works over both with its defaults
// (useSecureWebSocket, pipelined password).
func TestSecureWebSocket(t *testing.T) {
	cert, leaf := selfSigned(t)
	p := startProxy(t, withTLS(cert))
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	cfg, err := pgconn.ParseConfig(p.URL(p.WSAddr, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DialFunc = func(ctx context.Context, _, _ string) (net.Conn, error) {
		c, _, err := websocket.Dial(ctx, "wss://"+p.WSAddr+"/v2", &websocket.DialOptions{HTTPClient: client})
		if err != nil {
			return nil, err
		}
		return websocket.NetConn(context.Background(), c, websocket.MessageBinary), nil
	}
	conn, err := pgconn.ConnectConfig(ctxT(t, 10*time.Second), cfg)
	if err != nil {
		t.Fatalf("wss with tls.required: %v", err)
	}
	if _, err := conn.Exec(ctxT(t, 10*time.Second), "SELECT 1").ReadAll(); err != nil {
		t.Fatal(err)
	}
	conn.Close(context.Background())

	dir := nodeModules(t, "node")
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	runNodeEnv(t, p, dir, []string{"BRIDGE_TLS=1", "NODE_EXTRA_CA_CERTS=" + ca}, "neon.mjs", "pool", "client", "http")
}

// TestPlainWebSocketRequiresTLS: tls.required refuses a session over a
// plain WebSocket, as it refuses plain TCP.
func TestPlainWebSocketRequiresTLS(t *testing.T) {
	cert, _ := selfSigned(t)
	p := startProxy(t, func(w *wire.Config, _ *pool.Config, _ *bridge.Config) {
		w.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		w.RequireTLS = true
	})
	_, err := wsConnect(t, p, "alice")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "28000" {
		t.Fatalf("plain WebSocket with tls.required: %v, want 28000", err)
	}
	code, out := postSQL(t, p, "alice", `{"query":"SELECT 1","params":[]}`, nil)
	if code != 400 || out["code"] != "28000" {
		t.Fatalf("plain HTTP with tls.required: %d %v", code, out)
	}
}
