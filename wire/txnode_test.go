package wire_test

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

// nodePGScript runs named queries (node-postgres prepares each name once
// per connection) from several clients over many transactions.
const nodePGScript = `
const { Client } = require('pg');
async function one(i) {
  const c = new Client({ connectionString: process.env.DATABASE_URL });
  await c.connect();
  for (let j = 0; j < 20; j++) {
    if (j % 5 === 0) await c.query('BEGIN');
    const r = await c.query({ name: 'twice', text: 'SELECT $1::int * 2 AS v', values: [j] });
    if (r.rows[0].v !== 2 * j) throw new Error('twice: ' + JSON.stringify(r.rows));
    const s = await c.query({ name: 'mine', text: 'SELECT $1::text || $2::text AS v', values: ['c', String(i)] });
    if (s.rows[0].v !== 'c' + i) throw new Error('mine: ' + JSON.stringify(s.rows));
    if (j % 5 === 4) await c.query('COMMIT');
  }
  await c.end();
}
Promise.all([...Array(8).keys()].map(one)).then(() => console.log('ok'), e => { console.error(e.message); process.exit(1); });
`

// nodePG returns a directory in which node can require('pg'): node-postgres
// 8 installed with npm once per test binary. It skips the test when node,
// npm or the npm registry is not there.
func nodePG(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("short")
	}
	nodeOnce.Do(func() {
		if _, err := exec.LookPath("node"); err != nil {
			nodeSkip = "node is not installed"
			return
		}
		if _, err := exec.LookPath("npm"); err != nil {
			nodeSkip = "npm is not installed"
			return
		}
		dir, err := os.MkdirTemp("", "dbalproxy-node-")
		if err != nil {
			nodeSkip = err.Error()
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		install := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund", "--silent", "pg@8")
		install.Dir = dir
		if out, err := install.CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			nodeSkip = fmt.Sprintf("npm install pg failed (no registry?): %v\n%s", err, out)
			return
		}
		nodeDir = dir
	})
	if nodeSkip != "" {
		t.Skip(nodeSkip)
	}
	return nodeDir
}

var (
	nodeOnce          sync.Once
	nodeDir, nodeSkip string
)

// TestTxNodePostgres runs node-postgres named queries through transaction
// pooling. It is skipped when node, npm or the npm registry is not there.
func TestTxNodePostgres(t *testing.T) {
	dir := filepath.Join(nodePG(t), t.Name())
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := os.WriteFile(filepath.Join(dir, "run.js"), []byte(nodePGScript), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, withTxPooling(2))
	run := exec.CommandContext(ctx, "node", "run.js")
	run.Dir = dir
	run.Env = append(os.Environ(), "DATABASE_URL="+p.URL("alice"))
	out, err := run.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("node-postgres through transaction pooling: %v\n%s", err, out)
	}
	if st := p.Pool.Stats(); st.Dials > 2 {
		t.Fatalf("pool stats %+v", st)
	}
}
