package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path"
	"strings"
	"sync"
	"testing/fstest"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
)

// BundleOptions make an Engine load its policies from an OPA bundle service
// instead of a directory: the standard bundle protocol, as OPA's bundle
// plugin speaks it.
//
// The Engine GETs URL (an `opa build` bundle: a gzipped tarball of .rego and
// data files with an optional .manifest and .signatures.json), sending the
// ETag of the bundle it has in If-None-Match; a 304 Not Modified means no
// change. It polls again after a random delay between MinDelay and MaxDelay
// (OPA's min_delay_seconds and max_delay_seconds); after a failed download
// it retries sooner, backing off up to MaxDelay. The bundle's .manifest
// revision is reported by Engine.Revision and is part of Engine.Version.
type BundleOptions struct {
	// URL is the bundle's address, e.g.
	// https://bundles.example.com/bundles/dbal.tar.gz. Required.
	URL string
	// MinDelay and MaxDelay bound the random wait between polls; zero
	// means OPA's defaults, 60s and 120s.
	MinDelay, MaxDelay time.Duration
	// Token, if set, is sent as "Authorization: Bearer <Token>" (OPA's
	// credentials.bearer).
	Token string
	// PublicKey, if set, is the key bundles must be signed with: a PEM
	// public key (RS*, PS*, ES*) or, for HS*, the shared secret. An unsigned
	// bundle, or one whose signature or file hashes do not verify, is
	// refused and the running set stays. PublicKeyFile names a file holding
	// it instead.
	PublicKey     string
	PublicKeyFile string
	// KeyID is the key's id in the signature's "keyid" claim; default
	// "default". Algorithm is the signing algorithm; default RS256. Scope,
	// if set, must match the signature's "scope" claim.
	KeyID, Algorithm, Scope string
	// Timeout bounds one download; zero means 30s.
	Timeout time.Duration
	// Client is the HTTP client; nil means one with Timeout.
	Client *http.Client
}

// bundleSource polls a bundle service. Its fields are used under the
// Engine's reloadMu.
type bundleSource struct {
	opts   BundleOptions
	client *http.Client
	verify *bundle.VerificationConfig // nil: signatures are not checked
	// etag is the ETag of the bundle last downloaded (even if it was
	// refused, so that the same bytes are not fetched again); "" after a
	// failed download.
	etag string

	mu     sync.Mutex
	status BundleStatus
}

// BundleStatus is what the Engine knows about its bundle service.
type BundleStatus struct {
	URL string
	// Revision is the .manifest revision of the bundle in force.
	Revision string
	// ETag is the ETag of the bundle in force.
	ETag string
	// LastDownload is when the service last answered (200 or 304);
	// LastActivation when a new bundle was swapped in.
	LastDownload, LastActivation time.Time
	// LastError is the last poll's error (download, signature, compile,
	// tests); nil after a poll that succeeded.
	LastError error
}

const (
	defaultBundleMinDelay = 60 * time.Second
	defaultBundleMaxDelay = 120 * time.Second
	bundleRetryMin        = 100 * time.Millisecond
)

func newBundleSource(opts BundleOptions) (*bundleSource, error) {
	if opts.URL == "" {
		return nil, errors.New("policy: BundleOptions.URL is required")
	}
	if !strings.HasPrefix(opts.URL, "http://") && !strings.HasPrefix(opts.URL, "https://") {
		return nil, fmt.Errorf("policy: bundle URL %q is not http:// or https://", opts.URL)
	}
	if opts.MinDelay == 0 && opts.MaxDelay == 0 {
		opts.MinDelay, opts.MaxDelay = defaultBundleMinDelay, defaultBundleMaxDelay
	}
	if opts.MaxDelay == 0 {
		opts.MaxDelay = max(opts.MinDelay, defaultBundleMaxDelay)
	}
	if opts.MinDelay <= 0 || opts.MaxDelay < opts.MinDelay {
		return nil, fmt.Errorf("policy: bundle polling delays: want 0 < min (%s) <= max (%s)", opts.MinDelay, opts.MaxDelay)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	src := &bundleSource{opts: opts, client: opts.Client}
	if src.client == nil {
		src.client = &http.Client{Timeout: opts.Timeout}
	}
	src.status.URL = opts.URL
	key := opts.PublicKey
	if opts.PublicKeyFile != "" {
		if key != "" {
			return nil, errors.New("policy: bundle PublicKey and PublicKeyFile exclude each other")
		}
		b, err := os.ReadFile(opts.PublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("policy: bundle signing key: %w", err)
		}
		key = string(b)
	}
	if key != "" {
		id := opts.KeyID
		if id == "" {
			id = "default"
		}
		alg := opts.Algorithm
		if alg == "" {
			alg = "RS256"
		}
		keys := map[string]*bundle.KeyConfig{id: {Key: key, Algorithm: alg, Scope: opts.Scope}}
		vc := bundle.NewVerificationConfig(keys, id, opts.Scope, nil)
		if err := vc.ValidateAndInjectDefaults(keys); err != nil {
			return nil, fmt.Errorf("policy: bundle signing key: %w", err)
		}
		src.verify = vc
	}
	return src, nil
}

// errNotModified is fetch's answer to a 304.
var errNotModified = errors.New("not modified")

// fetch downloads the bundle unless the service says it has not changed
// (errNotModified), verifies it (with a key configured) and turns it into a
// snapshot.
func (b *bundleSource) fetch(ctx context.Context) (*snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, b.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.opts.URL, nil)
	if err != nil {
		return nil, err
	}
	if b.etag != "" {
		req.Header.Set("If-None-Match", b.etag)
	}
	// Only snapshot bundles: a delta bundle patches a store this engine
	// does not keep.
	req.Header.Set("Prefer", "modes=snapshot")
	req.Header.Set("Accept", "application/vnd.openpolicyagent.bundles, application/gzip, application/octet-stream")
	if b.opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+b.opts.Token)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.etag = ""
		return nil, fmt.Errorf("download: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		b.noteDownload()
		return nil, errNotModified
	default:
		b.etag = ""
		return nil, fmt.Errorf("download: %s answered %s", b.opts.URL, resp.Status)
	}
	etag := resp.Header.Get("ETag")
	bu, err := bundle.NewCustomReader(bundle.NewTarballLoaderWithBaseURL(resp.Body, b.opts.URL)).
		WithBundleVerificationConfig(b.verify).
		WithSkipBundleVerification(b.verify == nil).
		WithBundleEtag(etag).
		WithRegoVersion(ast.RegoV1).
		WithProcessAnnotations(true).
		Read()
	if err != nil {
		b.etag = ""
		return nil, fmt.Errorf("bundle: %w", err)
	}
	b.noteDownload()
	// The same bytes would be refused again: ask for them only when they
	// change, whatever happens to them next.
	b.etag = etag
	if bu.Type() != bundle.SnapshotBundleType {
		return nil, fmt.Errorf("bundle: a %s bundle; only snapshot bundles are supported", bu.Type())
	}
	return bundleSnapshot(b.opts.URL, &bu)
}

func (b *bundleSource) noteDownload() {
	b.mu.Lock()
	b.status.LastDownload = time.Now()
	b.mu.Unlock()
}

// bundleSnapshot is a bundle's modules and data as a snapshot: module files
// at their paths in the bundle, data as one data.json at the top (which
// loads as data itself, as the bundle's data does).
func bundleSnapshot(url string, bu *bundle.Bundle) (*snapshot, error) {
	s := &snapshot{dir: url, fsys: fstest.MapFS{}, revision: bu.Manifest.Revision}
	for _, m := range bu.Modules {
		name := strings.TrimPrefix(path.Clean("/"+m.Path), "/")
		if _, dup := s.fsys[name]; dup || name == "" {
			return nil, fmt.Errorf("bundle: module path %q twice or empty", m.Path)
		}
		s.fsys[name] = &fstest.MapFile{Data: m.Raw, Mode: 0o444}
		s.names = append(s.names, name)
	}
	if len(bu.Data) > 0 {
		data, err := json.Marshal(bu.Data)
		if err != nil {
			return nil, fmt.Errorf("bundle: data: %w", err)
		}
		// A module cannot be named data.json: the name is free.
		s.fsys["data.json"] = &fstest.MapFile{Data: data, Mode: 0o444}
		s.names = append(s.names, "data.json")
	}
	if err := s.seal(); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	if s.revision != "" {
		s.version = s.revision + "@" + s.version
	}
	return s, nil
}

// poll fetches the bundle and installs it if it is new and good; reloadMu
// must be held. A 304 is no change and no error.
func (e *Engine) poll(ctx context.Context, what string) error {
	b := e.bundle
	old := e.set.Load()
	snap, err := b.fetch(ctx)
	if errors.Is(err, errNotModified) {
		b.setError(nil)
		return nil
	}
	if err == nil {
		err = e.install(ctx, snap, what)
	} else {
		err = e.failed(what, err)
	}
	b.mu.Lock()
	b.status.LastError = err
	if set := e.set.Load(); set != nil && set != old {
		b.status.LastActivation = time.Now()
		b.status.Revision, b.status.ETag = set.revision, b.etag
	}
	b.mu.Unlock()
	return err
}

func (b *bundleSource) setError(err error) {
	b.mu.Lock()
	b.status.LastError = err
	b.mu.Unlock()
}

// pollLoop polls the bundle service until ctx is done: after a random delay
// between MinDelay and MaxDelay, or, after a failure, a delay that doubles
// from 100ms up to MaxDelay.
func (e *Engine) pollLoop(ctx context.Context) error {
	b := e.bundle
	e.log.Info().Str("policy_bundle", b.opts.URL).Dur("min_delay", b.opts.MinDelay).Dur("max_delay", b.opts.MaxDelay).
		Msg("polling the policy bundle service")
	retry := 0
	for {
		var delay time.Duration
		if retry == 0 {
			delay = b.opts.MinDelay + rand.N(b.opts.MaxDelay-b.opts.MinDelay+1)
		} else {
			delay = min(b.opts.MaxDelay, bundleRetryMin<<min(retry-1, 20))
			delay = delay/2 + rand.N(delay/2+1)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		e.reloadMu.Lock()
		old := e.set.Load()
		err := e.poll(ctx, "reload")
		changed := e.set.Load() != old
		e.reloadMu.Unlock()
		if e.onReload != nil && (err != nil || changed) {
			e.onReload(err)
		}
		if err != nil {
			retry++
		} else {
			retry = 0
		}
	}
}

// BundleStatus reports the bundle service's state; ok is false when the
// Engine loads a directory.
func (e *Engine) BundleStatus() (st BundleStatus, ok bool) {
	if e.bundle == nil {
		return BundleStatus{}, false
	}
	e.bundle.mu.Lock()
	defer e.bundle.mu.Unlock()
	return e.bundle.status, true
}
