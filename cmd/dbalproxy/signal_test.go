//go:build unix

package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/testenv"
	"github.com/jackc/pgx/v5"
)

// TestBinarySignals runs the real binary: SIGHUP reloads the file (a login
// added) without dropping an open session, SIGTERM drains and exits 0.
func TestBinarySignals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	c := testenv.Shared(t)
	db := testenv.NewDatabase(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "dbalproxy")
	build := osexec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	policies, _ := filepath.Abs("../../policies")
	cfgPath := filepath.Join(dir, "dbalproxy.yaml")
	port := freePort(t)
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
backend: {url: %q}
policy: {dir: %q, watch: false}
audit: {output: off}
log: {level: info}
logins:
  - {name: dave, password: dave, role: supergod}
`, port, c.AppURL(db), policies)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := osexec.Command(bin, "serve", "--config", cfgPath)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			t.Log(sc.Text())
			select {
			case lines <- sc.Text():
			default:
			}
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	waitLine := func(re string) {
		t.Helper()
		r := regexp.MustCompile(re)
		timeout := time.After(20 * time.Second)
		for {
			select {
			case l := <-lines:
				if r.MatchString(l) {
					return
				}
			case <-timeout:
				t.Fatalf("no log line matching %q", re)
			}
		}
	}
	waitLine(`dbalproxy ready`)
	url := func(login string) string {
		return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", login, login, port, db)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dave, err := pgx.Connect(ctx, url("dave"))
	if err != nil {
		t.Fatal(err)
	}
	defer dave.Close(ctx)
	if _, err := pgx.Connect(ctx, url("erin")); sqlstate(err) != "28P01" {
		t.Fatalf("erin before the reload: %v", err)
	}
	cfg = strings.Replace(cfg, "role: supergod}\n", "role: supergod}\n  - {name: erin, password: erin, role: admin}\n", 1)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLine(`configuration reloaded`)
	erin, err := pgx.Connect(ctx, url("erin"))
	if err != nil {
		t.Fatalf("erin after the reload: %v", err)
	}
	erin.Close(ctx)
	if _, err := dave.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("session opened before the reload: %v", err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if _, err := dave.Exec(ctx, "SELECT 1"); sqlstate(err) != "57P01" {
		t.Fatalf("idle session after SIGTERM: %v, want 57P01", err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// binaryProxy is the real binary serving a configuration, for tests that
// send it signals.
type binaryProxy struct {
	cmd    *osexec.Cmd
	lines  chan string
	exited chan error
}

// startBinary builds the binary and runs `serve --config` with cfg (a YAML
// text), returning once it logged that it is ready.
func startBinary(t *testing.T, cfg string) *binaryProxy {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "dbalproxy")
	if out, err := osexec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cfgPath := filepath.Join(dir, "dbalproxy.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	bp := &binaryProxy{cmd: osexec.Command(bin, "serve", "--config", cfgPath), lines: make(chan string, 100), exited: make(chan error, 1)}
	stderr, err := bp.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := bp.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			t.Log(sc.Text())
			select {
			case bp.lines <- sc.Text():
			default:
			}
		}
		bp.exited <- bp.cmd.Wait()
	}()
	t.Cleanup(func() { _ = bp.cmd.Process.Kill() })
	bp.waitLine(t, `dbalproxy ready`)
	return bp
}

func (bp *binaryProxy) waitLine(t *testing.T, re string) {
	t.Helper()
	r := regexp.MustCompile(re)
	timeout := time.After(20 * time.Second)
	for {
		select {
		case l := <-bp.lines:
			if r.MatchString(l) {
				return
			}
		case <-timeout:
			t.Fatalf("no log line matching %q", re)
		}
	}
}

// TestBinaryAuditRotation is logrotate without copytruncate: after
// `mv audit.jsonl audit.jsonl.1; kill -HUP`, new records go to a new
// audit.jsonl and the moved file keeps the old ones.
func TestBinaryAuditRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	c := testenv.Shared(t)
	db := testenv.NewDatabase(t)
	policies, _ := filepath.Abs("../../policies")
	auditPath := filepath.Join(t.TempDir(), "audit.jsonl")
	port := freePort(t)
	bp := startBinary(t, fmt.Sprintf(`listen: 127.0.0.1:%d
backend: {url: %q}
policy: {dir: %q, watch: false}
audit: {output: %q}
logins:
  - {name: dave, password: dave, role: supergod}
`, port, c.AppURL(db), policies, auditPath))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://dave:dave@127.0.0.1:%d/%s?sslmode=disable", port, db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	waitFor := func(path, text string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			data, _ := os.ReadFile(path)
			if strings.Contains(string(data), text) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s has no %q:\n%s", path, text, data)
			}
		}
	}
	if _, err := conn.Exec(ctx, "SELECT 1 AS before_rotation"); err != nil {
		t.Fatal(err)
	}
	waitFor(auditPath, "before_rotation")
	if err := os.Rename(auditPath, auditPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := bp.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	bp.waitLine(t, `configuration reloaded`)
	if _, err := conn.Exec(ctx, "SELECT 1 AS after_rotation"); err != nil {
		t.Fatal(err)
	}
	waitFor(auditPath, "after_rotation")
	old, _ := os.ReadFile(auditPath + ".1")
	if strings.Contains(string(old), "after_rotation") {
		t.Errorf("the moved file got a record after SIGHUP:\n%s", old)
	}
	if fi, err := os.Stat(auditPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("new audit file: %v %v", fi, err)
	}
}
