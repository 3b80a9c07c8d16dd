package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const goodConfig = `
listen: 127.0.0.1:7000
backend:
  url: postgres://u:${TEST_BACKEND_PW}@127.0.0.1:5432/app
pool:
  max_conns: 7
  acquire_timeout: 250ms
logins:
  - name: alice
    password: ${TEST_ALICE_PW}
    role: user
    claims: {user_id: u_alice}
`

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "dbalproxy.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func load(t *testing.T, path string, args ...string) (*Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg := defaultConfig()
	ov := configFlags(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	err := loadConfig(path, &cfg, ov)
	return &cfg, err
}

func TestConfigFileEnvAndFlags(t *testing.T) {
	t.Setenv("TEST_BACKEND_PW", "s3cret")
	t.Setenv("TEST_ALICE_PW", "alicepw")
	t.Setenv("DBALPROXY_POOL_MAX_CONNS", "9")
	t.Setenv("DBALPROXY_LISTEN", "127.0.0.1:7001")
	cfg, err := load(t, writeConfig(t, goodConfig), "--listen", "127.0.0.1:7002", "--backend.databases", "a, b")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Backend.URL != "postgres://u:s3cret@127.0.0.1:5432/app" {
		t.Errorf("backend.url = %q: ${VAR} not expanded", cfg.Backend.URL)
	}
	if cfg.Logins[0].Password != "alicepw" || cfg.Logins[0].Claims["user_id"] != "u_alice" {
		t.Errorf("login = %+v", cfg.Logins[0])
	}
	if cfg.Pool.MaxConns != 9 {
		t.Errorf("pool.max_conns = %d: the environment should override the file", cfg.Pool.MaxConns)
	}
	if cfg.Listen != "127.0.0.1:7002" {
		t.Errorf("listen = %q: a flag should override the environment", cfg.Listen)
	}
	if cfg.Pool.AcquireTimeout.D() != 250*time.Millisecond {
		t.Errorf("acquire_timeout = %v", cfg.Pool.AcquireTimeout.D())
	}
	if got := strings.Join(cfg.Backend.Databases, "|"); got != "a|b" {
		t.Errorf("backend.databases = %q", got)
	}
	if cfg.Policy.Mode != "strict" || cfg.Audit.Output != "stdout" {
		t.Errorf("defaults lost: policy.mode %q audit.output %q", cfg.Policy.Mode, cfg.Audit.Output)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	t.Setenv("TEST_BACKEND_PW", "x")
	t.Setenv("TEST_ALICE_PW", "x")
	cases := []struct {
		name, body string
		args       []string
		want       string
	}{
		{"unknown key", goodConfig + "\npoool: {}\n", nil, "config: poool: unknown key"},
		{"unknown nested key", strings.Replace(goodConfig, "max_conns: 7", "max_con: 7", 1), nil, "config: pool.max_con: unknown key"},
		{"bad duration", strings.Replace(goodConfig, "250ms", "soon", 1), nil, `"soon" is not a duration`},
		{"bad int flag", goodConfig, []string{"--pool.max_conns", "many"}, `config: pool.max_conns: "many" is not a whole number`},
		{"zero conns", strings.Replace(goodConfig, "max_conns: 7", "max_conns: 0", 1), nil, "config: pool.max_conns: must be at least 1"},
		{"missing env", strings.Replace(goodConfig, "TEST_ALICE_PW", "TEST_NOT_SET_ANYWHERE", 1), nil, "config: logins[0].password: environment variable TEST_NOT_SET_ANYWHERE is not set"},
		{"no backend", strings.Replace(goodConfig, "url: postgres://u:${TEST_BACKEND_PW}@127.0.0.1:5432/app", "url: ''", 1), nil, "config: backend.url: is required"},
		{"bad mode", goodConfig + "policy: {mode: lax}\n", nil, `config: policy.mode: "lax"`},
		{"login without secret", strings.Replace(goodConfig, "password: ${TEST_ALICE_PW}", "", 1), nil, "config: logins[0]: needs password or scram_verifier"},
		{"not yaml", "listen: [", nil, "config: not valid YAML"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, writeConfig(t, tc.body), tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

func TestBuildLoginsVerifier(t *testing.T) {
	cfg := defaultConfig()
	cfg.Logins = []LoginConfig{{Name: "a", Role: "user", Password: "pw"}}
	logins, err := buildLogins(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	if logins["a"].SCRAM.Iters != 4096 || len(logins["a"].SCRAM.StoredKey) != 32 {
		t.Fatalf("verifier not derived: %+v", logins["a"].SCRAM)
	}
	cfg.Logins = []LoginConfig{{Name: "b", Role: "user", SCRAMVerifier: "SCRAM-SHA-256$4096:bad"}}
	if _, err := buildLogins(&cfg); err == nil || !strings.Contains(err.Error(), "logins[0].scram_verifier") {
		t.Fatalf("bad verifier: %v", err)
	}
}

const jwtConfig = `
auth:
  token_transport: tls_or_loopback
jwt:
  - name: app
    hs256_secret: ${TEST_JWT_SECRET}
    issuer: https://auth.test
    audience: dbalproxy
    leeway: 5s
    roles: [user, admin]
    user_id_claim: sub
  - name: keys
    public_key_file: ${TEST_KEY_FILE}
` + goodConfig

func TestConfigJWT(t *testing.T) {
	t.Setenv("TEST_BACKEND_PW", "x")
	t.Setenv("TEST_ALICE_PW", "x")
	t.Setenv("TEST_JWT_SECRET", "0123456789abcdef0123456789abcdef")
	pemFile := filepath.Join(t.TempDir(), "key.pem")
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_KEY_FILE", pemFile)
	body := jwtConfig + `  - name: app_user
    jwt: app
  - name: api
    password: apipw
    role: admin
    end_user_jwt: keys
`
	cfg, err := load(t, writeConfig(t, body))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Auth.TokenTransport != "tls_or_loopback" || len(cfg.JWT) != 2 || cfg.JWT[0].Leeway.D() != 5*time.Second {
		t.Fatalf("jwt config not read: %+v %+v", cfg.Auth, cfg.JWT)
	}
	logins, err := buildLogins(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if logins["app_user"].Token == nil || logins["app_user"].EndUserTokens != nil {
		t.Errorf("app_user: %+v", logins["app_user"])
	}
	if logins["api"].EndUserTokens == nil || logins["api"].Token != nil || logins["alice"].Token != nil || logins["alice"].EndUserTokens != nil {
		t.Errorf("api/alice verifiers wrong: %+v %+v", logins["api"], logins["alice"])
	}

	for name, c := range map[string]struct{ body, want string }{
		"unknown verifier":    {jwtConfig + "  - {name: x, jwt: nope}\n", "logins[1].jwt: no jwt verifier named \"nope\""},
		"unknown end user":    {jwtConfig + "  - {name: x, password: p, role: user, end_user_jwt: nope}\n", "logins[1].end_user_jwt: no jwt verifier"},
		"token login + role":  {jwtConfig + "  - {name: x, jwt: app, role: admin}\n", "logins[1]: a token login"},
		"two keys":            {strings.Replace(jwtConfig, "    issuer:", "    jwks_file: x.json\n    issuer:", 1), "jwt[0]: needs exactly one"},
		"short secret":        {strings.Replace(jwtConfig, "${TEST_JWT_SECRET}", "short", 1), "jwt[0].hs256_secret: must be at least 32 bytes"},
		"bad token transport": {strings.Replace(jwtConfig, "tls_or_loopback", "sometimes", 1), "auth.token_transport"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := load(t, writeConfig(t, c.body))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
	cfg.JWT[1].PublicKeyFile = filepath.Join(t.TempDir(), "missing.pem")
	if _, err := buildLogins(cfg); err == nil || !strings.Contains(err.Error(), "jwt[1].public_key_file") {
		t.Fatalf("missing key file: %v", err)
	}
}

func TestConfigPoolMode(t *testing.T) {
	t.Setenv("TEST_BACKEND_PW", "s3cret")
	t.Setenv("TEST_ALICE_PW", "alicepw")
	cfg, err := load(t, writeConfig(t, goodConfig), "--pool.mode", "transaction")
	if err != nil || cfg.Pool.Mode != "transaction" {
		t.Fatalf("pool.mode transaction: %v %q", err, cfg.Pool.Mode)
	}
	if _, err := load(t, writeConfig(t, goodConfig), "--pool.mode", "statement"); err == nil || !strings.Contains(err.Error(), "pool.mode") {
		t.Fatalf("pool.mode statement: %v", err)
	}
}

func TestPeeringConfig(t *testing.T) {
	t.Setenv("TEST_BACKEND_PW", "x")
	t.Setenv("TEST_ALICE_PW", "x")
	cfg, err := load(t, writeConfig(t, goodConfig+"peering:\n  id: 2\n  peers: {1: '10.0.0.1:6432', 2: '10.0.0.2:6432'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Peering.ID != 2 || cfg.Peering.Peers[1] != "10.0.0.1:6432" {
		t.Fatalf("peering = %+v", cfg.Peering)
	}
	_, err = load(t, writeConfig(t, goodConfig+"peering:\n  id: 200\n  peers: {0: 'x', 3: 'nohost'}\n"))
	for _, want := range []string{"peering.id: must be 0", "peering.peers.0: a peer id is 1 to 127", `peering.peers.3: "nohost" is not host:port`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want %q", err, want)
		}
	}
}

// A flag or environment override of a key lifts the file value's ${ENV}
// requirement for that key (and only for that key).
func TestOverrideLiftsEnvReference(t *testing.T) {
	t.Setenv("TEST_ALICE_PW", "alicepw")
	os.Unsetenv("TEST_BACKEND_PW")
	path := writeConfig(t, goodConfig)
	_, err := load(t, path)
	if err == nil || !strings.Contains(err.Error(), "backend.url: environment variable TEST_BACKEND_PW is not set") {
		t.Fatalf("without an override: %v", err)
	}
	cfg, err := load(t, path, "--backend.url", "postgres://v:pw@db:5432/app")
	if err != nil || cfg.Backend.URL != "postgres://v:pw@db:5432/app" {
		t.Fatalf("with --backend.url: %v, url %q", err, cfg.Backend.URL)
	}
	t.Setenv("DBALPROXY_BACKEND_URL", "postgres://w:pw@db:5432/app")
	cfg, err = load(t, path)
	if err != nil || cfg.Backend.URL != "postgres://w:pw@db:5432/app" {
		t.Fatalf("with DBALPROXY_BACKEND_URL: %v, url %q", err, cfg.Backend.URL)
	}
	// Other keys' references still need their variables.
	os.Unsetenv("TEST_ALICE_PW")
	if _, err := load(t, path); err == nil || !strings.Contains(err.Error(), "logins[0].password: environment variable TEST_ALICE_PW is not set") {
		t.Fatalf("a login's password without its variable: %v", err)
	}
	// A list key's elements too.
	path = writeConfig(t, strings.Replace(goodConfig, "pool:", "  databases: [a, '${TEST_NO_SUCH_DB}']\npool:", 1))
	t.Setenv("TEST_ALICE_PW", "alicepw")
	if _, err := load(t, path, "--backend.databases", "x,y"); err != nil {
		t.Fatalf("--backend.databases over a list with a reference: %v", err)
	}
}

// serve without a configuration file says what it needs.
func TestServeNeedsConfig(t *testing.T) {
	t.Setenv("DBALPROXY_CONFIG", "")
	t.Setenv("DBALPROXY_BACKEND_URL", "postgres://u@127.0.0.1:1/app")
	code, _, errs := runCLI(t, "serve")
	if code != 2 || !strings.Contains(errs, "dbalproxy: serve needs a configuration file: --config FILE or DBALPROXY_CONFIG=FILE") || !strings.Contains(errs, "dbalproxy demo") {
		t.Fatalf("serve without a file: code %d, %q", code, errs)
	}
}
