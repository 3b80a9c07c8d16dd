package testenv

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(RunMain(m)) }

func query1(t *testing.T, url, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func TestSharedClusterLogins(t *testing.T) {
	c := Shared(t)
	if c.Version() == "" {
		t.Fatal("no server version")
	}
	if got := query1(t, c.AppURL("postgres"), "SELECT current_user::text"); got != AppUserName {
		t.Fatalf("current_user = %q, want %q", got, AppUserName)
	}
	if got := query1(t, c.AppURL("postgres"), "SELECT rolsuper::text FROM pg_roles WHERE rolname = current_user"); got != "false" {
		t.Fatalf("app user is superuser: %s", got)
	}
	if got := query1(t, c.SuperURL("postgres"), "SELECT rolsuper::text FROM pg_roles WHERE rolname = current_user"); got != "true" {
		t.Fatalf("super user is not superuser: %s", got)
	}
	if got := query1(t, c.AppURL("postgres"), "SHOW password_encryption"); got != "scram-sha-256" {
		t.Fatalf("password_encryption = %s", got)
	}
}

func TestDatabasesAndDemo(t *testing.T) {
	c := Shared(t)
	db := NewDatabase(t)
	ctx := context.Background()
	if err := LoadDemo(ctx, c.AppURL(db)); err != nil {
		t.Fatal(err)
	}
	if got := query1(t, c.AppURL(db), "SELECT count(*)::text FROM users"); got != "6" {
		t.Fatalf("users = %s, want 6", got)
	}
	if got := query1(t, c.AppURL(db), "SELECT role FROM users WHERE id = 'u_alice'"); got != "user" {
		t.Fatalf("alice's role = %s", got)
	}
	for _, tbl := range []string{"page_views", "component_hierarchy", "workflows", "lua_scripts", "packages"} {
		n, _ := strconv.Atoi(query1(t, c.AppURL(db), "SELECT count(*)::text FROM "+tbl))
		if n < 4 {
			t.Errorf("%s has %d rows, want at least 4", tbl, n)
		}
	}
	if got := query1(t, c.AppURL(db), "SELECT tableowner::text FROM pg_tables WHERE tablename = 'users'"); got != AppUserName {
		t.Fatalf("users owned by %s", got)
	}
	if err := c.DropDatabase(ctx, db); err != nil {
		t.Fatal(err)
	}
	if got := query1(t, c.SuperURL("postgres"), "SELECT count(*)::text FROM pg_database WHERE datname = '"+db+"'"); got != "0" {
		t.Fatalf("database %s still exists", db)
	}
	if err := c.CreateDatabase(ctx, "Bad-Name"); err == nil {
		t.Fatal("CreateDatabase accepted a name that is not a plain identifier")
	}
}

func TestStartStopRemovesEverything(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	c, err := Start(ctx, Options{MaxConnections: 50})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("started in %s", time.Since(start))
	if got := query1(t, c.SuperURL("postgres"), "SHOW max_connections"); got != "50" {
		t.Fatalf("max_connections = %s", got)
	}
	dir := c.dir
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("cluster directory %s still there: %v", dir, err)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := pgx.Connect(ctx, c.SuperURL("postgres")); err == nil {
		t.Fatal("server still accepts connections after Stop")
	}
}
