package main

import (
	"context"
	"net/url"
	"os"
	osexec "os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/testenv"
	"github.com/jackc/pgx/v5"
)

// consoleURL is the admin console's URL for a login (password = name).
func (s *served) consoleURL(login string, extra string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(login, login), Host: s.addr, Path: "/dbalproxy",
		RawQuery: "sslmode=disable" + extra}
	return u.String()
}

// console connects to the admin console with pgx in simple protocol mode.
func (s *served) console(login string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.consoleURL(login, "&default_query_exec_mode=simple_protocol"))
	if err == nil {
		s.t.Cleanup(func() { c.Close(context.Background()) })
	}
	return c, err
}

// showRows runs a console command and returns its column names and rows
// as maps of column to text (nil for NULL).
func showRows(t *testing.T, c *pgx.Conn, cmd string) ([]string, []map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := c.Query(ctx, cmd)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	defer rows.Close()
	var cols []string
	for _, f := range rows.FieldDescriptions() {
		cols = append(cols, f.Name)
	}
	var out []map[string]any
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]any{}
		for i, v := range vals {
			m[cols[i]] = v
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return cols, out
}

func findRow(rows []map[string]any, col string, val any) map[string]any {
	for _, r := range rows {
		if r[col] == val {
			return r
		}
	}
	return nil
}

// TestConsoleShow: a supergod login on database dbalproxy gets the admin
// console; its SHOW commands answer with PgBouncer's columns; other roles
// are refused with 42501; SQL, unknown commands and the extended protocol
// get PostgreSQL-style errors and the session goes on.
func TestConsoleShow(t *testing.T) {
	s := startServe(t)
	alice := s.connect("alice")
	if err := exec(t, alice, "SELECT count(*) FROM page_views"); err != nil {
		t.Fatal(err)
	}
	for _, login := range []string{"alice", "bob"} {
		if _, err := s.console(login); sqlstate(err) != "42501" {
			t.Errorf("%s on the console: %v, want 42501", login, err)
		}
	}
	con, err := s.console("dave")
	if err != nil {
		t.Fatal(err)
	}
	cols, rows := showRows(t, con, "SHOW POOLS")
	for _, want := range []string{"database", "user", "cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_login", "maxwait", "maxwait_us", "pool_mode", "paused"} {
		if !slices.Contains(cols, want) {
			t.Errorf("SHOW POOLS has no column %s: %v", want, cols)
		}
	}
	p := findRow(rows, "database", s.db)
	if p == nil || p["cl_active"] != int64(1) || p["sv_active"] != int64(1) || p["pool_mode"] != "session" || p["paused"] != int64(0) {
		t.Errorf("SHOW POOLS row of %s: %v (all: %v)", s.db, p, rows)
	}
	_, rows = showRows(t, con, "show clients;")
	a := findRow(rows, "user", "alice")
	if a == nil || a["database"] != s.db || a["role"] != "user" || a["type"] != "C" || a["state"] != "active" || a["addr"] != "127.0.0.1" {
		t.Fatalf("SHOW CLIENTS: %v", rows)
	}
	if d := findRow(rows, "database", "dbalproxy"); d == nil || d["user"] != "dave" {
		t.Errorf("SHOW CLIENTS lacks the console session itself: %v", rows)
	}
	_, rows = showRows(t, con, "SHOW SERVERS")
	if sv := findRow(rows, "link", a["id"]); sv == nil || sv["remote_pid"] != a["server_pid"] || sv["user"] != testenv.AppUserName {
		t.Errorf("SHOW SERVERS: %v (alice %v)", rows, a)
	}
	_, rows = showRows(t, con, "SHOW STATS")
	if st := findRow(rows, "database", s.db); st == nil || st["total_query_count"].(int64) < 1 || st["total_login_count"].(int64) < 1 {
		t.Errorf("SHOW STATS: %v", rows)
	}
	cols, rows = showRows(t, con, "SHOW CONFIG")
	if !slices.Equal(cols, []string{"key", "value", "default", "changeable"}) {
		t.Errorf("SHOW CONFIG columns %v", cols)
	}
	if u := findRow(rows, "key", "backend.url"); u == nil || strings.Contains(u["value"].(string), testenv.Shared(t).AppPassword()) || u["changeable"] != "no" {
		t.Errorf("SHOW CONFIG backend.url: %v", u)
	}
	if m := findRow(rows, "key", "limits.max_client_conns"); m == nil || m["value"] != "10000" || m["changeable"] != "yes" {
		t.Errorf("SHOW CONFIG limits.max_client_conns: %v", m)
	}
	_, rows = showRows(t, con, "SHOW POLICY")
	if len(rows) != 1 || rows[0]["version"] != s.policyVersion() || !strings.Contains(rows[0]["files"].(string), "dbal.rego") ||
		rows[0]["mode"] != "strict" || rows[0]["last_reload"] != nil {
		t.Errorf("SHOW POLICY: %v", rows)
	}
	// RELOAD reloads (and is what SHOW POLICY reports); a refused one is an error.
	if _, err := con.Exec(context.Background(), "RELOAD"); err != nil {
		t.Fatal(err)
	}
	_, rows = showRows(t, con, "SHOW POLICY")
	if rows[0]["last_reload"] == nil || rows[0]["last_reload_result"] != "ok" {
		t.Errorf("SHOW POLICY after RELOAD: %v", rows)
	}
	if err := os.WriteFile(s.policies+"/broken.rego", []byte("package dbal\n\nthis is not rego\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := con.Exec(context.Background(), "RELOAD"); sqlstate(err) != "F0000" {
		t.Errorf("RELOAD of a broken policy set: %v, want F0000", err)
	}
	_, rows = showRows(t, con, "SHOW POLICY")
	if r, _ := rows[0]["last_reload_result"].(string); r == "ok" || r == "" {
		t.Errorf("SHOW POLICY after a refused RELOAD: %v", rows)
	}
	// Errors PostgreSQL-style, and the session goes on.
	for cmd, code := range map[string]string{
		"SELECT 1": "42601", "SHOW pools_and_more": "42704", "FROB": "42601", "KILL 999999": "42704", "RESUME": "55000",
	} {
		if _, err := con.Exec(context.Background(), cmd); sqlstate(err) != code {
			t.Errorf("%s: %v, want %s", cmd, err, code)
		}
	}
	ctx := context.Background()
	ext, err := pgx.Connect(ctx, s.consoleURL("dave", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close(ctx)
	if _, err := ext.Exec(ctx, "KILL $1", 1); sqlstate(err) != "0A000" {
		t.Errorf("pgx's default (extended) protocol: %v, want 0A000", err)
	}
	if _, err := ext.Exec(ctx, "SHOW POOLS", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Errorf("simple protocol after an extended-protocol error: %v", err)
	}
	showRows(t, con, "SHOW HELP")
}

// TestConsoleStatsRoles: a stats role may SHOW but not change anything.
func TestConsoleStatsRoles(t *testing.T) {
	s := startServe(t, "console: {stats_roles: [admin]}\n")
	bob, err := s.console("bob")
	if err != nil {
		t.Fatal(err)
	}
	showRows(t, bob, "SHOW CLIENTS")
	for _, cmd := range []string{"RELOAD", "PAUSE", "KILL 1", "SHUTDOWN"} {
		if _, err := bob.Exec(context.Background(), cmd); sqlstate(err) != "42501" {
			t.Errorf("%s by a stats role: %v, want 42501", cmd, err)
		}
	}
}

// TestConsolePsql: psql's own backslash commands (catalog queries) get an
// error and psql goes on; SHOW output is a table.
func TestConsolePsql(t *testing.T) {
	s := startServe(t)
	psql := testenv.Shared(t).BinDir() + "/psql"
	cmd := osexec.Command(psql, "-X", "-v", "ON_ERROR_STOP=0", s.consoleURL("dave", ""))
	cmd.Stdin = strings.NewReader("SHOW POOLS;\n\\d\nSHOW HELP;\nSHOW VERSION;\n")
	out, err := cmd.CombinedOutput()
	text := string(out)
	t.Log(text)
	if err != nil && !strings.Contains(text, "unrecognized admin console command") {
		t.Fatalf("psql: %v\n%s", err, text)
	}
	for _, want := range []string{"cl_active", "pool_mode", "unrecognized admin console command", "Console usage", "dbalproxy " + version} {
		if !strings.Contains(text, want) {
			t.Errorf("psql output lacks %q:\n%s", want, text)
		}
	}
}

// TestConsoleKillAndShutdown: KILL closes a client's session with 57P01
// (its transaction rolled back); SHUTDOWN drains as SIGTERM does.
func TestConsoleKillAndShutdown(t *testing.T) {
	s := startServe(t)
	alice := s.connect("alice")
	if err := exec(t, alice, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	con, err := s.console("dave")
	if err != nil {
		t.Fatal(err)
	}
	_, rows := showRows(t, con, "SHOW CLIENTS")
	a := findRow(rows, "user", "alice")
	if a == nil || a["tx_status"] != "in transaction" {
		t.Fatalf("SHOW CLIENTS: %v", rows)
	}
	if _, err := con.Exec(context.Background(), "KILL "+a["id"].(string)); err != nil {
		t.Fatal(err)
	}
	if err := exec(t, alice, "SELECT 1"); sqlstate(err) != "57P01" {
		t.Errorf("killed session: %v, want 57P01", err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, rows = showRows(t, con, "SHOW CLIENTS")
		if findRow(rows, "user", "alice") == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice still listed after KILL: %v", rows)
		}
	}
	dave := s.connect("dave")
	if _, err := con.Exec(context.Background(), "SHUTDOWN"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		s.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("serve after SHUTDOWN: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not return after SHUTDOWN")
	}
	if err := exec(t, dave, "SELECT 1"); sqlstate(err) != "57P01" {
		t.Errorf("idle session after SHUTDOWN: %v, want 57P01", err)
	}
}

// TestConsolePause (transaction pooling): PAUSE waits for the open
// transaction to end; a transaction begun while paused waits (it does not
// fail) and runs after RESUME.
func TestConsolePause(t *testing.T) {
	s := startServe(t, "pool: {mode: transaction}\n")
	busy := s.connect("dave")
	waiter := s.connect("alice")
	if err := exec(t, busy, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if err := exec(t, busy, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	con, err := s.console("dave")
	if err != nil {
		t.Fatal(err)
	}
	paused := make(chan error, 1)
	go func() {
		_, err := con.Exec(context.Background(), `PAUSE "`+s.db+`"`)
		paused <- err
	}()
	select {
	case err := <-paused:
		t.Fatalf("PAUSE returned while a transaction was open: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := exec(t, busy, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-paused:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("PAUSE did not return after the transaction ended")
	}
	ran := make(chan error, 1)
	go func() { ran <- exec(t, waiter, "SELECT count(*) FROM page_views") }()
	select {
	case err := <-ran:
		t.Fatalf("a statement ran while paused: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	_, rows := showRows(t, con, "SHOW POOLS")
	if p := findRow(rows, "database", s.db); p == nil || p["paused"] != int64(1) || p["cl_waiting"] != int64(1) || p["pool_mode"] != "transaction" {
		t.Errorf("SHOW POOLS while paused: %v", rows)
	}
	if _, err := con.Exec(context.Background(), "RESUME "+s.db); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("the statement held by PAUSE failed: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the statement held by PAUSE did not run after RESUME")
	}
}

// TestConsoleKillTransactionPooling: KILL in transaction pooling, of a
// client in a transaction (holding a backend) and of an idle one (holding
// none); the backend connection goes back clean.
func TestConsoleKillTransactionPooling(t *testing.T) {
	s := startServe(t, "pool: {mode: transaction}\n")
	inTx, idle := s.connect("alice"), s.connect("bob")
	if err := exec(t, inTx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if err := exec(t, inTx, "SELECT count(*) FROM page_views"); err != nil {
		t.Fatal(err)
	}
	if err := exec(t, idle, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	con, err := s.console("dave")
	if err != nil {
		t.Fatal(err)
	}
	_, rows := showRows(t, con, "SHOW CLIENTS")
	a, b := findRow(rows, "user", "alice"), findRow(rows, "user", "bob")
	if a == nil || b == nil || a["server_pid"] == nil || b["server_pid"] != nil || b["state"] != "idle" {
		t.Fatalf("SHOW CLIENTS: %v", rows)
	}
	for _, c := range []struct {
		conn *pgx.Conn
		id   string
	}{{inTx, a["id"].(string)}, {idle, b["id"].(string)}} {
		if _, err := con.Exec(context.Background(), "KILL_CLIENT "+c.id); err != nil {
			t.Fatal(err)
		}
		if err := exec(t, c.conn, "SELECT 1"); sqlstate(err) != "57P01" {
			t.Errorf("killed client %s: %v, want 57P01", c.id, err)
		}
	}
	fresh := s.connect("alice")
	if err := exec(t, fresh, "SELECT count(*) FROM page_views"); err != nil {
		t.Fatalf("after the kills: %v", err)
	}
}
