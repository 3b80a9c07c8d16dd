package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestLoginMetrics: decisions, login attempts and open sessions are
// labelled with the login for the configured logins only (a guessed name
// counts as "other"), a reload that adds a login labels it, and the build
// is exported as dbalproxy_build_info.
func TestLoginMetrics(t *testing.T) {
	s := startServe(t)
	alice := s.connect("alice")
	if err := exec(t, alice, "DELETE FROM packages"); sqlstate(err) != "42501" {
		t.Fatalf("DELETE as alice: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := pgx.Connect(ctx, s.url("mallory", "guess")); sqlstate(err) != "28P01" {
		t.Fatalf("unknown login: %v", err)
	}
	s.waitMetric(`dbalproxy_decisions_total{decision="deny",login="alice"}`, 1)
	s.waitMetric(`dbalproxy_decisions_total{decision="deny",login="bob"}`, 0)
	s.waitMetric(`dbalproxy_logins_total{login="alice",result="ok"}`, 1)
	s.waitMetric(`dbalproxy_logins_total{login="other",result="failed"}`, 1)
	s.waitMetric(`dbalproxy_login_sessions{login="alice"}`, 1)
	s.waitMetric(`dbalproxy_login_sessions{login="dave"}`, 0)
	if v := s.metric(`dbalproxy_logins_total{login="mallory"}`); v != -1 {
		t.Errorf("a guessed login name became a label value: %v", v)
	}
	if v := s.metric(`dbalproxy_build_info{version="` + readBuildInfo().Version + `"}`); v != 1 {
		t.Errorf("dbalproxy_build_info = %v, want 1", v)
	}
	_, body := s.get("/metrics")
	if !strings.Contains(body, `goversion="go`) {
		t.Errorf("dbalproxy_build_info has no goversion:\n%s", body)
	}

	s.writeConfig("  - {name: erin, password: erin, role: admin}\n")
	s.reload <- struct{}{}
	s.waitMetric(`dbalproxy_config_reloads_total{result="ok"}`, 1)
	s.connect("erin")
	s.waitMetric(`dbalproxy_logins_total{login="erin",result="ok"}`, 1)
}
