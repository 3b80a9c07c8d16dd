package wire_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/audit"
	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Settings that make the backend lex SQL unlike the proxy's parser are
// refused for every role, in both protocols, so that a text checked as one
// statement never runs as another (see wire/lexguard.go).
func TestLexerSettingsPinned(t *testing.T) {
	t.Parallel()
	p, sink, db := demoProxy(t, decision.ModeStrict)
	base := digest(t, db)
	refused := []string{
		"SET standard_conforming_strings = off",
		"SET LOCAL standard_conforming_strings TO false",
		"SET SESSION standard_conforming_strings = 'no'",
		"SELECT set_config('standard_conforming_strings', 'off', false)",
		"SELECT pg_catalog.set_config('STANDARD_CONFORMING_STRINGS'::text, 'off', true)",
		"SET client_encoding = 'SJIS'",
		"SET NAMES 'big5'",
		"SET client_encoding TO 'Windows_932'",
		"SELECT set_config('client_encoding', 'UTF8', false)",
		"SELECT set_config(name, 'off', false) FROM pg_settings WHERE name = 'standard_conforming_strings'",
		"ALTER SYSTEM SET standard_conforming_strings = off",
		"ALTER ROLE CURRENT_USER SET client_encoding = 'SJIS'",
		"ALTER ROLE CURRENT_USER SET standard_conforming_strings TO false",
	}
	for _, login := range []string{"alice", "dave"} {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
			conn := connectMode(t, p.URL(login), mode)
			for _, sql := range refused {
				ctx := ctxT(t, 10*time.Second)
				_, err := conn.Exec(ctx, sql)
				pe := asPgErr(err)
				if pe == nil || pe.Code != "42501" {
					t.Errorf("%s (%v): %q: got %v, want 42501", login, mode, sql, err)
					continue
				}
				if login == "dave" && !strings.Contains(pe.Message, "dbalproxy") {
					// supergod: the proxy's refusal, not the policy's
					t.Errorf("%s (%v): %q: %q is not the proxy's refusal", login, mode, sql, pe.Message)
				}
				var v string
				if err := conn.QueryRow(ctx, "SHOW standard_conforming_strings").Scan(&v); err != nil || v != "on" {
					t.Fatalf("%s: after %q standard_conforming_strings is %q (%v)", login, sql, v, err)
				}
			}
			// The exploit itself: with the setting on, this is a SELECT of
			// one string constant; it must stay one.
			var s string
			err := conn.QueryRow(ctxT(t, 10*time.Second), "SELECT 'x\\'\n' FROM users --'").Scan(&s)
			if err != nil || !strings.HasPrefix(s, "x\\") {
				t.Errorf("%s (%v): the constant came back as %q (%v)", login, mode, s, err)
			}
		}
	}
	// Each refusal is audited as a denial, with the proxy's reason.
	for _, want := range []string{"standard_conforming_strings must stay on", "client encoding SJIS is not supported", "set_config may not change"} {
		waitFor(t, "an audited denial: "+want, 3*time.Second, func() bool {
			for _, r := range sink.Records() {
				if r.Decision == audit.DecisionDeny && r.User == "dave" && strings.Contains(r.Reason, want) {
					return true
				}
			}
			return false
		})
	}

	// Safe values and other settings still work.
	conn := connect(t, p.URL("alice"))
	ctx := ctxT(t, 10*time.Second)
	for _, sql := range []string{
		"SET standard_conforming_strings = on",
		"SET client_encoding = 'UTF8'",
		"SET NAMES 'LATIN1'",
		"SET client_encoding TO DEFAULT",
		"SELECT set_config('application_name', 'lexguard', false)",
		"RESET standard_conforming_strings",
	} {
		if _, err := conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Errorf("%q: %v", sql, err)
		}
	}
	// A text of the same shape as the allowed set_config above (constants
	// differ) is still checked on its own.
	_, err := conn.Exec(ctx, "SELECT set_config('standard_conforming_strings', 'off', false)", pgx.QueryExecModeSimpleProtocol)
	if pe := asPgErr(err); pe == nil || pe.Code != "42501" {
		t.Errorf("set_config of standard_conforming_strings after one of application_name: %v, want 42501", err)
	}
	wantUnchanged(t, db, base)
}

// A client that asks for such a setting at startup is refused before it
// runs anything.
func TestLexerSettingsAtStartup(t *testing.T) {
	t.Parallel()
	p, _, _ := demoProxy(t, decision.ModeStrict)
	for _, params := range []map[string]string{
		{"client_encoding": "SJIS"},
		{"client_encoding": "gb-18030"},
		{"standard_conforming_strings": "off"},
		{"options": "-c standard_conforming_strings=off"},
		{"options": "--client-encoding=BIG5"},
	} {
		cfg, err := pgconn.ParseConfig(p.URL("alice"))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range params {
			cfg.RuntimeParams[k] = v
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := pgconn.ConnectConfig(ctx, cfg)
		cancel()
		if err == nil {
			c.Close(context.Background())
			t.Errorf("startup with %v was accepted", params)
			continue
		}
		if pe := asPgErr(err); pe == nil || pe.Code != "0A000" {
			t.Errorf("startup with %v: %v, want 0A000", params, err)
		}
	}
	cfg, _ := pgconn.ParseConfig(p.URL("alice"))
	cfg.RuntimeParams["client_encoding"] = "LATIN1"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("client_encoding LATIN1: %v", err)
	}
	c.Close(ctx)
}

// A change the proxy cannot see (here a DO block, which only supergod may
// run) is caught when the backend reports it: the session ends with a
// FATAL error, and the backend connection is not used again.
func TestLexerSettingChangedBehindTheProxy(t *testing.T) {
	t.Parallel()
	p, _, _ := demoProxy(t, decision.ModeStrict)
	conn := connect(t, p.URL("dave"))
	ctx := ctxT(t, 10*time.Second)
	_, err := conn.Exec(ctx, "DO $$BEGIN PERFORM set_config('standard_conforming_strings', 'off', false); END$$")
	if pe := asPgErr(err); pe == nil || pe.Severity != "FATAL" || pe.Code != "0A000" {
		t.Fatalf("got %v, want a FATAL 0A000", err)
	}
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("the session went on after the backend reported standard_conforming_strings off")
	}
	for i := 0; i < 5; i++ {
		c := connect(t, p.URL("dave"))
		var v string
		if err := c.QueryRow(ctx, "SHOW standard_conforming_strings").Scan(&v); err != nil || v != "on" {
			t.Fatalf("a later session sees standard_conforming_strings %q (%v)", v, err)
		}
	}
}

// A database whose default turns standard_conforming_strings off (set after
// the proxy started) is refused: at a client's startup, and in transaction
// pooling when a later transaction gets a freshly dialled connection.
func TestLexerSettingServerDefault(t *testing.T) {
	t.Parallel()
	p, _, _ := demoProxy(t, decision.ModeStrict)
	conn := connect(t, p.URL("alice"))
	ctx := ctxT(t, 20*time.Second)
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	super := connect(t, p.Cluster.SuperURL(p.DB))
	if _, err := super.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{p.DB}.Sanitize()+" SET standard_conforming_strings = off"); err != nil {
		t.Fatal(err)
	}
	// Every backend connection of the pool goes; new ones get the default.
	if _, err := super.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", p.DB); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	// The session's backend is gone (session pooling: the session ends), or
	// (transaction pooling) a new one is made to show this client's
	// parameters, standard_conforming_strings on among them.
	var v string
	if err := conn.QueryRow(ctx, "SHOW standard_conforming_strings").Scan(&v); err == nil && v != "on" {
		t.Fatalf("a statement ran with standard_conforming_strings %q", v)
	}
	cfg, err := pgconn.ParseConfig(p.URL("alice"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err == nil {
		c.Close(ctx)
		t.Fatal("a new client was served by a backend with standard_conforming_strings off")
	}
	if pe := asPgErr(err); pe == nil || pe.Code != "0A000" || !strings.Contains(pe.Message, "standard_conforming_strings") {
		t.Errorf("startup: %v, want 0A000 naming standard_conforming_strings", err)
	}
}

// A function the proxy cannot see into may change a pinned setting (here a
// wrapper around set_config in the application's schema). A text pipelined
// behind its call that could lex differently gets a check in front of it
// that fails, the session ends when the check fails or the backend reports
// the change, and nothing of the pipelined text runs. The same text not
// pipelined is fine.
func TestLexerSettingChangedByAFunctionInAPipeline(t *testing.T) {
	t.Parallel()
	p, _, db := demoProxy(t, decision.ModeStrict)
	ctx := ctxT(t, 20*time.Second)
	if _, err := db.Exec(ctx, "CREATE FUNCTION app_set(k text, v text) RETURNS text LANGUAGE sql AS $$ SELECT set_config(k, v, false) $$"); err != nil {
		t.Fatal(err)
	}
	base := digest(t, db)
	const exploit = "SELECT 'x\\'\n'; DELETE FROM packages; --'"

	// Not pipelined: the text is one string constant.
	conn := connect(t, p.URL("alice"))
	var s string
	if err := conn.QueryRow(ctx, "SELECT 'a\\b'", pgx.QueryExecModeSimpleProtocol).Scan(&s); err != nil || s != "a\\b" {
		t.Fatalf("a backslash in a literal, not pipelined: %q %v", s, err)
	}

	// Simple protocol, pipelined.
	fe := connect(t, p.URL("alice")).PgConn()
	fr := fe.Frontend()
	fr.Send(&pgproto3.Query{String: "SELECT app_set('standard_conforming_strings', 'off')"})
	fr.Send(&pgproto3.Query{String: exploit})
	if err := fr.Flush(); err != nil {
		t.Fatal(err)
	}
	var codes []string
	for i := 0; i < 30; i++ {
		m, err := fr.Receive()
		if err != nil {
			break
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			codes = append(codes, e.Severity+" "+e.Code)
		}
	}
	// The session ends (FATAL 0A000) when the backend reports the change
	// or the check in front of the pipelined text fails.
	if len(codes) == 0 || !strings.HasSuffix(codes[0], " 0A000") {
		t.Errorf("simple pipeline: errors %v, want 0A000", codes)
	}

	// Extended protocol, pipelined.
	pc := connect(t, p.URL("alice")).PgConn()
	pl := pc.StartPipeline(ctx)
	pl.SendQueryParams("SELECT app_set('standard_conforming_strings', 'off')", nil, nil, nil, nil)
	pl.SendQueryParams("SELECT 'x\\'\n' FROM packages --'", nil, nil, nil, nil)
	pl.SendPipelineSync()
	_ = pl.Flush()
	for i := 0; i < 6; i++ {
		r, err := pl.GetResults()
		if err != nil {
			break
		}
		if rr, ok := r.(*pgconn.ResultReader); ok {
			if res := rr.Read(); res.Err == nil && len(res.Rows) > 1 {
				t.Errorf("extended pipeline: the pipelined text returned %d rows (read packages)", len(res.Rows))
			}
		}
	}
	wantUnchanged(t, db, base)
}

// appSet is a function of the kind an application may have: it changes a
// setting named by its caller, out of the proxy's sight (the demo policy
// lets role user call it).
const appSet = "CREATE FUNCTION app_set(k text, v text) RETURNS text LANGUAGE sql AS $$ SELECT set_config(k, v, false) $$"

// pipelineResults reads a pipeline's results up to its Sync: the rows of
// each query (nil for one that failed) and the first error.
func pipelineResults(t *testing.T, pl *pgconn.Pipeline) ([][][][]byte, error) {
	t.Helper()
	var out [][][][]byte
	for {
		r, err := pl.GetResults()
		if err != nil {
			return out, err
		}
		switch r := r.(type) {
		case *pgconn.ResultReader:
			res := r.Read()
			if res.Err != nil {
				return out, res.Err
			}
			out = append(out, res.Rows)
		case *pgconn.PipelineSync:
			return out, nil
		case nil:
			return out, nil
		}
	}
}

// PostgreSQL reports a changed setting just before ReadyForQuery. A text
// pipelined behind the statement that changed it, before that, reaches a
// backend that lexes it otherwise: such a text gets a check in front of
// it, which ends the session instead (see lexGuard).
func TestLexerSettingChangedInPipeline(t *testing.T) {
	t.Parallel()
	p, _, db := demoProxy(t, decision.ModeStrict)
	ctx := ctxT(t, 30*time.Second)
	if _, err := db.Exec(ctx, appSet); err != nil {
		t.Fatal(err)
	}
	base := digest(t, db)
	wantFatal := func(what string, err error) {
		t.Helper()
		if pe := asPgErr(err); pe == nil || pe.Severity != "FATAL" || pe.Code != "0A000" {
			t.Errorf("%s: got %v, want a FATAL 0A000", what, err)
		}
	}

	// The extended protocol, one batch: the rows of packages (which role
	// user may not read) came back before the proxy heard of the change.
	for _, c := range []struct{ set, exploit string }{
		{"SELECT app_set('standard_conforming_strings', 'off')", "SELECT 'x\\'\n' FROM packages --'"},
		// Á is 0xc3 0x81 in UTF-8; in SJIS 0xc3 is a character and 0x81
		// 0x5c another: the backslash escapes nothing there.
		{"SELECT app_set('client_encoding', 'SJIS')", "SELECT E'Á\\' FROM packages --'"},
	} {
		conn := connect(t, p.URL("alice"))
		pl := conn.PgConn().StartPipeline(ctx)
		pl.SendQueryParams(c.set, nil, nil, nil, nil)
		pl.SendQueryParams(c.exploit, nil, nil, nil, nil)
		pl.SendPipelineSync()
		if err := pl.Flush(); err != nil {
			t.Fatal(err)
		}
		rows, err := pipelineResults(t, pl)
		if len(rows) > 1 {
			t.Errorf("%s: the pipelined statement returned %d rows", c.set, len(rows[1]))
		}
		wantFatal(c.set, err)
	}

	// The same with a Flush between the two: the first statement's answer
	// was read, its ReadyForQuery (and report) has not come.
	conn := connect(t, p.URL("alice"))
	pl := conn.PgConn().StartPipeline(ctx)
	pl.SendQueryParams("SELECT app_set('standard_conforming_strings', 'off')", nil, nil, nil, nil)
	pl.SendFlushRequest()
	if err := pl.Flush(); err != nil {
		t.Fatal(err)
	}
	if r, err := pl.GetResults(); err != nil {
		t.Fatal(err)
	} else if rr, ok := r.(*pgconn.ResultReader); ok {
		if res := rr.Read(); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	pl.SendQueryParams("SELECT 'x\\'\n' FROM packages --'", nil, nil, nil, nil)
	pl.SendPipelineSync()
	if err := pl.Flush(); err != nil {
		t.Fatal(err)
	}
	rows, err := pipelineResults(t, pl)
	if len(rows) > 0 {
		t.Errorf("after a Flush: the pipelined statement returned %d rows", len(rows[0]))
	}
	wantFatal("after a Flush", err)

	// A statement prepared before runs as it was checked (in transaction
	// pooling it may be prepared again, on another backend, behind the
	// change: then the check ends the session).
	conn = connect(t, p.URL("alice"))
	pl = conn.PgConn().StartPipeline(ctx)
	pl.SendPrepare("s1", "SELECT 'x\\'\n' FROM packages --'", nil)
	pl.SendPipelineSync()
	pl.SendQueryParams("SELECT app_set('standard_conforming_strings', 'off')", nil, nil, nil, nil)
	pl.SendQueryPrepared("s1", nil, nil, nil)
	pl.SendPipelineSync()
	if err := pl.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		r, err := pl.GetResults()
		if err != nil {
			wantFatal("prepared before", err)
			break
		}
		if rr, ok := r.(*pgconn.ResultReader); ok {
			res := rr.Read()
			if res.Err != nil {
				wantFatal("prepared before", res.Err)
				break
			}
			for _, row := range res.Rows {
				if v := string(row[0]); v != "off" && v != "x\\ FROM packages --" {
					t.Errorf("prepared before: a row %q", v)
				}
			}
		}
		if i > 10 {
			t.Fatal("prepared before: the session went on")
		}
	}

	// Simple queries sent back to back: the second one, a DELETE for the
	// backend, ran (or not, by a race) before the proxy ended the session.
	for i := 0; i < 5; i++ {
		conn := connect(t, p.URL("alice"))
		fe := conn.PgConn().Frontend()
		fe.Send(&pgproto3.Query{String: "SELECT app_set('standard_conforming_strings', 'off')"})
		fe.Send(&pgproto3.Query{String: "SELECT 'x\\'\n'; DELETE FROM packages; --'"})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		var fatal *pgproto3.ErrorResponse
		for {
			m, err := fe.Receive()
			if err != nil {
				break
			}
			if e, ok := m.(*pgproto3.ErrorResponse); ok {
				fatal = e
			}
		}
		if fatal == nil || fatal.Severity != "FATAL" || fatal.Code != "0A000" {
			t.Errorf("simple queries: last error %+v, want a FATAL 0A000", fatal)
		}
	}
	wantUnchanged(t, db, base)
}

// Pipelines whose texts lex otherwise with the pinned settings changed run
// as before when they were not changed: the check is invisible.
func TestLexGuardInvisible(t *testing.T) {
	t.Parallel()
	p, _, _ := demoProxy(t, decision.ModeStrict)
	ctx := ctxT(t, 30*time.Second)
	conn := connect(t, p.URL("alice"))
	texts := []string{"SELECT 1", "SELECT 'Müller'", "SELECT 'a\\b'", "SELECT E'c\\\\d'", "SELECT 'ü' FROM users WHERE false", "SELECT 2"}
	want := []string{"1", "Müller", "a\\b", "c\\d", "", "2"}
	for round := 0; round < 3; round++ {
		pl := conn.PgConn().StartPipeline(ctx)
		for _, s := range texts {
			pl.SendQueryParams(s, nil, nil, nil, nil)
		}
		pl.SendPipelineSync()
		if err := pl.Flush(); err != nil {
			t.Fatal(err)
		}
		rows, err := pipelineResults(t, pl)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for i, r := range rows {
			got := ""
			if len(r) > 0 {
				got = string(r[0][0])
			}
			if i >= len(want) || got != want[i] {
				t.Errorf("round %d, result %d: %q", round, i, got)
			}
		}
		if err := pl.Close(); err != nil {
			t.Fatal(err)
		}
	}

	// Simple queries back to back.
	fe := conn.PgConn().Frontend()
	for _, s := range texts {
		fe.Send(&pgproto3.Query{String: s})
	}
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for ready := 0; ready < len(texts); {
		m, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		switch m := m.(type) {
		case *pgproto3.DataRow:
			got = append(got, string(m.Values[0]))
		case *pgproto3.ErrorResponse:
			t.Fatalf("simple queries: %s", m.Message)
		case *pgproto3.ReadyForQuery:
			ready++
		}
	}
	if strings.Join(got, "|") != "1|Müller|a\\b|c\\d|2" {
		t.Errorf("simple queries: %q", got)
	}

	// In an aborted transaction the check fails like any statement: in the
	// extended protocol the client gets PostgreSQL's error and goes on.
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Exec(ctx, "SELECT 1/0")
	pl := conn.PgConn().StartPipeline(ctx)
	pl.SendQueryParams("SELECT 1", nil, nil, nil, nil)
	pl.SendQueryParams("SELECT 'ü'", nil, nil, nil, nil)
	pl.SendPipelineSync()
	if err := pl.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := pipelineResults(t, pl); sqlState(err) != "25P02" {
		t.Errorf("aborted transaction: %v, want 25P02", err)
	}
	_ = pl.Close()
	if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	var s string
	if err := conn.QueryRow(ctx, "SELECT 'ü'").Scan(&s); err != nil || s != "ü" {
		t.Fatalf("after ROLLBACK: %q, %v", s, err)
	}
}
