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
