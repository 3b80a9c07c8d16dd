package bridge_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// nodeModules returns a directory holding the pinned npm packages of
// testdata/<name> and its scripts: testdata/<name> itself when
// scripts/test.sh (or a user) ran `npm ci` there, else a temporary copy in
// which this runs `npm ci` once per test binary. It skips the test only
// when node or npm is not installed.
func nodeModules(t *testing.T, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("short: the Node.js client tests install npm packages")
	}
	nodeMu.Lock()
	in := nodeInstalls[name]
	if in == nil {
		in = &nodeInstall{}
		nodeInstalls[name] = in
	}
	nodeMu.Unlock()
	in.once.Do(func() { in.dir, in.skip, in.err = installNode(name) })
	if in.skip != "" {
		t.Skip(in.skip)
	}
	if in.err != nil {
		t.Fatal(in.err)
	}
	return in.dir
}

func installNode(name string) (dir, skip string, err error) {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", tool + " is not installed: the real-client tests of the Neon driver and Prisma need Node.js 20 or newer and npm", nil
		}
	}
	src, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		return "", "", err
	}
	if installedLock(src) {
		return src, "", nil
	}
	dir, err = os.MkdirTemp("", "dbalproxy-bridge-"+name+"-")
	if err != nil {
		return "", "", err
	}
	nodeMu.Lock()
	nodeTmp = append(nodeTmp, dir)
	nodeMu.Unlock()
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		return "", "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	install := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
	install.Dir = dir
	if out, err := install.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("npm ci in a copy of testdata/%s: %v\n%s", name, err, out)
	}
	return dir, "", nil
}

// installedLock reports whether npm ci has installed dir's lockfile:
// node_modules/.package-lock.json then lists the same packages.
func installedLock(dir string) bool {
	want, err1 := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	got, err2 := os.ReadFile(filepath.Join(dir, "node_modules", ".package-lock.json"))
	if err1 != nil || err2 != nil {
		return false
	}
	for _, line := range strings.Split(string(want), "\n") {
		if strings.Contains(line, `"version"`) && !strings.Contains(string(got), strings.TrimSpace(line)) {
			return false
		}
	}
	return true
}

type nodeInstall struct {
	once      sync.Once
	dir, skip string
	err       error
}

var (
	nodeMu       sync.Mutex
	nodeInstalls = map[string]*nodeInstall{}
	nodeTmp      []string // temporary installs, removed by TestMain
)

// runNode runs a script of testdata/node with the bridge's address and
// the database in its environment, and fails unless it prints "ok".
func runNode(t *testing.T, p *proxy, dir, script string, args ...string) {
	t.Helper()
	runNodeEnv(t, p, dir, nil, script, args...)
}

// runNodeEnv is runNode with more environment variables.
func runNodeEnv(t *testing.T, p *proxy, dir string, env []string, script string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{script}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "BRIDGE_ADDR="+p.WSAddr, "DB="+p.DB), env...)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), "ok") {
		t.Fatalf("node %s %s: %v\n%s", script, strings.Join(args, " "), err, out)
	}
}

// TestNeonDriver runs the Neon serverless driver (the npm package, pinned
// in testdata/node/package-lock.json) against the bridge: Pool and Client
// over WebSocket with and without pipelined login, a transaction, a
// denial with its decision id, a row filter, a policy timeout, a cancel,
// and neon() over HTTP with batches.
func TestNeonDriver(t *testing.T) {
	dir := nodeModules(t, "node")
	p := startProxy(t)
	runNode(t, p, dir, "neon.mjs")
	// The sessions were the wire server's: their statements were audited,
	// with the WebSocket or HTTP client's address.
	var updated, denied bool
	for _, r := range p.Audit.Records() {
		if !strings.HasPrefix(r.ClientAddr, "127.0.0.1:") {
			t.Fatalf("audit record with client_addr %q: %+v", r.ClientAddr, r)
		}
		if r.Command == "UPDATE" && r.User == "carol" && r.Success {
			updated = true
		}
		if r.Decision == "deny" && r.User == "alice" && r.DecisionID != "" {
			denied = true
		}
	}
	if !updated || !denied {
		t.Fatalf("audit records: carol's update %v, alice's denial %v", updated, denied)
	}
}

// TestPrismaNeon runs Prisma (pinned in testdata/prisma/package-lock.json)
// with @prisma/adapter-neon against the bridge: over WebSocket a row
// filter, a denial with its decision id, an interactive transaction that
// rolls back and a batch transaction; over HTTP a query and a denial.
func TestPrismaNeon(t *testing.T) {
	dir := nodeModules(t, "prisma")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// prisma generate does not run the schema engine, but the CLI fetches
	// it from binaries.prisma.sh first unless told where one is: a stub,
	// so that generating needs only the npm registry.
	stub := filepath.Join(t.TempDir(), "schema-engine")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	gen := exec.CommandContext(ctx, filepath.Join(dir, "node_modules", ".bin", "prisma"), "generate")
	gen.Dir = dir
	gen.Env = append(os.Environ(), "PRISMA_SCHEMA_ENGINE_BINARY="+stub, "PRISMA_HIDE_UPDATE_MESSAGE=1", "CHECKPOINT_DISABLE=1")
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("prisma generate: %v\n%s", err, out)
	}
	p := startProxy(t)
	runNode(t, p, dir, "prisma.mjs")
}
