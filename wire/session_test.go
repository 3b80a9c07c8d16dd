package wire_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/wire"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestTrustAuthOnlyForKnownLogins(t *testing.T) {
	p := startProxy(t, func(w *wire.Config, _ *pool.Config) { w.AuthMethod = wire.AuthTrust })
	ctx := ctxT(t, 10*time.Second)
	conn, err := pgx.Connect(ctx, p.URLWithPassword("carol", "anything"))
	if err != nil {
		t.Fatalf("trust login: %v", err)
	}
	conn.Close(ctx)
	_, err = pgconn.Connect(ctx, p.URLWithPassword("mallory", "x"))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "28000" {
		t.Fatalf("unknown login with trust: %v, want 28000", err)
	}
}

func TestNoticesAreRelayed(t *testing.T) {
	p := startProxy(t)
	ctx := ctxT(t, 10*time.Second)
	var notices []string
	cfg, err := pgconn.ParseConfig(p.URL("alice"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Severity+": "+n.Message) }
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DO $$BEGIN RAISE NOTICE 'hello from %', 'plpgsql'; RAISE WARNING 'careful'; END$$").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(notices, "|") != "NOTICE: hello from plpgsql|WARNING: careful" {
		t.Fatalf("notices = %q", notices)
	}
}

func TestStartupParametersThatChangeIdentityAreRefused(t *testing.T) {
	p := startProxy(t)
	ctx := ctxT(t, 10*time.Second)
	for _, opt := range []string{"options=-c%20role%3Dpostgres", "options=-csession_authorization%3Dpostgres", "options=-c%20dbal.token%3Dx"} {
		_, err := pgconn.Connect(ctx, p.URL("alice")+"&"+opt)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" {
			t.Errorf("%s: %v, want 42501", opt, err)
		}
	}
	// A harmless one works and takes effect.
	conn, err := pgx.Connect(ctx, p.URL("alice")+"&options=-c%20work_mem%3D7MB")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var wm string
	if err := conn.QueryRow(ctx, "SHOW work_mem").Scan(&wm); err != nil || wm != "7MB" {
		t.Fatalf("work_mem = %q %v", wm, err)
	}
}
