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
// testdata/node and its scripts: testdata/node itself when
// scripts/test.sh (or a user) ran `npm ci` there, else a temporary copy in
// which this runs `npm ci`. It skips the test only when node or npm is not
// installed.
func nodeModules(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("short: the Node.js client tests install npm packages")
	}
	nodeOnce.Do(func() {
		for _, tool := range []string{"node", "npm"} {
			if _, err := exec.LookPath(tool); err != nil {
				nodeSkip = tool + " is not installed: the real-client tests of the Neon driver need Node.js 20 or newer and npm"
				return
			}
		}
		src, err := filepath.Abs(filepath.Join("testdata", "node"))
		if err != nil {
			nodeErr = err
			return
		}
		if installedLock(src) {
			nodeDir = src
			return
		}
		dir, err := os.MkdirTemp("", "dbalproxy-bridge-node-")
		if err != nil {
			nodeErr = err
			return
		}
		nodeTmp = dir
		entries, err := os.ReadDir(src)
		if err != nil {
			nodeErr = err
			return
		}
		for _, e := range entries {
			if e.IsDir() {
				continue
			}
			b, err := os.ReadFile(filepath.Join(src, e.Name()))
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644)
			}
			if err != nil {
				nodeErr = err
				return
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		install := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
		install.Dir = dir
		if out, err := install.CombinedOutput(); err != nil {
			nodeErr = fmt.Errorf("npm ci in a copy of testdata/node: %v\n%s", err, out)
			return
		}
		nodeDir = dir
	})
	if nodeSkip != "" {
		t.Skip(nodeSkip)
	}
	if nodeErr != nil {
		t.Fatal(nodeErr)
	}
	return nodeDir
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

var (
	nodeOnce                   sync.Once
	nodeDir, nodeTmp, nodeSkip string
	nodeErr                    error
)

// runNode runs a script of testdata/node with the bridge's address and
// the database in its environment, and fails unless it prints "ok".
func runNode(t *testing.T, p *proxy, script string, args ...string) {
	t.Helper()
	dir := nodeModules(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{script}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "BRIDGE_ADDR="+p.WSAddr, "DB="+p.DB)
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
	p := startProxy(t)
	runNode(t, p, "neon.mjs")
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
