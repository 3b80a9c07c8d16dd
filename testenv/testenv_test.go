package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestMain(m *testing.M) { os.Exit(RunMain(m)) }

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// query1 runs sql at url and returns the one text value it yields.
func query1(t *testing.T, url, sql string) string {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
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

func TestSharedIsOneClusterUnderConcurrency(t *testing.T) {
	var wg sync.WaitGroup
	got := make([]*Cluster, 8)
	for i := range got {
		wg.Go(func() { got[i] = Shared(t) })
	}
	wg.Wait()
	for i, c := range got {
		if c == nil || c != got[0] {
			t.Fatalf("Shared call %d returned %p, call 0 returned %p", i, c, got[0])
		}
	}
	c := got[0]
	if c.Host() != "127.0.0.1" || c.Port() <= 0 {
		t.Fatalf("address %s:%d", c.Host(), c.Port())
	}
	if !regexp.MustCompile(`^\d+\.\d+$`).MatchString(c.Version()) {
		t.Fatalf("Version() = %q, want major.minor", c.Version())
	}
	if got := query1(t, c.SuperURL("postgres"), "SHOW server_version"); !strings.HasPrefix(got, c.Version()) {
		t.Fatalf("server_version %q does not start with Version() %q", got, c.Version())
	}
}

func TestBinDirHasClientsOfTheSameVersion(t *testing.T) {
	c := Shared(t)
	for _, tool := range []string{"psql", "pgbench"} {
		out, err := exec.Command(filepath.Join(c.BinDir(), tool), "--version").CombinedOutput()
		if err != nil {
			t.Fatalf("%s --version: %v\n%s", tool, err, out)
		}
		if !strings.Contains(string(out), " "+c.Version()) {
			t.Errorf("%s --version = %q, want version %s", tool, out, c.Version())
		}
	}
}

func TestLogins(t *testing.T) {
	c := Shared(t)
	if c.AppUser() != "dbalproxy_backend" || c.AppPassword() == "" {
		t.Fatalf("app login %q with password %q", c.AppUser(), c.AppPassword())
	}
	if !strings.Contains(c.AppURL("x"), c.AppPassword()) || !strings.HasSuffix(c.AppURL("x"), "/x?sslmode=disable") {
		t.Fatalf("AppURL does not carry the password and database")
	}
	if got := query1(t, c.AppURL("postgres"), "SELECT current_user::text"); got != c.AppUser() {
		t.Fatalf("current_user = %q, want %q", got, c.AppUser())
	}
	if got := query1(t, c.AppURL("postgres"), "SELECT format('%s %s', rolsuper::text, rolcreatedb::text) FROM pg_roles WHERE rolname = current_user"); got != "false true" {
		t.Fatalf("app login rolsuper, rolcreatedb = %s, want false true", got)
	}
	if got := query1(t, c.SuperURL("postgres"), "SELECT format('%s %s', current_user, rolsuper::text) FROM pg_roles WHERE rolname = current_user"); got != "postgres true" {
		t.Fatalf("super login = %s, want postgres true", got)
	}
	// Both passwords are stored as SCRAM verifiers, and TCP asks for SCRAM.
	if got := query1(t, c.SuperURL("postgres"), "SELECT count(*)::text FROM pg_authid WHERE rolname IN ('postgres', 'dbalproxy_backend') AND rolpassword LIKE 'SCRAM-SHA-256$%'"); got != "2" {
		t.Fatalf("%s logins have SCRAM verifiers, want 2", got)
	}
	if got := query1(t, c.SuperURL("postgres"), "SELECT string_agg(auth_method, ',') FROM pg_hba_file_rules WHERE type = 'host'"); got != "scram-sha-256" {
		t.Fatalf("host rules use %q, want scram-sha-256", got)
	}
	// A wrong password is refused.
	conf, err := pgconn.ParseConfig(c.AppURL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	conf.Password = "wrong"
	_, err = pgconn.ConnectConfig(ctxT(t, 10*time.Second), conf)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("connecting with a wrong password: %v, want SQLSTATE 28P01", err)
	}
}

func TestCreateAndDropDatabase(t *testing.T) {
	c := Shared(t)
	ctx := ctxT(t, 30*time.Second)
	exists := func(name string) string {
		return query1(t, c.SuperURL("postgres"), fmt.Sprintf("SELECT count(*)::text FROM pg_database WHERE datname = '%s'", name))
	}
	if err := c.CreateDatabase(ctx, "created_by_test"); err != nil {
		t.Fatal(err)
	}
	if got := query1(t, c.SuperURL("postgres"), "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = 'created_by_test'"); got != c.AppUser() {
		t.Fatalf("owner = %s, want %s", got, c.AppUser())
	}
	// DropDatabase must terminate sessions that are still connected.
	conn, err := pgconn.Connect(ctx, c.AppURL("created_by_test"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := c.DropDatabase(ctx, "created_by_test"); err != nil {
		t.Fatal(err)
	}
	if got := exists("created_by_test"); got != "0" {
		t.Fatal("database still exists after DropDatabase")
	}
	if err := c.DropDatabase(ctx, "created_by_test"); err != nil {
		t.Fatalf("dropping a missing database: %v", err)
	}
	for _, bad := range []string{"Bad-Name", "x; DROP DATABASE postgres", "", "1abc"} {
		if err := c.CreateDatabase(ctx, bad); err == nil {
			t.Errorf("CreateDatabase(%q) succeeded, want an error", bad)
		}
	}

	var name string
	t.Run("NewDatabase", func(t *testing.T) {
		name = NewDatabase(t)
		if got := query1(t, c.AppURL(name), "SELECT current_database()::text"); got != name {
			t.Fatalf("connected to %s, want %s", got, name)
		}
		if other := NewDatabase(t); other == name {
			t.Fatalf("NewDatabase returned %s twice", name)
		}
	})
	if got := exists(name); got != "0" {
		t.Fatalf("NewDatabase's database %s survived its test", name)
	}
}

func TestLoadDemo(t *testing.T) {
	c := Shared(t)
	db := NewDatabase(t)
	if err := LoadDemo(ctxT(t, 30*time.Second), c.AppURL(db)); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"users": "6", "page_views": "5", "component_hierarchy": "6", "workflows": "4", "lua_scripts": "4", "packages": "4"}
	for tbl, n := range want {
		if got := query1(t, c.AppURL(db), "SELECT count(*)::text FROM "+tbl); got != n {
			t.Errorf("%s has %s rows, want %s", tbl, got, n)
		}
		if got := query1(t, c.AppURL(db), "SELECT tableowner::text FROM pg_tables WHERE schemaname = 'public' AND tablename = '"+tbl+"'"); got != c.AppUser() {
			t.Errorf("%s is owned by %s, want %s", tbl, got, c.AppUser())
		}
	}
	roles := query1(t, c.AppURL(db), "SELECT string_agg(username || ':' || role || ':' || email, ' ' ORDER BY id) FROM users")
	if wantRoles := "alice:user:alice@example.com bob:admin:bob@example.com carol:god:carol@example.com dave:supergod:dave@example.com erin:user:erin@example.com frank:user:frank@example.com"; roles != wantRoles {
		t.Errorf("users = %s\nwant %s", roles, wantRoles)
	}
	// The role check constraint holds.
	conn, err := pgconn.Connect(ctxT(t, 10*time.Second), c.AppURL(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctxT(t, 10*time.Second), "INSERT INTO users (id, username, email, role) VALUES ('u_x', 'x', 'x@example.com', 'root')").ReadAll()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23514" {
		t.Fatalf("inserting role 'root': %v, want a check violation", err)
	}
}

func TestStartStopLeavesNothingBehind(t *testing.T) {
	ctx := ctxT(t, 60*time.Second)
	var logs strings.Builder
	var mu sync.Mutex
	begin := time.Now()
	c, err := Start(ctx, Options{MaxConnections: 50, Settings: map[string]string{"work_mem": "'8MB'"},
		Logf: func(f string, a ...any) { mu.Lock(); fmt.Fprintf(&logs, f+"\n", a...); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(begin)
	if shared := Shared(t); c.Port() == shared.Port() || c.dir == shared.dir {
		t.Fatal("Start reused the shared cluster")
	}
	if got := query1(t, c.SuperURL("postgres"), "SELECT current_setting('max_connections') || ' ' || current_setting('work_mem') || ' ' || current_setting('fsync')"); got != "50 8MB off" {
		t.Fatalf("settings = %s, want 50 8MB off", got)
	}
	mu.Lock()
	logged := logs.String()
	mu.Unlock()
	t.Logf("Start took %s:\n%s", took, logged)
	if !strings.Contains(logged, "ready in") {
		t.Errorf("Logf got no progress:\n%s", logged)
	}
	if strings.Contains(logged, c.AppPassword()) || strings.Contains(logged, c.superPW) {
		t.Error("Logf output contains a password")
	}
	if _, err := os.Stat(filepath.Join(c.dir, "server.log")); err != nil {
		t.Errorf("no server log in the cluster directory: %v", err)
	}
	pid := c.proc.Process.Pid
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
		t.Fatalf("cluster directory %s still there: %v", c.dir, err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); !os.IsNotExist(err) {
		t.Fatalf("postmaster %d still running after Stop", pid)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if conn, err := pgconn.Connect(ctx, c.SuperURL("postgres")); err == nil {
		conn.Close(ctx)
		t.Fatal("server still accepts connections after Stop")
	}
}

func TestStartFailureReportsLogAndCleansUp(t *testing.T) {
	var dir string
	_, err := Start(ctxT(t, 60*time.Second), Options{
		Settings: map[string]string{"no_such_setting": "1"},
		Logf: func(f string, a ...any) {
			if strings.HasPrefix(f, "testenv: initdb in ") {
				dir = a[0].(string)
			}
		},
	})
	if err == nil {
		t.Fatal("Start succeeded with an unknown setting")
	}
	if !strings.Contains(err.Error(), `"no_such_setting"`) {
		t.Fatalf("error does not carry the server log: %v", err)
	}
	if dir == "" {
		t.Fatal("Logf did not report the cluster directory")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("cluster directory %s left behind: %v", dir, err)
	}
}

func TestMissingBinariesSaysHowToInstall(t *testing.T) {
	t.Setenv("DBALPROXY_PG_BIN", t.TempDir())
	_, err := Start(ctxT(t, 10*time.Second), Options{})
	if err == nil || !strings.Contains(err.Error(), "install them with `apt-get update && apt-get install -y postgresql`") {
		t.Fatalf("Start without binaries: %v", err)
	}
}

// TestServerDiesWithItsParent kills a process that started a cluster and
// checks that the kernel's parent-death signal takes the server down.
func TestServerDiesWithItsParent(t *testing.T) {
	if os.Getenv("TESTENV_CRASH_CHILD") == "1" {
		c, err := Start(context.Background(), Options{})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("started", c.proc.Process.Pid, c.dir)
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestServerDiesWithItsParent$")
	cmd.Env = append(os.Environ(), "TESTENV_CRASH_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	f := strings.Fields(line)
	if err != nil || len(f) != 3 || f[0] != "started" {
		t.Fatalf("child: %q %v", line, err)
	}
	pid, _ := strconv.Atoi(f[1])
	t.Cleanup(func() { _ = os.RemoveAll(f[2]) })
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		// The postmaster is reparented (to init or a subreaper), which reaps it.
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(st), ") Z ") {
			return // dead, waiting to be reaped
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("postmaster %d still running 15s after its parent died", pid)
		}
	}
}
