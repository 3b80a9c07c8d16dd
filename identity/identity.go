// Package identity verifies signed identity tokens (JWTs) and turns them into
// a role and claims for the policies.
//
// A Verifier holds one key configuration: an HS256 secret, an RS256/ES256
// public key (PEM), or a JWKS document whose keys are chosen by the token's
// "kid". The algorithm is fixed by the key, never by the token: a token whose
// header names another algorithm (including "none", or HS256 for an RSA key)
// is refused before any signature check. Time claims are checked with a small
// leeway; "exp" is required. The package knows nothing of sockets or SQL, and
// never puts a token or a part of one in an error.
package identity

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// MaxTokenBytes is the longest token a Verifier looks at.
const MaxTokenBytes = 16 << 10

// DefaultLeeway is the clock skew allowed on exp, nbf and iat when
// Config.Leeway is zero.
const DefaultLeeway = 30 * time.Second

// Config configures a Verifier. Exactly one of HS256Secret, PublicKeyPEM and
// JWKS is required.
type Config struct {
	// Name names the verifier in errors and logs.
	Name string
	// HS256Secret is a shared secret of at least 32 bytes; tokens must be
	// HS256.
	HS256Secret []byte
	// PublicKeyPEM is a PEM public key ("PUBLIC KEY", "RSA PUBLIC KEY") or
	// certificate. An RSA key verifies RS256 tokens, an EC P-256 key ES256,
	// P-384 ES384.
	PublicKeyPEM []byte
	// JWKS is a JSON Web Key Set of RSA and EC public keys. A key's "alg"
	// is used when present, else the algorithm follows from its type as for
	// PublicKeyPEM. A token picks its key with "kid"; a token without kid is
	// accepted only when the set has exactly one key.
	JWKS []byte
	// Algorithm, when set, overrides the algorithm of a PEM key (RS256,
	// RS384, RS512, PS256, PS384, PS512, ES256, ES384).
	Algorithm string
	// Issuer, when set, must equal the token's "iss".
	Issuer string
	// Audience, when set, must be one of the token's "aud" values.
	Audience string
	// Leeway is the clock skew allowed on exp, nbf and iat. Zero means
	// DefaultLeeway; negative means none.
	Leeway time.Duration
	// RoleClaim names the claim that becomes the role. Zero means "role".
	RoleClaim string
	// DefaultRole is the role of a token without RoleClaim; empty refuses
	// such tokens.
	DefaultRole string
	// Roles, when not empty, lists the roles a token may carry; any other
	// is refused.
	Roles []string
	// UserIDClaim, when set, names a claim (e.g. "sub") whose value becomes
	// the "user_id" claim the policies and the audit log use.
	UserIDClaim string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Identity is what a verified token says.
type Identity struct {
	Subject string // "sub", if any
	Role    string
	UserID  string // claims["user_id"] when it is a string
	// Claims are the token's claims for the policies, without the ones that
	// change with every token (exp, nbf, iat, jti), so that two tokens of
	// one user are one principal.
	Claims  map[string]any
	Expires time.Time
}

// Error is a refused token. Reason is safe to show: it never contains the
// token or a claim value.
type Error struct {
	Reason string
}

func (e *Error) Error() string { return "invalid token: " + e.Reason }

func refuse(format string, args ...any) error {
	return &Error{Reason: fmt.Sprintf(format, args...)}
}

// verifyKey is one key a token may be signed with.
type verifyKey struct {
	kid string
	alg jwa.SignatureAlgorithm
	key any // []byte, *rsa.PublicKey or *ecdsa.PublicKey
}

// Verifier verifies tokens for one key configuration. It is safe for
// concurrent use.
type Verifier struct {
	cfg  Config
	keys []verifyKey
}

// New checks cfg and loads its key.
func New(cfg Config) (*Verifier, error) {
	n := 0
	for _, set := range []bool{len(cfg.HS256Secret) > 0, len(cfg.PublicKeyPEM) > 0, len(cfg.JWKS) > 0} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, errors.New("exactly one of an HS256 secret, a public key file and a JWKS file is required")
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultLeeway
	} else if cfg.Leeway < 0 {
		cfg.Leeway = 0
	}
	if cfg.RoleClaim == "" {
		cfg.RoleClaim = "role"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	v := &Verifier{cfg: cfg}
	switch {
	case len(cfg.HS256Secret) > 0:
		if cfg.Algorithm != "" && cfg.Algorithm != "HS256" {
			return nil, errors.New("a secret verifies HS256 tokens only")
		}
		if len(cfg.HS256Secret) < 32 {
			return nil, errors.New("an HS256 secret must be at least 32 bytes")
		}
		v.keys = []verifyKey{{alg: jwa.HS256(), key: slices.Clone(cfg.HS256Secret)}}
	case len(cfg.PublicKeyPEM) > 0:
		pub, err := parsePEM(cfg.PublicKeyPEM)
		if err != nil {
			return nil, err
		}
		alg, err := algorithmFor(pub, cfg.Algorithm)
		if err != nil {
			return nil, err
		}
		v.keys = []verifyKey{{alg: alg, key: pub}}
	default:
		keys, err := parseJWKS(cfg.JWKS)
		if err != nil {
			return nil, err
		}
		v.keys = keys
	}
	return v, nil
}

// parsePEM reads the first public key or certificate of a PEM file.
func parsePEM(data []byte) (any, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("the key file has no PEM public key or certificate")
		}
		switch b.Type {
		case "PUBLIC KEY":
			pub, err := x509.ParsePKIXPublicKey(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("the PEM public key does not parse: %w", err)
			}
			return pub, nil
		case "RSA PUBLIC KEY":
			pub, err := x509.ParsePKCS1PublicKey(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("the PEM RSA public key does not parse: %w", err)
			}
			return pub, nil
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("the PEM certificate does not parse: %w", err)
			}
			return c.PublicKey, nil
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
			return nil, errors.New("the key file holds a private key; give the proxy the public key only")
		}
	}
}

// algorithmFor returns the signature algorithm for a public key: want if
// set and suitable, else the key type's usual one.
func algorithmFor(pub any, want string) (jwa.SignatureAlgorithm, error) {
	var allowed []string
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return jwa.SignatureAlgorithm{}, errors.New("RSA keys shorter than 2048 bits are refused")
		}
		allowed = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			allowed = []string{"ES256"}
		case elliptic.P384():
			allowed = []string{"ES384"}
		default:
			return jwa.SignatureAlgorithm{}, errors.New("only P-256 (ES256) and P-384 (ES384) EC keys are supported")
		}
	default:
		return jwa.SignatureAlgorithm{}, fmt.Errorf("unsupported public key type %T (want RSA or EC)", pub)
	}
	if want == "" {
		want = allowed[0]
	}
	if !slices.Contains(allowed, want) {
		return jwa.SignatureAlgorithm{}, fmt.Errorf("algorithm %s does not fit this key (want one of %s)", want, strings.Join(allowed, ", "))
	}
	alg, _ := jwa.LookupSignatureAlgorithm(want)
	return alg, nil
}

// parseJWKS loads the public keys of a key set.
func parseJWKS(data []byte) ([]verifyKey, error) {
	set, err := jwk.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("the JWKS does not parse: %w", err)
	}
	if set.Len() == 0 {
		return nil, errors.New("the JWKS has no keys")
	}
	var out []verifyKey
	seen := map[string]bool{}
	for i := 0; i < set.Len(); i++ {
		k, _ := set.Key(i)
		kid, _ := k.KeyID()
		if set.Len() > 1 && kid == "" {
			return nil, fmt.Errorf("JWKS key %d has no kid (a set of several keys needs one per key)", i)
		}
		if seen[kid] {
			return nil, fmt.Errorf("JWKS kid %q appears twice", kid)
		}
		seen[kid] = true
		var raw any
		if err := jwk.Export(k, &raw); err != nil {
			return nil, fmt.Errorf("JWKS key %q: %w", kid, err)
		}
		switch r := raw.(type) {
		case *rsa.PrivateKey:
			raw = &r.PublicKey
		case *ecdsa.PrivateKey:
			raw = &r.PublicKey
		case []byte:
			return nil, fmt.Errorf("JWKS key %q is a symmetric key; use hs256_secret for HS256", kid)
		}
		want := ""
		if a, ok := k.Algorithm(); ok {
			want = a.String()
		}
		alg, err := algorithmFor(raw, want)
		if err != nil {
			return nil, fmt.Errorf("JWKS key %q: %w", kid, err)
		}
		out = append(out, verifyKey{kid: kid, alg: alg, key: raw})
	}
	return out, nil
}

// header is the part of a JOSE header the verifier looks at before any
// signature check.
type header struct {
	Alg  string   `json:"alg"`
	Kid  string   `json:"kid"`
	Crit []string `json:"crit"`
}

// Verify checks token's signature and claims and returns its identity. A
// refused token gives an *Error.
func (v *Verifier) Verify(token string) (*Identity, error) {
	token = strings.TrimSpace(token)
	if token == "" {
		return nil, refuse("empty token")
	}
	if len(token) > MaxTokenBytes {
		return nil, refuse("token longer than %d bytes", MaxTokenBytes)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return nil, refuse("not a signed JWT in compact form")
	}
	if parts[2] == "" {
		return nil, refuse("token is not signed")
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, refuse("malformed token header")
	}
	var h header
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, refuse("malformed token header")
	}
	if len(h.Crit) > 0 {
		return nil, refuse("token header has critical extensions the proxy does not support")
	}
	k, err := v.pick(h)
	if err != nil {
		return nil, err
	}
	tok, err := jwt.Parse([]byte(token), jwt.WithKey(k.alg, k.key), jwt.WithValidate(false))
	if err != nil {
		return nil, refuse("signature does not verify")
	}
	return v.check(tok)
}

// pick chooses the key for a token header and checks that the token's
// algorithm is the key's.
func (v *Verifier) pick(h header) (verifyKey, error) {
	if h.Alg == "" || strings.EqualFold(h.Alg, "none") {
		return verifyKey{}, refuse("unsigned token (alg %q)", h.Alg)
	}
	var k *verifyKey
	switch {
	case h.Kid != "":
		for i := range v.keys {
			if v.keys[i].kid == h.Kid || len(v.keys) == 1 && v.keys[i].kid == "" {
				k = &v.keys[i]
				break
			}
		}
		if k == nil {
			return verifyKey{}, refuse("no key with the token's kid")
		}
	case len(v.keys) == 1:
		k = &v.keys[0]
	default:
		return verifyKey{}, refuse("token has no kid, and the key set has several keys")
	}
	if h.Alg != k.alg.String() {
		return verifyKey{}, refuse("algorithm %s is not accepted (the key is for %s)", safeName(h.Alg), k.alg.String())
	}
	return *k, nil
}

// safeName bounds a header value echoed in an error.
func safeName(s string) string {
	if len(s) > 16 {
		s = s[:16] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// registered claims handled by the verifier and not passed on.
var dropped = []string{"exp", "nbf", "iat", "jti"}

// check validates the time, issuer and audience claims and builds the
// identity.
func (v *Verifier) check(tok jwt.Token) (*Identity, error) {
	now := v.cfg.Now()
	lee := v.cfg.Leeway
	exp, ok := tok.Expiration()
	if !ok {
		return nil, refuse("token has no exp claim")
	}
	if !now.Before(exp.Add(lee)) {
		return nil, refuse("token has expired")
	}
	if nbf, ok := tok.NotBefore(); ok && now.Add(lee).Before(nbf) {
		return nil, refuse("token is not valid yet (nbf)")
	}
	if iat, ok := tok.IssuedAt(); ok && now.Add(lee).Before(iat) {
		return nil, refuse("token is issued in the future (iat)")
	}
	iss, _ := tok.Issuer()
	if v.cfg.Issuer != "" && iss != v.cfg.Issuer {
		return nil, refuse("wrong issuer")
	}
	aud, _ := tok.Audience()
	if v.cfg.Audience != "" && !slices.Contains(aud, v.cfg.Audience) {
		return nil, refuse("wrong audience")
	}
	claims := map[string]any{}
	for _, name := range tok.Keys() {
		if slices.Contains(dropped, name) {
			continue
		}
		var val any
		if err := tok.Get(name, &val); err != nil {
			return nil, refuse("claim %s does not decode", safeName(name))
		}
		claims[name] = plain(val)
	}
	if len(aud) > 0 {
		a := make([]any, len(aud))
		for i, s := range aud {
			a[i] = s
		}
		claims["aud"] = a
	}
	id := &Identity{Claims: claims, Expires: exp}
	id.Subject, _ = tok.Subject()
	role, present := claims[v.cfg.RoleClaim]
	switch r := role.(type) {
	case string:
		id.Role = r
	case nil:
		if present {
			return nil, refuse("the %s claim is null", v.cfg.RoleClaim)
		}
		if v.cfg.DefaultRole == "" {
			return nil, refuse("token has no %s claim", v.cfg.RoleClaim)
		}
		id.Role = v.cfg.DefaultRole
	default:
		return nil, refuse("the %s claim is not a string", v.cfg.RoleClaim)
	}
	if id.Role == "" {
		return nil, refuse("the %s claim is empty", v.cfg.RoleClaim)
	}
	if len(v.cfg.Roles) > 0 && !slices.Contains(v.cfg.Roles, id.Role) {
		return nil, refuse("role is not one this verifier grants")
	}
	if v.cfg.UserIDClaim != "" {
		u, ok := claims[v.cfg.UserIDClaim].(string)
		if !ok || u == "" {
			return nil, refuse("token has no string %s claim for the user id", v.cfg.UserIDClaim)
		}
		claims["user_id"] = u
	}
	id.UserID, _ = claims["user_id"].(string)
	return id, nil
}

// plain converts a decoded claim value to JSON's plain Go types (maps,
// slices, strings, float64, bool, nil), so that policies get what they
// would get from the JSON itself.
func plain(v any) any {
	switch v.(type) {
	case string, float64, bool, nil:
		return v
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var out any
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&out); err != nil {
		return nil
	}
	return out
}
