package policy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/rs/zerolog"
)

// bundleServer serves one bundle at /bundles/dbal.tar.gz as a bundle
// service does: with an ETag, and 304 for a matching If-None-Match.
type bundleServer struct {
	*httptest.Server
	mu          sync.Mutex
	body        []byte
	etag        string
	requests    atomic.Int64
	notModified atomic.Int64
	token       string // the bearer token required, if set
}

func newBundleServer(t *testing.T) *bundleServer {
	s := &bundleServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if r.URL.Path != "/bundles/dbal.tar.gz" {
			http.NotFound(w, r)
			return
		}
		s.mu.Lock()
		body, etag, token := s.body, s.etag, s.token
		s.mu.Unlock()
		if token != "" && r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if r.Header.Get("If-None-Match") == etag {
			s.notModified.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		w.Header().Set("Content-Type", "application/gzip")
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *bundleServer) url() string { return s.URL + "/bundles/dbal.tar.gz" }

// serve makes b the bundle served from now on.
func (s *bundleServer) serve(t *testing.T, b bundle.Bundle) {
	t.Helper()
	var buf bytes.Buffer
	if err := bundle.NewWriter(&buf).Write(b); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	s.mu.Lock()
	s.body, s.etag = buf.Bytes(), `"`+hex.EncodeToString(sum[:8])+`"`
	s.mu.Unlock()
}

// testBundle is a bundle whose decision allows with reason, at revision.
func testBundle(revision, reason string) bundle.Bundle {
	rego := "package dbal\n\ndecision := {\"allow\": true, \"reason\": data.reasons.r}\n"
	test := "package dbal\n\ntest_allows if decision.allow with input as {}\n"
	return bundle.Bundle{
		Manifest: bundle.Manifest{Revision: revision},
		Data:     map[string]any{"reasons": map[string]any{"r": reason}},
		Modules: []bundle.ModuleFile{
			{URL: "/dbal.rego", Path: "/dbal.rego", Raw: []byte(rego)},
			{URL: "/dbal_test.rego", Path: "/dbal_test.rego", Raw: []byte(test)},
		},
	}
}

// signed signs b with the PEM private key.
func signed(t *testing.T, b bundle.Bundle, privPEM string) bundle.Bundle {
	t.Helper()
	if err := b.GenerateSignature(bundle.NewSigningConfig(privPEM, "RS256", ""), "default", false); err != nil {
		t.Fatal(err)
	}
	return b
}

func rsaKeys(t *testing.T) (priv, pub string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func reasonOf(t *testing.T, e *Engine) string {
	t.Helper()
	d, err := e.Decide(context.Background(), userInput("user", "packages", "select"))
	if err != nil {
		t.Fatal(err)
	}
	return d.Reason
}

// waitUntil polls cond until it holds or d passes.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// Two engines polling one bundle service converge on a new revision within
// the polling interval, and ask with If-None-Match in between.
func TestBundleConvergence(t *testing.T) {
	srv := newBundleServer(t)
	srv.token = "s3cret"
	srv.serve(t, testBundle("r1", "first"))
	const minDelay, maxDelay = 300 * time.Millisecond, 600 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var engines []*Engine
	var reloads atomic.Int64
	for range 2 {
		e, err := New(Options{
			Bundle:   &BundleOptions{URL: srv.url(), MinDelay: minDelay, MaxDelay: maxDelay, Token: "s3cret"},
			RunTests: true,
			Logger:   zerolog.New(zerolog.NewTestWriter(t)),
			OnReload: func(err error) {
				if err == nil {
					reloads.Add(1)
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if e.Revision() != "r1" || !strings.HasPrefix(e.Version(), "r1@") || reasonOf(t, e) != "first" {
			t.Fatalf("first load: revision %q, version %q", e.Revision(), e.Version())
		}
		done := make(chan struct{})
		go func() { defer close(done); _ = e.Watch(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		engines = append(engines, e)
	}
	// Unchanged: polls are answered 304 and nothing is reloaded.
	waitUntil(t, 5*maxDelay, "a 304", func() bool { return srv.notModified.Load() >= 2 })
	v1 := engines[0].Version()

	srv.serve(t, testBundle("r2", "second"))
	took := waitUntil(t, maxDelay+500*time.Millisecond, "both engines on r2", func() bool {
		return engines[0].Revision() == "r2" && engines[1].Revision() == "r2"
	})
	t.Logf("converged in %s", took)
	for _, e := range engines {
		if reasonOf(t, e) != "second" || e.Version() == v1 {
			t.Fatalf("after r2: reason %q, version %q", reasonOf(t, e), e.Version())
		}
		st, ok := e.BundleStatus()
		if !ok || st.Revision != "r2" || st.LastError != nil || st.ETag == "" {
			t.Fatalf("status %+v", st)
		}
	}
	if n := reloads.Load(); n != 2 {
		t.Errorf("%d reloads reported, want 2", n)
	}
}

// With a public key, only bundles signed with its private key are
// accepted: a bundle signed with another key, or unsigned, is refused and
// the running revision keeps deciding.
func TestBundleSignature(t *testing.T) {
	priv, pub := rsaKeys(t)
	otherPriv, _ := rsaKeys(t)
	srv := newBundleServer(t)
	srv.serve(t, signed(t, testBundle("r1", "first"), priv))
	e, err := New(Options{
		Bundle: &BundleOptions{URL: srv.url(), MinDelay: time.Hour, MaxDelay: time.Hour, PublicKey: pub},
		Logger: zerolog.New(zerolog.NewTestWriter(t)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if e.Revision() != "r1" || reasonOf(t, e) != "first" {
		t.Fatalf("signed r1 not loaded: %q", e.Revision())
	}
	for name, b := range map[string]bundle.Bundle{
		"signed with another key": signed(t, testBundle("r2", "forged"), otherPriv),
		"unsigned":                testBundle("r3", "unsigned"),
	} {
		srv.serve(t, b)
		err := e.Reload()
		if err == nil || e.Revision() != "r1" || reasonOf(t, e) != "first" {
			t.Fatalf("%s: Reload %v; revision %q", name, err, e.Revision())
		}
		st, _ := e.BundleStatus()
		if st.LastError == nil || st.Revision != "r1" {
			t.Fatalf("%s: status %+v", name, st)
		}
		t.Logf("%s: %v", name, err)
	}
	srv.serve(t, signed(t, testBundle("r4", "fourth"), priv))
	if err := e.Reload(); err != nil || e.Revision() != "r4" || reasonOf(t, e) != "fourth" {
		t.Fatalf("signed r4: %v, revision %q", err, e.Revision())
	}

	// A proxy cannot start on a bundle it would refuse.
	srv.serve(t, testBundle("r5", "unsigned"))
	if _, err := New(Options{Bundle: &BundleOptions{URL: srv.url(), PublicKey: pub}}); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("New on an unsigned bundle: %v", err)
	}
}
