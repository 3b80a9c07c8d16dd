package admin

import (
	"context"
	"errors"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// Info's lines follow /readyz's first line, ready or not.
func TestReadyInfo(t *testing.T) {
	var notReady atomic.Pointer[error]
	srv := httptest.NewServer(Handler(Config{
		Ready: []Check{func(context.Context) error {
			if e := notReady.Load(); e != nil {
				return *e
			}
			return nil
		}},
		Info: func() []string { return []string{"policy_version: r7@abc", "policy_revision: r7"} },
	}))
	defer srv.Close()
	if code, body := get(t, srv.URL+"/readyz"); code != 200 || body != "ready\npolicy_version: r7@abc\npolicy_revision: r7\n" {
		t.Errorf("/readyz = %d %q", code, body)
	}
	e := errors.New("draining")
	notReady.Store(&e)
	if code, body := get(t, srv.URL+"/readyz"); code != 503 || body != "not ready: draining\npolicy_version: r7@abc\npolicy_revision: r7\n" {
		t.Errorf("/readyz = %d %q", code, body)
	}
}
