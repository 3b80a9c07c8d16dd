package admin

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestEndpoints(t *testing.T) {
	var notReady atomic.Pointer[error]
	s, err := Start(Config{
		Addr:    "127.0.0.1:0",
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "m 1\n") }),
		Ready: []Check{func(context.Context) error {
			if e := notReady.Load(); e != nil {
				return *e
			}
			return nil
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	base := "http://" + s.Addr().String()
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("/readyz = %d %q", code, body)
	}
	e := errors.New("draining")
	notReady.Store(&e)
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "not ready: draining") {
		t.Errorf("/readyz while not ready = %d %q", code, body)
	}
	if code, body := get(t, base+"/metrics"); code != 200 || body != "m 1\n" {
		t.Errorf("/metrics = %d %q", code, body)
	}
	if code, _ := get(t, base+"/nothing"); code != 404 {
		t.Errorf("/nothing = %d", code)
	}
}

func TestCached(t *testing.T) {
	var runs atomic.Int32
	c := Cached(func(context.Context) error { runs.Add(1); return nil }, 50*time.Millisecond)
	for range 10 {
		_ = c(context.Background())
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("check ran %d times within the ttl, want 1", n)
	}
	time.Sleep(60 * time.Millisecond)
	_ = c(context.Background())
	if n := runs.Load(); n != 2 {
		t.Fatalf("check ran %d times after the ttl, want 2", n)
	}
}
