package wire_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// limitsRego allows everything but DELETE, with a 200 ms timeout and a
// cap of 3 rows per statement: small limits keep the tests fast.
const limitsRego = `package dbal

default decision := {"allow": true, "reason": "test", "timeout_ms": 200, "max_rows": 3}

decision := {"allow": false, "reason": "no deletes here"} if input.statement.command == "DELETE"
`

// startLimitsProxy starts a proxy deciding with limitsRego.
func startLimitsProxy(t *testing.T, opts ...proxyOption) *proxy {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "t.rego"), []byte(limitsRego), 0o644); err != nil {
		t.Fatal(err)
	}
	return startProxy(t, append([]proxyOption{withPolicy(t, policyEngine(t, dir, decision.ModeStrict), nil)}, opts...)...)
}

// TestPolicyTimeoutHolds: whatever the client does to statement_timeout,
// and however it sends a statement, a statement cannot run much past the
// policy's timeout_ms (200 ms here): each attempt runs pg_sleep(5) and must
// be cancelled with 57014 well before it would end.
func TestPolicyTimeoutHolds(t *testing.T) {
	p := startLimitsProxy(t)
	ctx := ctxT(t, 120*time.Second)
	// bound is generous for a loaded machine, and far below the 5 s sleep.
	const bound = 2500 * time.Millisecond
	expectTimeout := func(t *testing.T, what string, start time.Time, err error) {
		t.Helper()
		el := time.Since(start)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "57014" {
			t.Fatalf("%s: ran %s, got %v; want 57014", what, el, err)
		}
		if el > bound {
			t.Fatalf("%s: cancelled only after %s", what, el)
		}
	}
	connect := func(t *testing.T) *pgconn.PgConn {
		c, err := pgconn.Connect(ctx, p.URL("alice"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	simple := func(c *pgconn.PgConn, sql string) error {
		_, err := c.Exec(ctx, sql).ReadAll()
		return err
	}
	extended := func(c *pgconn.PgConn, sql string) error {
		return c.ExecParams(ctx, sql, nil, nil, nil, nil).Read().Err
	}

	// One string: what the client sets runs after the proxy's own setting.
	// The 30 quick statements give the string a budget (their timeouts
	// summed) far beyond the sleep: only each statement's own timeout
	// stops it.
	fill := strings.Repeat("SELECT 1; ", 30)
	for _, q := range []string{
		"SET LOCAL statement_timeout = 0; " + fill + "SELECT pg_sleep(5)",
		fill + "SELECT set_config('statement_timeout', '0', true); SELECT pg_sleep(5)",
		fill + "SET statement_timeout = 0; SELECT pg_sleep(5); " + fill,
		"SELECT set_config('statement_timeout', '0', false); " + fill + "SELECT pg_sleep(5); DELETE FROM pg_class",
		"SELECT set_config('statement_timeout', '0', true) -- comment\n; " + fill + "SELECT pg_sleep(5) -- comment",
		"SET LOCAL statement_timeout = 0; SELECT pg_sleep(5)",
		"set local STATEMENT_TIMEOUT to default; SELECT pg_sleep(5)",
		"SET statement_timeout = 0; SELECT pg_sleep(5)",
		"SET SESSION statement_timeout = '1h'; SELECT pg_sleep(5)",
		"RESET statement_timeout; SELECT pg_sleep(5)",
		"RESET ALL; SELECT pg_sleep(5)",
		"SELECT set_config('statement_timeout', '0', true); SELECT pg_sleep(5)",
		"SELECT set_config('statement_timeout', '0', false); SELECT pg_sleep(5)",
		"UPDATE pg_settings SET setting = '0' WHERE name = 'statement_timeout'; SELECT pg_sleep(5)",
		"SELECT 1; SET LOCAL statement_timeout = 0; SELECT 2; SELECT pg_sleep(5)",
		"BEGIN; SET LOCAL statement_timeout = 0; SELECT pg_sleep(5); COMMIT",
		"SET LOCAL statement_timeout = 0; SELECT pg_sleep(5); DELETE FROM pg_class",
	} {
		t.Run("string/"+strings.ReplaceAll(q, fill, "…; "), func(t *testing.T) {
			c := connect(t)
			start := time.Now()
			expectTimeout(t, q, start, simple(c, q))
			if err := simple(c, "ROLLBACK"); err != nil {
				t.Fatal(err)
			}
			// The client's own settings, where they outlive the string, are
			// its own: the session goes on.
			if err := simple(c, "SELECT 1"); err != nil {
				t.Fatal(err)
			}
		})
	}

	// Separate messages, in both protocols, in and out of a transaction.
	for _, setter := range []string{
		"SET statement_timeout = 0",
		"SELECT set_config('statement_timeout', '0', false)",
		"SET LOCAL statement_timeout = 0",
		"SELECT set_config('statement_timeout', '0', true)",
	} {
		for _, inTx := range []bool{false, true} {
			for _, proto := range []string{"simple", "extended"} {
				name := setter + "/" + proto
				if inTx {
					name += "/in transaction"
				}
				t.Run("messages/"+name, func(t *testing.T) {
					c := connect(t)
					send := simple
					if proto == "extended" {
						send = extended
					}
					if inTx {
						if err := simple(c, "BEGIN"); err != nil {
							t.Fatal(err)
						}
					}
					if err := send(c, setter); err != nil {
						t.Fatal(err)
					}
					start := time.Now()
					expectTimeout(t, name, start, send(c, "SELECT pg_sleep(5)"))
					if err := simple(c, "ROLLBACK"); err != nil {
						t.Fatal(err)
					}
				})
			}
		}
	}

	// The statements that run before a denied one are timed too.
	t.Run("prefix of a denied statement", func(t *testing.T) {
		c := connect(t)
		start := time.Now()
		expectTimeout(t, "prefix", start, simple(c, "SELECT pg_sleep(5); DELETE FROM pg_class"))
	})

	// A statement prepared with SQL PREPARE and run through the protocol.
	t.Run("protocol Bind of an SQL-level prepared statement", func(t *testing.T) {
		c := connect(t)
		if err := simple(c, "PREPARE slow AS SELECT pg_sleep(5)"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		expectTimeout(t, "Bind of slow", start, c.ExecPrepared(ctx, "slow", nil, nil, nil).Read().Err)
		start = time.Now()
		expectTimeout(t, "EXECUTE slow", start, simple(c, "EXECUTE slow"))
	})

	// Simple queries pipelined behind a BEGIN whose answer has not come yet.
	t.Run("pipelined behind BEGIN", func(t *testing.T) {
		c := connect(t)
		start := time.Now()
		mrr := c.Exec(ctx, "BEGIN")
		_, err := mrr.ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		b := &pgconn.Batch{}
		b.ExecParams("SELECT set_config('statement_timeout', '0', true)", nil, nil, nil, nil)
		b.ExecParams("SELECT pg_sleep(5)", nil, nil, nil, nil)
		_, err = c.ExecBatch(ctx, b).ReadAll()
		expectTimeout(t, "batch", start, err)
		if err := simple(c, "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
	})
}

// TestPolicyTimeoutPipelined: statements sent together (one batch of the
// extended protocol, each under the 200 ms timeout) are each timed from
// when it starts, not from when it was sent: none is cancelled, and one
// past its own timeout is.
func TestPolicyTimeoutPipelined(t *testing.T) {
	p := startLimitsProxy(t)
	ctx := ctxT(t, 60*time.Second)
	c, err := pgconn.Connect(ctx, p.URL("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	b := &pgconn.Batch{}
	for range 4 {
		b.ExecParams("SELECT pg_sleep(0.12)", nil, nil, nil, nil)
	}
	if _, err := c.ExecBatch(ctx, b).ReadAll(); err != nil {
		t.Fatalf("four statements within their timeouts: %v", err)
	}
	b = &pgconn.Batch{}
	b.ExecParams("SELECT pg_sleep(0.12)", nil, nil, nil, nil)
	b.ExecParams("SELECT pg_sleep(5)", nil, nil, nil, nil)
	start := time.Now()
	res, err := c.ExecBatch(ctx, b).ReadAll()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57014" || len(res) != 2 || res[0].Err != nil {
		t.Fatalf("got %d results, %v; want the first and the second timed out", len(res), err)
	}
	if el := time.Since(start); el > 2500*time.Millisecond {
		t.Fatalf("cancelled after %s", el)
	}
	// An SQL-level prepared statement bound through the protocol has the
	// row cap of EXECUTE.
	if _, err := c.Exec(ctx, "PREPARE ten AS SELECT g FROM generate_series(1, 10) g").ReadAll(); err != nil {
		t.Fatal(err)
	}
	r := c.ExecPrepared(ctx, "ten", nil, nil, nil).Read()
	if r.Err != nil || len(r.Rows) != 3 || r.CommandTag.String() != "SELECT 3" {
		t.Fatalf("Bind of an SQL-level statement: %v, %d rows, %q", r.Err, len(r.Rows), r.CommandTag)
	}
}

// TestPolicyTimeoutPipelinedQueries: simple queries sent back to back
// without waiting (BEGIN's answer not yet seen when the next arrives) are
// still timed, and the proxy's own timeout setting does not stay in the
// client's transaction.
func TestPolicyTimeoutPipelinedQueries(t *testing.T) {
	p := startLimitsProxy(t)
	ctx := ctxT(t, 60*time.Second)
	c, err := pgconn.Connect(ctx, p.URL("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	fe := c.Frontend()
	for _, q := range []string{"BEGIN", "SELECT 1", "SHOW statement_timeout", "ROLLBACK"} {
		fe.Send(&pgproto3.Query{String: q})
	}
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var show string
	rfq := 0
	for rfq < 4 {
		m, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		switch m := m.(type) {
		case *pgproto3.ReadyForQuery:
			rfq++
		case *pgproto3.DataRow:
			if rfq == 2 {
				show = string(m.Values[0])
			}
		case *pgproto3.ErrorResponse:
			t.Fatalf("error %s", m.Message)
		}
	}
	if show != "0" {
		t.Fatalf("statement_timeout inside the client's transaction is %q, want its own 0", show)
	}
}

// TestMaxRowsCopy: COPY ... TO STDOUT sends one CopyData per row; rows past
// the policy's max_rows (3 here) are withheld, the client gets the NOTICE a
// SELECT gets and a COPY tag counting what was sent, and the protocol stays
// valid, in text, CSV (with and without a header line) and binary, through
// the simple and the extended protocol, with small and large rows.
func TestMaxRowsCopy(t *testing.T) {
	p := startLimitsProxy(t)
	ctx := ctxT(t, 60*time.Second)
	direct, err := pgconn.Connect(ctx, p.DirectDB)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := direct.Exec(ctx, "CREATE TABLE ten AS SELECT g AS id, 'row ' || g AS label FROM generate_series(1, 10) g").ReadAll(); err != nil {
		t.Fatal(err)
	}
	direct.Close(ctx)

	var mu sync.Mutex
	var notices []string
	cfg, err := pgconn.ParseConfig(p.URL("alice"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		notices = append(notices, n.Message)
		mu.Unlock()
	}
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	takeNotices := func() []string {
		mu.Lock()
		defer mu.Unlock()
		n := notices
		notices = nil
		return n
	}
	const notice = "result truncated to 3 rows by policy (max_rows)"
	big := strings.Repeat("x", 40000)

	for _, tc := range []struct {
		sql       string
		want      string // the rows, as text
		rows      int64  // the tag's count
		truncated bool
	}{
		{"COPY ten TO STDOUT", "1\trow 1\n2\trow 2\n3\trow 3\n", 3, true},
		{"COPY (SELECT id FROM ten ORDER BY id) TO STDOUT", "1\n2\n3\n", 3, true},
		{"COPY (SELECT id FROM ten ORDER BY id) TO STDOUT (FORMAT csv, HEADER)", "id\n1\n2\n3\n", 3, true},
		{"COPY (SELECT id FROM ten ORDER BY id) TO STDOUT WITH CSV HEADER", "id\n1\n2\n3\n", 3, true},
		{`COPY (SELECT id FROM ten ORDER BY id) TO STDOUT (FORMAT text, U&"\0068eader" on)`, "id\n1\n2\n3\n", 3, true},
		{"COPY (SELECT id FROM ten ORDER BY id) TO STDOUT (FORMAT csv, HEADER false)", "1\n2\n3\n", 3, true},
		{"COPY (SELECT id FROM ten WHERE id <= 3 ORDER BY id) TO STDOUT (FORMAT csv, HEADER)", "id\n1\n2\n3\n", 3, false},
		{"COPY (SELECT id FROM ten WHERE id <= 2 ORDER BY id) TO STDOUT", "1\n2\n", 2, false},
		{"COPY (SELECT '" + big + "' || g FROM generate_series(1, 6) g) TO STDOUT", big + "1\n" + big + "2\n" + big + "3\n", 3, true},
	} {
		t.Run("simple/"+tc.sql[:min(len(tc.sql), 80)], func(t *testing.T) {
			var buf bytes.Buffer
			tag, err := c.CopyTo(ctx, &buf, tc.sql)
			if err != nil {
				t.Fatal(err)
			}
			if buf.String() != tc.want {
				t.Fatalf("got %q, want %q", trunc(buf.String()), trunc(tc.want))
			}
			if tag.String() != "COPY "+strconv.FormatInt(tc.rows, 10) {
				t.Fatalf("tag %q, want COPY %d", tag, tc.rows)
			}
			if n := takeNotices(); tc.truncated != (len(n) == 1 && n[0] == notice) || (!tc.truncated && len(n) != 0) {
				t.Fatalf("notices %q", n)
			}
		})
	}

	// Binary: header and first row share the first CopyData, the trailer
	// has one of its own.
	for _, tc := range []struct {
		sql    string
		rows   int
		length int // of each row's one field
	}{
		{"COPY (SELECT id FROM ten ORDER BY id) TO STDOUT (FORMAT binary)", 3, 4},
		{"COPY ten TO STDOUT (FORMAT binary)", 3, -1},
		{"COPY (SELECT id FROM ten WHERE id = 0) TO STDOUT (FORMAT binary)", 0, 4},
		{"COPY (SELECT id FROM ten WHERE id = 1) TO STDOUT (FORMAT binary)", 1, 4},
		{"COPY (SELECT repeat('y', 40000) FROM ten) TO STDOUT (FORMAT binary)", 3, 40000},
	} {
		t.Run("binary/"+tc.sql, func(t *testing.T) {
			var buf bytes.Buffer
			tag, err := c.CopyTo(ctx, &buf, tc.sql)
			if err != nil {
				t.Fatal(err)
			}
			n, err := binaryCopyRows(buf.Bytes(), tc.length)
			if err != nil {
				t.Fatal(err)
			}
			if n != tc.rows || tag.RowsAffected() != int64(tc.rows) {
				t.Fatalf("%d rows, tag %q; want %d", n, tag, tc.rows)
			}
			if nt := takeNotices(); (tc.rows == 3) != (len(nt) == 1 && nt[0] == notice) {
				t.Fatalf("notices %q", nt)
			}
		})
	}

	// The extended protocol: Parse, Bind, Execute, Sync.
	for _, tc := range []struct {
		sql    string
		format byte
		want   []string
	}{
		{"COPY (SELECT id FROM ten ORDER BY id) TO STDOUT", 0, []string{"1\n", "2\n", "3\n"}},
		{"COPY (SELECT id FROM ten ORDER BY id) TO STDOUT (FORMAT csv, HEADER)", 0, []string{"id\n", "1\n", "2\n", "3\n"}},
		{"COPY (SELECT id FROM ten ORDER BY id) TO STDOUT (FORMAT binary)", 1, nil},
	} {
		t.Run("extended/"+tc.sql, func(t *testing.T) {
			fe := c.Frontend()
			fe.Send(&pgproto3.Parse{Query: tc.sql})
			fe.Send(&pgproto3.Bind{})
			fe.Send(&pgproto3.Execute{})
			fe.Send(&pgproto3.Sync{})
			if err := fe.Flush(); err != nil {
				t.Fatal(err)
			}
			var got []string
			var seq []string
			var tag string
			var all []byte
			for done := false; !done; {
				m, err := fe.Receive()
				if err != nil {
					t.Fatal(err)
				}
				switch m := m.(type) {
				case *pgproto3.ParseComplete:
					seq = append(seq, "1")
				case *pgproto3.BindComplete:
					seq = append(seq, "2")
				case *pgproto3.CopyOutResponse:
					seq = append(seq, "H")
					if m.OverallFormat != tc.format {
						t.Fatalf("format %d", m.OverallFormat)
					}
				case *pgproto3.CopyData:
					got = append(got, string(m.Data))
					all = append(all, m.Data...)
				case *pgproto3.CopyDone:
					seq = append(seq, "c")
				case *pgproto3.NoticeResponse:
					seq = append(seq, "N:"+m.Message)
				case *pgproto3.CommandComplete:
					seq = append(seq, "C")
					tag = string(m.CommandTag)
				case *pgproto3.ReadyForQuery:
					seq = append(seq, "Z")
					done = true
				case *pgproto3.ErrorResponse:
					t.Fatalf("error %s", m.Message)
				}
			}
			if s := strings.Join(seq, " "); s != "1 2 H c N:"+notice+" C Z" {
				t.Fatalf("messages %s", s)
			}
			if tag != "COPY 3" {
				t.Fatalf("tag %q", tag)
			}
			if tc.format == 1 {
				if n, err := binaryCopyRows(all, 4); err != nil || n != 3 {
					t.Fatalf("binary: %d rows, %v", n, err)
				}
			} else if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("rows %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := c.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
		t.Fatalf("session after the copies: %v", err)
	}
}

// binaryCopyRows checks a binary COPY stream (signature, header, rows of
// one field of length fieldLen, or any fields when it is -1, trailer) and
// counts its rows.
func binaryCopyRows(b []byte, fieldLen int) (int, error) {
	const sig = "PGCOPY\n\xff\r\n\x00"
	if len(b) < 19 || string(b[:11]) != sig {
		return 0, errors.New("no binary COPY signature")
	}
	b = b[19:]
	rows := 0
	for {
		if len(b) < 2 {
			return rows, errors.New("no trailer")
		}
		nf := int16(binary.BigEndian.Uint16(b))
		b = b[2:]
		if nf == -1 {
			if len(b) != 0 {
				return rows, errors.New("data after the trailer")
			}
			return rows, nil
		}
		for range int(nf) {
			if len(b) < 4 {
				return rows, errors.New("short field")
			}
			l := int(int32(binary.BigEndian.Uint32(b)))
			b = b[4:]
			if fieldLen >= 0 && l != fieldLen {
				return rows, errors.New("unexpected field length")
			}
			if l > 0 {
				if len(b) < l {
					return rows, errors.New("short field data")
				}
				b = b[l:]
			}
		}
		rows++
	}
}

func trunc(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}
