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
	// Settings are extra postgresql.conf settings, written as
	// "name = value" after the defaults (so they override them); quote
	// values that need it, e.g. "'all'".
	Settings map[string]string
}

// Cluster is a running throwaway PostgreSQL server. Its methods are safe
// for concurrent use.
type Cluster struct {
	dir     string               // temporary directory: data/, server.log, socket
	binDir  string               // directory of initdb, postgres, psql, pgbench
	port    int                  // TCP port on 127.0.0.1
	version string               // server_version without the distribution suffix
	superPW string               // password of "postgres"
	appPW   string               // password of AppUserName
	logf    func(string, ...any) // never nil
	runAs   *syscall.Credential  // the postgres OS user when we are root, else nil

	proc     *exec.Cmd     // the postmaster; nil until it accepted a connection
	exited   chan struct{} // closed when proc has exited
	stopOnce sync.Once
	stopErr  error
}

// AppUserName is the non-superuser login the proxy uses as its backend role.
const AppUserName = "dbalproxy_backend"

// debianPGDir is where Debian's postgresql-NN packages put their binaries.
const debianPGDir = "/usr/lib/postgresql"

// installHint is what to run when no server binaries are found.
const installHint = "install them with `apt-get update && apt-get install -y postgresql`"

// Start initializes a new cluster in a temporary directory, starts its
// server and waits until it accepts connections (at most 30 s). The caller
// must call Stop, which also removes the directory. On failure nothing is
// left behind, and the error carries the tail of the server log.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	begin := time.Now()
	bin, err := findBinDir()
	if err != nil {
		return nil, err
	}
	c := &Cluster{binDir: bin, logf: logf}
	if c.superPW, err = randomHex(16); err != nil {
		return nil, err
	}
	if c.appPW, err = randomHex(16); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		if c.runAs, err = postgresCredential(); err != nil {
			return nil, err
		}
	}
	c.dir, err = os.MkdirTemp("", "dbalproxy-pg-")
	if err != nil {
		return nil, fmt.Errorf("testenv: creating the cluster directory: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = c.Stop()
		}
	}()
	logf("testenv: initdb in %s (binaries in %s)", c.dir, bin)
	if c.runAs != nil {
		if err := c.prepareForPostgresUser(); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(c.dir, "data")
	if err := c.initdb(ctx, data); err != nil {
		return nil, err
	}
	if err := c.writeConfig(data, opts); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
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
		// A free port can be taken between freePort and the server's bind.
		if opts.Port != 0 || attempt == 3 || ctx.Err() != nil {
			return nil, err
		}
		logf("testenv: retrying on another port: %v", err)
	}
	if err := c.createAppUser(ctx); err != nil {
		return nil, err
	}
	ok = true
	logf("testenv: PostgreSQL %s on 127.0.0.1:%d ready in %s", c.version, c.port, time.Since(begin).Round(time.Millisecond))
	return c, nil
}

// prepareForPostgresUser hands the cluster directory to the postgres OS user
// and checks that the user can reach it.
func (c *Cluster) prepareForPostgresUser() error {
	if err := os.Chown(c.dir, int(c.runAs.Uid), int(c.runAs.Gid)); err != nil {
		return fmt.Errorf("testenv: handing %s to the postgres OS user: %w", c.dir, err)
	}
	for d := filepath.Dir(c.dir); ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("testenv: checking that the postgres OS user can reach the cluster directory: %w", err)
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("testenv: the postgres OS user cannot reach %s (%s is not searchable by others); set TMPDIR to a directory it can reach", c.dir, d)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// initdb creates the data directory with the superuser "postgres".
func (c *Cluster) initdb(ctx context.Context, data string) error {
	pwFile := filepath.Join(c.dir, "pwfile")
	if err := os.WriteFile(pwFile, []byte(c.superPW+"\n"), 0o600); err != nil {
		return fmt.Errorf("testenv: writing the password file: %w", err)
	}
	defer os.Remove(pwFile)
	if c.runAs != nil {
		if err := os.Chown(pwFile, int(c.runAs.Uid), int(c.runAs.Gid)); err != nil {
			return fmt.Errorf("testenv: handing the password file to the postgres OS user: %w", err)
		}
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, "initdb"), "-D", data,
		"--auth=scram-sha-256", "--username=postgres", "--pwfile="+pwFile,
		"--no-sync", "--encoding=UTF8", "--locale=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.runAs}
	cmd.Dir = c.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("testenv: initdb: %w\n%s", err, out)
	}
	c.logf("testenv: initdb took %s", time.Since(start).Round(time.Millisecond))
	return nil
}

// writeConfig appends the test settings to postgresql.conf and replaces
// pg_hba.conf with SCRAM-only rules for the socket and TCP loopback.
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
		return fmt.Errorf("testenv: opening postgresql.conf: %w", err)
	}
	_, err = f.WriteString(b.String())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("testenv: writing postgresql.conf: %w", err)
	}
	// initdb made pg_hba.conf as the postgres OS user; rewriting it in
	// place keeps its owner and mode.
	hba := "local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n"
	if err := os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		return fmt.Errorf("testenv: writing pg_hba.conf: %w", err)
	}
	return nil
}

// startServer starts the postmaster on c.port and waits until it accepts
// a connection. On failure the process is gone when it returns.
func (c *Cluster) startServer(ctx context.Context, data string) error {
	logPath := filepath.Join(c.dir, "server.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("testenv: creating the server log: %w", err)
	}
	// The postmaster is started directly, not through pg_ctl, so that this
	// process owns it: Pdeathsig makes the kernel send SIGQUIT (immediate
	// shutdown) if this process dies without calling Stop, and Setpgid keeps
	// a terminal's ^C away from it so that Stop decides how it ends.
	cmd := exec.Command(filepath.Join(c.binDir, "postgres"), "-D", data, "-p", strconv.Itoa(c.port))
	cmd.Dir = c.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGQUIT, Setpgid: true, Credential: c.runAs}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("testenv: starting postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logFile.Close(); close(exited) }()
	fail := func(format string, args ...any) error {
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf(format+"\n--- tail of %s ---\n%s", append(args, logPath, tail(logPath, 20))...)
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgconn.Connect(cctx, c.SuperURL("postgres"))
		cancel()
		if err == nil {
			v := conn.ParameterStatus("server_version")
			conn.Close(context.Background())
			c.version, _, _ = strings.Cut(v, " ")
			c.proc, c.exited = cmd, exited
			return nil
		}
		select {
		case <-exited:
			return fail("testenv: postgres exited during startup")
		case <-ctx.Done():
			return fail("testenv: waiting for postgres: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fail("testenv: postgres did not accept connections within 30s: %w", err)
		}
	}
}

// createAppUser creates the non-superuser login. The password is hex, so it
// needs no escaping; password_encryption makes the server store it as SCRAM.
func (c *Cluster) createAppUser(ctx context.Context) error {
	err := c.superExec(ctx, "postgres", fmt.Sprintf("CREATE ROLE %s LOGIN CREATEDB NOSUPERUSER PASSWORD '%s'", AppUserName, c.appPW))
	if err != nil {
		return fmt.Errorf("testenv: creating the app login: %w", err)
	}
	return nil
}

// superExec runs sql as the superuser in database db. Callers add the
// "testenv:" context.
func (c *Cluster) superExec(ctx context.Context, db, sql string) error {
	conn, err := pgconn.Connect(ctx, c.SuperURL(db))
	if err != nil {
		return fmt.Errorf("connecting as postgres: %w", err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql).ReadAll()
	return err
}

// Stop shuts the server down (fast shutdown: SIGINT, then SIGKILL after
// 10 s) and removes its directory. It is idempotent, and safe to call on a
// Cluster whose Start failed half-way.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		if c.proc != nil {
			_ = c.proc.Process.Signal(syscall.SIGINT)
			select {
			case <-c.exited:
			case <-time.After(10 * time.Second):
				c.logf("testenv: postgres ignored fast shutdown for 10s; killing it")
				_ = c.proc.Process.Kill()
				<-c.exited
			}
		}
		if c.dir != "" {
			if err := os.RemoveAll(c.dir); err != nil {
				c.stopErr = fmt.Errorf("testenv: removing the cluster directory: %w", err)
			}
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

// url builds a postgres:// URL for user on the cluster's TCP port.
func (c *Cluster) url(user, pw, db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, pw), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// identRE matches the database names CreateDatabase and DropDatabase accept.
var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// CreateDatabase creates database name owned by the app login. name must be
// a plain lower-case identifier (letters, digits, underscores).
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	if !identRE.MatchString(name) {
		return fmt.Errorf("testenv: %q is not a plain identifier", name)
	}
	if err := c.superExec(ctx, "postgres", fmt.Sprintf(`CREATE DATABASE "%s" OWNER %s`, name, AppUserName)); err != nil {
		return fmt.Errorf("testenv: creating database %s: %w", name, err)
	}
	return nil
}

// DropDatabase drops database name, terminating its sessions first
// (WITH (FORCE)). A database that does not exist is not an error.
func (c *Cluster) DropDatabase(ctx context.Context, name string) error {
	if !identRE.MatchString(name) {
		return fmt.Errorf("testenv: %q is not a plain identifier", name)
	}
	if err := c.superExec(ctx, "postgres", fmt.Sprintf(`DROP DATABASE IF EXISTS "%s" WITH (FORCE)`, name)); err != nil {
		return fmt.Errorf("testenv: dropping database %s: %w", name, err)
	}
	return nil
}

// DemoSQL creates the demo schema (a page builder's users, pages,
// components, workflows, Lua scripts and packages) and a few rows in each
// table. It is meant for a fresh database; its tables belong to whoever runs it.
//
//go:embed demo.sql
var DemoSQL string

// LoadDemo runs DemoSQL, in the simple protocol, against the database at url.
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

// findBinDir finds the server binaries: $DBALPROXY_PG_BIN, then the
// directory of initdb on PATH (symlinks resolved), then the newest Debian
// version directory.
func findBinDir() (string, error) {
	if d := os.Getenv("DBALPROXY_PG_BIN"); d != "" {
		if isFile(filepath.Join(d, "postgres")) && isFile(filepath.Join(d, "initdb")) {
			return d, nil
		}
		return "", fmt.Errorf("testenv: DBALPROXY_PG_BIN=%s has no initdb and postgres; point it at a PostgreSQL bin directory or unset it and %s", d, installHint)
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			d := filepath.Dir(r)
			if isFile(filepath.Join(d, "postgres")) {
				return d, nil
			}
		}
	}
	dirs, _ := filepath.Glob(debianPGDir + "/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if isFile(filepath.Join(d, "postgres")) && isFile(filepath.Join(d, "initdb")) {
			return d, nil
		}
	}
	return "", errors.New("testenv: no PostgreSQL server binaries (initdb, postgres) found in $DBALPROXY_PG_BIN, beside initdb on PATH or in " + debianPGDir + "/*/bin; " + installHint)
}

// versionOf is the major version of a Debian bin directory such as
// .../15/bin (9.6 counts as 9).
func versionOf(binDir string) float64 {
	n, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return n
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// postgresCredential is the postgres OS user, for running initdb and the
// server when this process is root.
func postgresCredential() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("testenv: running as root needs an OS user \"postgres\" to run the server (initdb refuses root); %s: %w", installHint, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("testenv: uid of the postgres OS user: %w", err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("testenv: gid of the postgres OS user: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("testenv: finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// randomHex returns n random bytes from crypto/rand, hex-encoded.
func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("testenv: generating a password: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// tail returns the last lines of the file at path, or "" if it is unreadable.
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
