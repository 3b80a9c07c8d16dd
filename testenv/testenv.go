package testenv

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Options configures Start. Zero values are fine.
type Options struct {
	// Port is the loopback port to listen on; 0 picks a free one.
	Port int
	// Logf receives progress and diagnostics; nil discards them.
	Logf func(format string, args ...any)
	// MaxConnections is the server's max_connections; 0 means 400.
	MaxConnections int
	// Settings are extra postgresql.conf settings.
	Settings map[string]string
}

// Cluster is a running throwaway PostgreSQL server.
type Cluster struct {
	dir      string
	binDir   string
	port     int
	version  string
	superPW  string
	appPW    string
	cmd      *exec.Cmd
	exited   chan struct{}
	stopOnce sync.Once
	stopErr  error
	logf     func(string, ...any)
	runAs    *syscall.Credential
}

// AppUserName is the non-superuser login the proxy uses as its backend role.
const AppUserName = "dbalproxy_backend"

// installHint is what to run when no server binaries are found.
const installHint = "install them with `apt-get update && apt-get install -y postgresql`"

// Start initializes and starts a new cluster. Stop it with Stop.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	bin, err := findBinDir()
	if err != nil {
		return nil, err
	}
	c := &Cluster{binDir: bin, logf: logf, superPW: randomHex(16), appPW: randomHex(16), exited: make(chan struct{})}
	if os.Geteuid() == 0 {
		cred, err := postgresCredential()
		if err != nil {
			return nil, err
		}
		c.runAs = cred
	}
	c.dir, err = os.MkdirTemp("", "dbalproxy-pg-")
	if err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			c.Stop()
		}
	}()
	if c.runAs != nil {
		if err := os.Chown(c.dir, int(c.runAs.Uid), int(c.runAs.Gid)); err != nil {
			return nil, fmt.Errorf("testenv: %w", err)
		}
	}
	pwFile := filepath.Join(c.dir, "pwfile")
	if err := os.WriteFile(pwFile, []byte(c.superPW+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	if c.runAs != nil {
		_ = os.Chown(pwFile, int(c.runAs.Uid), int(c.runAs.Gid))
	}
	data := filepath.Join(c.dir, "data")
	start := time.Now()
	out, err := c.command(ctx, "initdb", "-D", data, "--auth=scram-sha-256", "--username=postgres",
		"--pwfile="+pwFile, "--no-sync", "--encoding=UTF8", "--locale=C").CombinedOutput()
	_ = os.Remove(pwFile)
	if err != nil {
		return nil, fmt.Errorf("testenv: initdb failed: %v\n%s", err, out)
	}
	if err := c.writeConfig(data, opts); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		c.port = opts.Port
		if c.port == 0 {
			if c.port, err = freePort(); err != nil {
				return nil, err
			}
		}
		err = c.startServer(ctx, data)
		if err == nil {
			break
		}
		if opts.Port != 0 || attempt >= 2 {
			return nil, err
		}
		logf("testenv: retrying on another port: %v", err)
		c.exited = make(chan struct{})
	}
	if err := c.createAppUser(ctx); err != nil {
		return nil, err
	}
	ok = true
	logf("testenv: PostgreSQL %s on 127.0.0.1:%d ready in %s", c.version, c.port, time.Since(start).Round(time.Millisecond))
	return c, nil
}

func (c *Cluster) writeConfig(data string, opts Options) error {
	maxConns := opts.MaxConnections
	if maxConns <= 0 {
		maxConns = 400
	}
	settings := map[string]string{
		"listen_addresses":        "'127.0.0.1'",
		"unix_socket_directories": "'" + c.dir + "'",
		"fsync":                   "off",
		"synchronous_commit":      "off",
		"full_page_writes":        "off",
		"max_connections":         strconv.Itoa(maxConns),
		"shared_buffers":          "'128MB'",
		"logging_collector":       "off",
		"log_min_messages":        "warning",
		"password_encryption":     "'scram-sha-256'",
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("\n# testenv\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = %s\n", k, settings[k])
	}
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString(b.String()); err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	hba := "local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n"
	return os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte(hba), 0o600)
}

func (c *Cluster) startServer(ctx context.Context, data string) error {
	logPath := filepath.Join(c.dir, "server.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	cmd := exec.Command(filepath.Join(c.binDir, "postgres"), "-D", data, "-p", strconv.Itoa(c.port))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGQUIT, Setpgid: true, Credential: c.runAs}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("testenv: starting postgres: %w", err)
	}
	c.cmd = cmd
	exited := c.exited
	go func() { _ = cmd.Wait(); logFile.Close(); close(exited) }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := pgconn.Connect(cctx, c.SuperURL("postgres"))
		cancel()
		if err == nil {
			res := conn.ExecParams(ctx, "SHOW server_version", nil, nil, nil, nil).Read()
			conn.Close(ctx)
			if res.Err == nil && len(res.Rows) == 1 {
				v, _, _ := strings.Cut(string(res.Rows[0][0]), " ")
				c.version = v
			}
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("testenv: postgres exited during startup:\n%s", tail(logPath, 20))
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("testenv: postgres did not accept connections within 30s: %v\n%s", err, tail(logPath, 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) createAppUser(ctx context.Context) error {
	return c.superExec(ctx, "postgres", fmt.Sprintf("CREATE ROLE %s LOGIN CREATEDB PASSWORD '%s'", AppUserName, c.appPW))
}

// superExec runs sql as the superuser in database db.
func (c *Cluster) superExec(ctx context.Context, db, sql string) error {
	conn, err := pgconn.Connect(ctx, c.SuperURL(db))
	if err != nil {
		return fmt.Errorf("testenv: connect: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	return nil
}

// command builds a command for a server binary, run as the postgres OS user
// when we are root.
func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, name), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.runAs}
	cmd.Dir = c.dir
	return cmd
}

// Stop shuts the server down (fast shutdown, then SIGKILL after 10s) and
// removes its directory. It is idempotent.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		if c.cmd != nil && c.cmd.Process != nil {
			_ = c.cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-c.exited:
			case <-time.After(10 * time.Second):
				_ = c.cmd.Process.Kill()
				<-c.exited
			}
		}
		if c.dir != "" {
			c.stopErr = os.RemoveAll(c.dir)
		}
	})
	return c.stopErr
}

// Host is the server's address, always loopback.
func (c *Cluster) Host() string { return "127.0.0.1" }

// Port is the server's TCP port.
func (c *Cluster) Port() int { return c.port }

// Version is the server's version, e.g. "15.18".
func (c *Cluster) Version() string { return c.version }

// BinDir is the directory of the server binaries; psql and pgbench of the
// same version are there too.
func (c *Cluster) BinDir() string { return c.binDir }

// SuperURL is a URL for the superuser "postgres" in database db.
func (c *Cluster) SuperURL(db string) string { return c.url("postgres", c.superPW, db) }

// AppURL is a URL for the non-superuser app login in database db.
func (c *Cluster) AppURL(db string) string { return c.url(AppUserName, c.appPW, db) }

// AppUser is the app login's name.
func (c *Cluster) AppUser() string { return AppUserName }

// AppPassword is the app login's password.
func (c *Cluster) AppPassword() string { return c.appPW }

func (c *Cluster) url(user, pw, db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, pw), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// CreateDatabase creates database name owned by the app login. name must be
// a plain lower-case identifier.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	if !identRE.MatchString(name) {
		return fmt.Errorf("testenv: %q is not a plain identifier", name)
	}
	return c.superExec(ctx, "postgres", fmt.Sprintf("CREATE DATABASE %s OWNER %s", name, AppUserName))
}

// DropDatabase drops database name, terminating its sessions first.
func (c *Cluster) DropDatabase(ctx context.Context, name string) error {
	if !identRE.MatchString(name) {
		return fmt.Errorf("testenv: %q is not a plain identifier", name)
	}
	return c.superExec(ctx, "postgres", fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name))
}

//go:embed demo.sql
var DemoSQL string

// LoadDemo creates the demo schema and rows in the database at url.
func LoadDemo(ctx context.Context, url string) error {
	conn, err := pgconn.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("testenv: connect: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, DemoSQL).ReadAll(); err != nil {
		return fmt.Errorf("testenv: loading the demo schema: %w", err)
	}
	return nil
}

func findBinDir() (string, error) {
	if d := os.Getenv("DBALPROXY_PG_BIN"); d != "" {
		if isFile(filepath.Join(d, "postgres")) && isFile(filepath.Join(d, "initdb")) {
			return d, nil
		}
		return "", fmt.Errorf("testenv: DBALPROXY_PG_BIN=%s has no postgres and initdb", d)
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			d := filepath.Dir(r)
			if isFile(filepath.Join(d, "postgres")) {
				return d, nil
			}
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if isFile(filepath.Join(d, "postgres")) && isFile(filepath.Join(d, "initdb")) {
			return d, nil
		}
	}
	return "", errors.New("testenv: no PostgreSQL server binaries (initdb, postgres) found; " + installHint)
}

func versionOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func postgresCredential() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, errors.New("testenv: running as root needs an OS user \"postgres\" to run the server (initdb refuses root); " + installHint)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("testenv: finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}
