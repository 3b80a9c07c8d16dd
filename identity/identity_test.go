package identity_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/identity"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

var (
	secret = []byte("0123456789abcdef0123456789abcdef-test-secret")
	now    = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	clock  = func() time.Time { return now }
)

var keysOnce = sync.OnceValues(func() (*rsa.PrivateKey, *ecdsa.PrivateKey) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return rk, ek
})

func pemOf(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// claims are the default claims of a good token.
func claims() map[string]any {
	return map[string]any{
		"sub": "u_alice", "role": "user", "iss": "https://auth.example", "aud": "dbalproxy",
		"exp": now.Add(time.Hour).Unix(), "iat": now.Add(-time.Minute).Unix(), "jti": "x1",
		"tenant": "t1", "groups": []any{"a", "b"},
	}
}

// sign signs c with alg and key, setting kid when given.
func sign(t *testing.T, c map[string]any, alg jwa.SignatureAlgorithm, key any, kid string) string {
	t.Helper()
	tok := jwt.New()
	for k, v := range c {
		if k == "exp" || k == "iat" || k == "nbf" {
			v = time.Unix(v.(int64), 0)
		}
		if err := tok.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if kid != "" {
		jk, err := jwk.Import(key)
		if err != nil {
			t.Fatal(err)
		}
		if err := jk.Set(jwk.KeyIDKey, kid); err != nil {
			t.Fatal(err)
		}
		key = jk
	}
	b, err := jwt.Sign(tok, jwt.WithKey(alg, key))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// raw builds a compact token from a header and claims, signed with HMAC
// secret when key is not nil, else with an empty signature.
func raw(t *testing.T, hdr map[string]any, c map[string]any, hmacKey []byte, sig string) string {
	t.Helper()
	hb, _ := json.Marshal(hdr)
	cb, _ := json.Marshal(c)
	s := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(cb)
	if hmacKey != nil {
		m := hmac.New(sha256.New, hmacKey)
		m.Write([]byte(s))
		sig = base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	return s + "." + sig
}

func hsVerifier(t *testing.T, mod func(*identity.Config)) *identity.Verifier {
	t.Helper()
	cfg := identity.Config{HS256Secret: secret, Issuer: "https://auth.example", Audience: "dbalproxy", UserIDClaim: "sub", Now: clock}
	if mod != nil {
		mod(&cfg)
	}
	v, err := identity.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// wantRefused fails unless err is an *identity.Error whose reason contains
// want and which does not echo the token.
func wantRefused(t *testing.T, err error, token, want string) {
	t.Helper()
	var ie *identity.Error
	if !errors.As(err, &ie) {
		t.Fatalf("got %v, want a refusal %q", err, want)
	}
	if !strings.Contains(ie.Reason, want) {
		t.Fatalf("reason %q, want it to contain %q", ie.Reason, want)
	}
	for _, part := range strings.Split(token, ".") {
		if len(part) > 8 && strings.Contains(err.Error(), part) {
			t.Fatalf("the error %q repeats part of the token", err)
		}
	}
}

func TestHS256Good(t *testing.T) {
	v := hsVerifier(t, nil)
	id, err := v.Verify(sign(t, claims(), jwa.HS256(), secret, ""))
	if err != nil {
		t.Fatal(err)
	}
	if id.Role != "user" || id.Subject != "u_alice" || id.UserID != "u_alice" {
		t.Fatalf("identity %+v", id)
	}
	if id.Claims["user_id"] != "u_alice" || id.Claims["tenant"] != "t1" {
		t.Fatalf("claims %v", id.Claims)
	}
	if g, ok := id.Claims["groups"].([]any); !ok || len(g) != 2 || g[0] != "a" {
		t.Fatalf("groups claim %#v", id.Claims["groups"])
	}
	for _, k := range []string{"exp", "iat", "nbf", "jti"} {
		if _, ok := id.Claims[k]; ok {
			t.Errorf("claim %s passed on; it varies per token and would split the plan cache", k)
		}
	}
	if !id.Expires.Equal(now.Add(time.Hour)) {
		t.Errorf("expires %v", id.Expires)
	}
}

func TestRefusals(t *testing.T) {
	v := hsVerifier(t, nil)
	with := func(mod func(map[string]any)) map[string]any {
		c := claims()
		mod(c)
		return c
	}
	otherSecret := []byte("another-secret-another-secret-another!!")
	cases := []struct {
		name, token, want string
	}{
		{"expired", sign(t, with(func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() }), jwa.HS256(), secret, ""), "expired"},
		{"no exp", sign(t, with(func(c map[string]any) { delete(c, "exp") }), jwa.HS256(), secret, ""), "no exp"},
		{"nbf in the future", sign(t, with(func(c map[string]any) { c["nbf"] = now.Add(time.Hour).Unix() }), jwa.HS256(), secret, ""), "not valid yet"},
		{"iat in the future", sign(t, with(func(c map[string]any) { c["iat"] = now.Add(time.Hour).Unix() }), jwa.HS256(), secret, ""), "future"},
		{"wrong issuer", sign(t, with(func(c map[string]any) { c["iss"] = "https://evil.example" }), jwa.HS256(), secret, ""), "wrong issuer"},
		{"wrong audience", sign(t, with(func(c map[string]any) { c["aud"] = "other" }), jwa.HS256(), secret, ""), "wrong audience"},
		{"no role", sign(t, with(func(c map[string]any) { delete(c, "role") }), jwa.HS256(), secret, ""), "no role claim"},
		{"role not a string", sign(t, with(func(c map[string]any) { c["role"] = []any{"admin"} }), jwa.HS256(), secret, ""), "not a string"},
		{"no sub for the user id", sign(t, with(func(c map[string]any) { delete(c, "sub") }), jwa.HS256(), secret, ""), "user id"},
		{"wrong key", sign(t, claims(), jwa.HS256(), otherSecret, ""), "signature"},
		{"forged claims", forge(t, sign(t, claims(), jwa.HS256(), secret, "")), "signature"},
		{"alg none", raw(t, map[string]any{"alg": "none", "typ": "JWT"}, claims(), nil, ""), "not signed"},
		{"alg none with a signature", raw(t, map[string]any{"alg": "none"}, claims(), nil, "AAAA"), "unsigned"},
		{"alg NONE", raw(t, map[string]any{"alg": "NONE"}, claims(), nil, "AAAA"), "unsigned"},
		{"no alg", raw(t, map[string]any{"typ": "JWT"}, claims(), secret, ""), "unsigned"},
		{"HS384", raw(t, map[string]any{"alg": "HS384"}, claims(), secret, ""), "not accepted"},
		{"crit", raw(t, map[string]any{"alg": "HS256", "crit": []string{"exp"}}, claims(), secret, ""), "critical"},
		{"two parts", "abc.def", "compact"},
		{"empty", "", "empty"},
		{"garbage header", "!!!.e30.AAAA", "header"},
		{"too long", strings.Repeat("a", identity.MaxTokenBytes+1), "longer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := v.Verify(c.token)
			wantRefused(t, err, c.token, c.want)
		})
	}
	// The leeway: a token expired 10s ago is still good with the default
	// 30s, and refused without leeway.
	recent := sign(t, with(func(c map[string]any) { c["exp"] = now.Add(-10 * time.Second).Unix() }), jwa.HS256(), secret, "")
	if _, err := v.Verify(recent); err != nil {
		t.Errorf("within the leeway: %v", err)
	}
	strict := hsVerifier(t, func(c *identity.Config) { c.Leeway = -1 })
	_, err := strict.Verify(recent)
	wantRefused(t, err, recent, "expired")
}

// forge changes the role in a signed token's payload, keeping the signature.
func forge(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c map[string]any
	_ = json.Unmarshal(b, &c)
	c["role"] = "supergod"
	b, _ = json.Marshal(c)
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
}

func TestRolesAndDefaults(t *testing.T) {
	v := hsVerifier(t, func(c *identity.Config) { c.Roles = []string{"user", "admin"} })
	god := claims()
	god["role"] = "supergod"
	tok := sign(t, god, jwa.HS256(), secret, "")
	_, err := v.Verify(tok)
	wantRefused(t, err, tok, "role is not one")

	v = hsVerifier(t, func(c *identity.Config) {
		c.DefaultRole = "user"
		c.RoleClaim = "https://example/role"
		c.UserIDClaim = ""
	})
	c := claims()
	delete(c, "role")
	id, err := v.Verify(sign(t, c, jwa.HS256(), secret, ""))
	if err != nil || id.Role != "user" || id.UserID != "" {
		t.Fatalf("default role: %+v %v", id, err)
	}
	c["https://example/role"] = "admin"
	id, err = v.Verify(sign(t, c, jwa.HS256(), secret, ""))
	if err != nil || id.Role != "admin" {
		t.Fatalf("namespaced role claim: %+v %v", id, err)
	}
}

func TestRS256AndES256(t *testing.T) {
	rk, ek := keysOnce()
	rv, err := identity.New(identity.Config{PublicKeyPEM: pemOf(t, &rk.PublicKey), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := identity.New(identity.Config{PublicKeyPEM: pemOf(t, &ek.PublicKey), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if id, err := rv.Verify(sign(t, claims(), jwa.RS256(), rk, "")); err != nil || id.Role != "user" {
		t.Fatalf("RS256: %+v %v", id, err)
	}
	if id, err := ev.Verify(sign(t, claims(), jwa.ES256(), ek, "")); err != nil || id.Role != "user" {
		t.Fatalf("ES256: %+v %v", id, err)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	tok := sign(t, claims(), jwa.RS256(), other, "")
	_, err = rv.Verify(tok)
	wantRefused(t, err, tok, "signature")
	// Algorithm confusion: an HS256 token whose secret is the RSA public
	// key's PEM must not verify against that public key.
	conf := raw(t, map[string]any{"alg": "HS256"}, claims(), pemOf(t, &rk.PublicKey), "")
	_, err = rv.Verify(conf)
	wantRefused(t, err, conf, "not accepted")
	// An ES256 token for an RSA key, a PS256 token for an RS256 key.
	tok = sign(t, claims(), jwa.ES256(), ek, "")
	_, err = rv.Verify(tok)
	wantRefused(t, err, tok, "not accepted")
	tok = sign(t, claims(), jwa.PS256(), rk, "")
	_, err = rv.Verify(tok)
	wantRefused(t, err, tok, "not accepted")
	// Bad key configurations.
	for name, cfg := range map[string]identity.Config{
		"no key":      {},
		"two keys":    {HS256Secret: secret, PublicKeyPEM: pemOf(t, &rk.PublicKey)},
		"short":       {HS256Secret: []byte("short")},
		"not pem":     {PublicKeyPEM: []byte("hello")},
		"wrong alg":   {PublicKeyPEM: pemOf(t, &ek.PublicKey), Algorithm: "RS256"},
		"private key": {PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})},
	} {
		if _, err := identity.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestJWKS(t *testing.T) {
	rk, ek := keysOnce()
	set := jwk.NewSet()
	for kid, pub := range map[string]any{"r1": &rk.PublicKey, "e1": &ek.PublicKey} {
		k, err := jwk.Import(pub)
		if err != nil {
			t.Fatal(err)
		}
		_ = k.Set(jwk.KeyIDKey, kid)
		if err := set.AddKey(k); err != nil {
			t.Fatal(err)
		}
	}
	data, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	v, err := identity.New(identity.Config{JWKS: data, Audience: "dbalproxy", Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if id, err := v.Verify(sign(t, claims(), jwa.RS256(), rk, "r1")); err != nil || id.Role != "user" {
		t.Fatalf("kid r1: %+v %v", id, err)
	}
	if id, err := v.Verify(sign(t, claims(), jwa.ES256(), ek, "e1")); err != nil || id.Role != "user" {
		t.Fatalf("kid e1: %+v %v", id, err)
	}
	for name, c := range map[string]struct{ tok, want string }{
		"unknown kid":       {sign(t, claims(), jwa.RS256(), rk, "zz"), "no key"},
		"no kid":            {sign(t, claims(), jwa.RS256(), rk, ""), "no kid"},
		"kid of other key":  {sign(t, claims(), jwa.RS256(), rk, "e1"), "not accepted"},
		"right kid, forged": {forge(t, sign(t, claims(), jwa.RS256(), rk, "r1")), "signature"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(c.tok)
			wantRefused(t, err, c.tok, c.want)
		})
	}
	if _, err := identity.New(identity.Config{JWKS: []byte(`{"keys":[]}`)}); err == nil {
		t.Error("an empty JWKS was accepted")
	}
}
