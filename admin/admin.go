// Package admin serves dbalproxy's operations endpoints over HTTP:
//
//	/metrics  Prometheus metrics (text format)
//	/healthz  200 "ok" while the process runs (liveness)
//	/readyz   200 "ready", or 503 with the reason: not listening yet,
//	          policies not loaded, backend unreachable, or draining (readiness,
//	          for load balancers and orchestrators); then Config.Info's lines,
//	          e.g. the policy version and bundle revision in force
//
// The listener is meant for loopback or a private network: it has no
// authentication of its own.
package admin

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// Check is one readiness condition; a non-nil error says why the proxy is
// not ready. It should return quickly.
type Check func(ctx context.Context) error

// Config configures a Server.
type Config struct {
	// Addr is the listen address, e.g. 127.0.0.1:9187. Required.
	Addr string
	// Metrics serves /metrics; nil answers 404 there.
	Metrics http.Handler
	// Ready lists the readiness checks, run in order by /readyz; the first
	// failure is reported.
	Ready []Check
	// Info, if set, adds lines ("policy_revision: r42") after /readyz's
	// first line, ready or not, so that operators see which policies an
	// instance enforces.
	Info func() []string
	// ReadyTimeout bounds one /readyz answer; zero means 5s.
	ReadyTimeout time.Duration
}

// Handler returns the admin endpoints as one http.Handler.
func Handler(cfg Config) http.Handler {
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 5 * time.Second
	}
	mux := http.NewServeMux()
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		text(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), cfg.ReadyTimeout)
		defer cancel()
		info := ""
		if cfg.Info != nil {
			for _, l := range cfg.Info() {
				info += "\n" + l
			}
		}
		for _, c := range cfg.Ready {
			if err := c(ctx); err != nil {
				text(w, http.StatusServiceUnavailable, "not ready: "+err.Error()+info)
				return
			}
		}
		text(w, http.StatusOK, "ready"+info)
	})
	return mux
}

func text(w http.ResponseWriter, code int, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(s + "\n"))
}

// Server is a running admin listener.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
}

// Start binds cfg.Addr and serves the admin endpoints until Close.
func Start(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		return nil, errors.New("admin: no listen address")
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		ln: ln,
		srv: &http.Server{
			Handler:           Handler(cfg),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       time.Minute,
			MaxHeaderBytes:    16 << 10,
		},
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// Addr is the address the listener is bound to.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the listener and waits for open requests up to ctx.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	<-s.done
	return err
}

// Cached runs check at most once per ttl and answers from the last result in
// between, so that frequent load-balancer probes do not each open a backend
// connection. Concurrent callers share one run.
func Cached(check Check, ttl time.Duration) Check {
	var mu sync.Mutex
	var last time.Time
	var lastErr error
	return func(ctx context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		if !last.IsZero() && time.Since(last) < ttl {
			return lastErr
		}
		lastErr = check(ctx)
		last = time.Now()
		return lastErr
	}
}
