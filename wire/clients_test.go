package wire_test

// Real client programs through the proxy: psql (compared with the same
// script run straight against PostgreSQL) and pgbench in each of its query
// modes.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/testenv"
)

// clientTarget is where a libpq program connects.
type clientTarget struct {
	host, port, user, password, db string
}

func (p *proxy) proxyTarget(login string) clientTarget {
	host, port, _ := net.SplitHostPort(p.Addr)
	return clientTarget{host: host, port: port, user: login, password: login, db: p.DB}
}

func (p *proxy) directTarget() clientTarget {
	return clientTarget{host: p.Cluster.Host(), port: fmt.Sprint(p.Cluster.Port()), user: testenv.AppUserName, password: p.Cluster.AppPassword(), db: p.DB}
}

// runClient runs a program of the server's bin directory against target in
// dir, with the connection in PG* variables (and no other PG* variable of
// the environment), and returns its stdout, stderr and error.
func runClient(t *testing.T, p *proxy, target clientTarget, dir, program string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(p.Cluster.BinDir(), program), args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") && !strings.HasPrefix(kv, "LC_") && !strings.HasPrefix(kv, "LANG") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "PGHOST="+target.host, "PGPORT="+target.port, "PGUSER="+target.user, "PGPASSWORD="+target.password,
		"PGDATABASE="+target.db, "PGSSLMODE=disable", "PGCLIENTENCODING=UTF8", "PGCONNECT_TIMEOUT=60", "LC_ALL=C.UTF-8")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

const psqlScript = `\pset pager off
CREATE TABLE psql_t (id int PRIMARY KEY, name text NOT NULL, amount numeric(10,2), created date);
INSERT INTO psql_t VALUES (1, 'alpha', 1.50, '2024-01-01'), (2, 'beta', NULL, '2024-02-29'), (3, 'gämma ☃', -3.25, NULL);
\copy psql_t FROM 'in.csv' WITH (FORMAT csv)
SELECT * FROM psql_t ORDER BY id;
\copy (SELECT id, name FROM psql_t ORDER BY id) TO STDOUT
\copy psql_t TO 'out.csv' WITH (FORMAT csv, HEADER)
SELECT count(*) AS n, sum(amount) AS total FROM psql_t \gset
\echo count :n total :total
\d psql_t
\dt psql_*
\x on
SELECT * FROM psql_t WHERE id = 1;
\x off
SELECT 1 AS a, 'x'::text AS b \gdesc
BEGIN;
UPDATE psql_t SET amount = 0;
ROLLBACK;
SELECT sum(amount) FROM psql_t;
PREPARE by_id(int) AS SELECT name FROM psql_t WHERE id = $1;
EXECUTE by_id(3);
\set ON_ERROR_STOP 0
SELECT 1/0;
INSERT INTO psql_t VALUES (1, 'dup', 0, NULL);
SELEC 1;
\set ON_ERROR_STOP 1
SELECT 'still alive' AS status;
COPY (SELECT * FROM psql_t ORDER BY id) TO STDOUT WITH (FORMAT csv);
SELECT 1 AS one \; SELECT 2 AS two;
DO $$BEGIN RAISE NOTICE 'notice from psql %', 7; END$$;
DROP TABLE psql_t;
`

const psqlInput = "10,csv one,10.00,2023-12-31\n11,\"quoted, comma\",,\n12,ünïcødé 😀,0.01,1999-01-01\n"

// TestClientPsql runs one psql script straight against PostgreSQL and
// through the proxy: the output, the errors and the file written by \copy
// must be the same.
func TestClientPsql(t *testing.T) {
	p := startProxy(t)
	run := func(target clientTarget) (out, errs, copied string) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "script.sql"), []byte(psqlScript), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "in.csv"), []byte(psqlInput), 0o644); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, err := runClient(t, p, target, dir, "psql", "-X", "-v", "ON_ERROR_STOP=1", "-f", "script.sql")
		if err != nil {
			t.Fatalf("psql (%s:%s): %v\nstdout:\n%s\nstderr:\n%s", target.host, target.port, err, stdout, stderr)
		}
		b, err := os.ReadFile(filepath.Join(dir, "out.csv"))
		if err != nil {
			t.Fatal(err)
		}
		return stdout, stderr, string(b)
	}
	dOut, dErr, dCSV := run(p.directTarget())
	xOut, xErr, xCSV := run(p.proxyTarget("alice"))
	compareTranscripts(t, dOut, xOut)
	compareTranscripts(t, dErr, xErr)
	compareTranscripts(t, dCSV, xCSV)
	for _, want := range []string{"count 6 total 8.26", "still alive", "gämma ☃", "Table \"public.psql_t\"", "\"psql_t_pkey\" PRIMARY KEY, btree (id)", "12,ünïcødé 😀,0.01,1999-01-01"} {
		if !strings.Contains(xOut, want) {
			t.Errorf("psql output through the proxy lacks %q:\n%s", want, xOut)
		}
	}
	for _, want := range []string{"ERROR:  division by zero", "ERROR:  duplicate key value violates unique constraint \"psql_t_pkey\"", "ERROR:  syntax error at or near \"SELEC\"", "NOTICE:  notice from psql 7"} {
		if !strings.Contains(xErr, want) {
			t.Errorf("psql errors through the proxy lack %q:\n%s", want, xErr)
		}
	}
	if !strings.HasPrefix(xCSV, "id,name,amount,created\n1,alpha,1.50,2024-01-01\n") || strings.Count(xCSV, "\n") != 7 {
		t.Errorf("\\copy out through the proxy:\n%s", xCSV)
	}
}

// TestClientPgbench initializes pgbench through the proxy and runs its
// TPC-B-like and select-only scripts in each query mode.
func TestClientPgbench(t *testing.T) {
	p := startProxy(t)
	target := p.proxyTarget("bob")
	dir := t.TempDir()
	stdout, stderr, err := runClient(t, p, target, dir, "pgbench", "-i", "-s", "1")
	if err != nil || !strings.Contains(stderr, "done in") {
		t.Fatalf("pgbench -i: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	tpcb := 0
	for _, selectOnly := range []bool{false, true} {
		for _, mode := range []string{"simple", "extended", "prepared"} {
			name := mode
			args := []string{"-n", "-t", "200", "-c", "4", "-M", mode}
			if selectOnly {
				name += "/select-only"
				args = append(args, "-S")
			} else {
				tpcb += 800
			}
			t.Run(name, func(t *testing.T) {
				stdout, stderr, err := runClient(t, p, target, dir, "pgbench", args...)
				if err != nil {
					t.Fatalf("pgbench %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout, stderr)
				}
				for _, want := range []string{"number of failed transactions: 0 ", "number of transactions actually processed: 800/800"} {
					if !strings.Contains(stdout, want) {
						t.Errorf("pgbench %s: output lacks %q\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), want, stdout, stderr)
					}
				}
			})
		}
	}
	// Every TPC-B transaction left its history row.
	conn := openConn(t, p.DirectDB, nil)
	var history, accounts int
	if err := conn.QueryRow(ctxT(t, 10*time.Second), "SELECT (SELECT count(*) FROM pgbench_history), (SELECT count(*) FROM pgbench_accounts)").Scan(&history, &accounts); err != nil {
		t.Fatal(err)
	}
	if history != tpcb || accounts != 100000 {
		t.Errorf("pgbench_history has %d rows (want %d), pgbench_accounts %d (want 100000)", history, tpcb, accounts)
	}
}
