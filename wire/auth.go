package wire

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/dbalproxy/dbalproxy/identity"
	"github.com/xdg-go/scram"
)

// Login is one identity clients may log in to the proxy as.
type Login struct {
	Name   string
	Role   string
	Claims map[string]any
	// SCRAM holds the SCRAM-SHA-256 verifier (salt, iterations, stored and server
	// keys); the plain password is not kept.
	SCRAM scram.StoredCredentials
	// Token, when set, makes this a token login: the client sends a signed
	// token as its password (cleartext password authentication, so only over
	// a transport Config.TokenTransport allows), and the session's role and
	// claims are the token's. Role, Claims and SCRAM are then unused.
	Token TokenVerifier
	// EndUserTokens, when set, lets this login switch the end user for one
	// transaction with SET LOCAL dbal.token = '<token>' or
	// set_config('dbal.token', <token>, true), with tokens it verifies.
	EndUserTokens TokenVerifier
	// Backends, when set, is this login's own pool: its sessions run as
	// the backend role of that pool (per-login backend credentials), so
	// PostgreSQL's own grants and row-level security apply as well as the
	// proxy's policies. Nil uses the server's Config.Backends.
	Backends Backends
}

// TokenVerifier verifies a signed identity token; *identity.Verifier
// implements it. A refused token gives an *identity.Error, whose reason is
// safe to show.
type TokenVerifier interface {
	Verify(token string) (*identity.Identity, error)
}

// LoginSource finds logins by name. The server calls it once per connection
// attempt, so an implementation may swap its logins at any time.
type LoginSource interface {
	Login(name string) (*Login, bool)
}

// Logins is a fixed LoginSource.
type Logins map[string]*Login

// Login implements LoginSource.
func (l Logins) Login(name string) (*Login, bool) {
	x, ok := l[name]
	return x, ok
}

// SCRAMIterations is the iteration count used for verifiers made from plain
// passwords, PostgreSQL's default.
const SCRAMIterations = 4096

// NewSCRAMCredentials derives a SCRAM-SHA-256 verifier from a plain password
// with a random salt. The password is SASLprep-normalized as PostgreSQL does.
func NewSCRAMCredentials(password string) (scram.StoredCredentials, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return scram.StoredCredentials{}, err
	}
	client, err := scram.SHA256.NewClient("", password, "")
	if err != nil {
		// SASLprep refuses some inputs; PostgreSQL then uses the raw bytes.
		client, err = scram.SHA256.NewClientUnprepped("", password, "")
		if err != nil {
			return scram.StoredCredentials{}, err
		}
	}
	return client.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(salt), Iters: SCRAMIterations})
}

// ParseSCRAMVerifier reads a verifier in PostgreSQL's pg_authid format:
// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, base64 parts.
func ParseSCRAMVerifier(v string) (scram.StoredCredentials, error) {
	var sc scram.StoredCredentials
	rest, ok := strings.CutPrefix(v, "SCRAM-SHA-256$")
	if !ok {
		return sc, errors.New("a SCRAM verifier starts with SCRAM-SHA-256$")
	}
	kf, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return sc, errors.New("a SCRAM verifier has the form SCRAM-SHA-256$iterations:salt$StoredKey:ServerKey")
	}
	iterS, saltS, ok1 := strings.Cut(kf, ":")
	storedS, serverS, ok2 := strings.Cut(keys, ":")
	if !ok1 || !ok2 {
		return sc, errors.New("a SCRAM verifier has the form SCRAM-SHA-256$iterations:salt$StoredKey:ServerKey")
	}
	iters, err := strconv.Atoi(iterS)
	if err != nil || iters < 1 {
		return sc, errors.New("the SCRAM verifier's iteration count is not a positive number")
	}
	salt, err1 := base64.StdEncoding.DecodeString(saltS)
	stored, err2 := base64.StdEncoding.DecodeString(storedS)
	server, err3 := base64.StdEncoding.DecodeString(serverS)
	if err1 != nil || err2 != nil || err3 != nil || len(stored) != sha256.Size || len(server) != sha256.Size {
		return sc, errors.New("the SCRAM verifier's salt or keys are not valid base64 of the right length")
	}
	sc.Salt, sc.Iters, sc.StoredKey, sc.ServerKey = string(salt), iters, stored, server
	return sc, nil
}

// FormatSCRAMVerifier writes sc in pg_authid's format (the inverse of
// ParseSCRAMVerifier), for `dbalproxy` users who want to store verifiers
// instead of passwords.
func FormatSCRAMVerifier(sc scram.StoredCredentials) string {
	b := base64.StdEncoding
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", sc.Iters, b.EncodeToString([]byte(sc.Salt)),
		b.EncodeToString(sc.StoredKey), b.EncodeToString(sc.ServerKey))
}

// mockCredentials returns stable but unusable credentials for a login that does
// not exist, so that the SCRAM exchange looks the same as for one that does
// and a failed proof is all a prober learns (as PostgreSQL does).
func mockCredentials(secret []byte, user string) scram.StoredCredentials {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("salt:" + user))
	salt := m.Sum(nil)[:16]
	m.Reset()
	m.Write([]byte("key:" + user))
	key := m.Sum(nil)
	return scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(salt), Iters: SCRAMIterations},
		StoredKey:  key,
		ServerKey:  key,
	}
}
