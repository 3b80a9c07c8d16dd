package wire

import (
	"strings"

	"github.com/dbalproxy/dbalproxy/audit"
	"github.com/dbalproxy/dbalproxy/plan"
	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/jackc/pgx/v5/pgproto3"
)

// The proxy parses every statement with PostgreSQL's own parser (pg_query),
// which lexes text as the server does with standard_conforming_strings on
// and the text in an encoding whose multibyte characters contain no ASCII
// bytes. Two settings would make the backend lex a text otherwise, and so
// run a statement other than the one that was checked:
//
//   - standard_conforming_strings = off makes a backslash escape a quote in
//     '...' literals: `SELECT 'x\'<newline>' FROM t --'` is a constant for
//     the proxy and a read of t for the backend;
//   - a client-only encoding such as SJIS, BIG5 or GBK has characters whose
//     second byte is a backslash or another ASCII character: the backend
//     converts the text before lexing it, the proxy sees the raw bytes.
//
// So the proxy pins both, whatever the policy says: it refuses them at
// startup, refuses statements that would change them, and ends a session
// whose backend reports one of them changed anyway.

// The pump catches a change it is told about, but PostgreSQL (14 and later)
// tells only just before ReadyForQuery: a client that pipelines a statement
// that changes a setting out of the proxy's sight (a DO block, a function
// calling set_config, an UPDATE of pg_settings) and, before its
// ReadyForQuery, a text that lexes otherwise with the changed setting would
// have that text run as the proxy did not check it. So a text that could
// lex otherwise (lexSensitive) sent while the backend may hold an
// unreported change (reqQueue.unreported) gets a check of the two settings
// in front of it, in the extended protocol and without a Sync: if they
// changed, the check fails, the backend skips everything up to the next
// Sync (the text too), and the pump ends the session.

// lexGuardName names the check's statement and portal (with beStmtPrefix,
// which no client statement of transaction pooling is sent under).
const lexGuardName = beStmtPrefix + "lexguard"

// lexGuardMarker starts the message of the check's error.
const lexGuardMarker = "dbalproxy: lexer settings changed under the proxy: "

// lexGuardSQL fails (22P02, a failed integer cast) unless
// standard_conforming_strings is on and client_encoding is one PostgreSQL
// may use on the server (encoding ids up to 34, KOI8U; the client-only
// encodings come after). Every name is schema-qualified, with no operator,
// so no object a client creates can stand in; it is plain ASCII with no
// backslash, so it lexes the same whatever the two settings.
const lexGuardSQL = "SELECT CAST(pg_catalog.textcat('" + lexGuardMarker + "standard_conforming_strings=', " +
	"pg_catalog.textcat(pg_catalog.current_setting('standard_conforming_strings'), " +
	"pg_catalog.textcat(' client_encoding=', pg_catalog.current_setting('client_encoding')))) AS pg_catalog.int4) " +
	"WHERE NOT (pg_catalog.texteq(pg_catalog.current_setting('standard_conforming_strings'), 'on') " +
	"AND pg_catalog.int4le(pg_catalog.pg_char_to_encoding(pg_catalog.current_setting('client_encoding')), 34))"

// Kinds of request.guard.
const (
	guardParse = 1 + iota // the check is in front of a Parse
	guardQuery            // the check is in front of a simple Query
)

// lexSensitive reports whether text could lex differently with
// standard_conforming_strings off or in a client-only encoding. Without a
// backslash, a '...' literal lexes the same either way; without a byte
// above 0x7f, the text is the same ASCII in every encoding PostgreSQL
// accepts from clients.
func lexSensitive(text string) bool {
	for i := 0; i < len(text); i++ {
		if c := text[i]; c == '\\' || c >= 0x80 {
			return true
		}
	}
	return false
}

// lexGuard sends the check of the pinned settings to be when the backend
// may hold an unreported change and text, about to be sent to it in a Parse
// (query false) or a Query (query true), could lex otherwise with it.
func (sess *session) lexGuard(be *pool.Conn, query bool, text string) error {
	if sess.decider == nil || !lexSensitive(text) || !sess.reqs.unreported() {
		return nil // nothing is checked, the backend told everything, or text lexes the same
	}
	var g uint8 = guardParse
	if query {
		g = guardQuery
	}
	return sess.inject(be,
		// Close first: a check that failed for another reason (a
		// transaction already aborted) may have left them behind. Closing
		// what does not exist is no error.
		injected{request{kind: reqClose, swallow: true, guard: g}, &pgproto3.Close{ObjectType: 'P', Name: lexGuardName}},
		injected{request{kind: reqClose, swallow: true, guard: g}, &pgproto3.Close{ObjectType: 'S', Name: lexGuardName}},
		injected{request{kind: reqParse, swallow: true, guard: g}, &pgproto3.Parse{Name: lexGuardName, Query: lexGuardSQL}},
		injected{request{kind: reqBind, swallow: true, guard: g}, &pgproto3.Bind{DestinationPortal: lexGuardName, PreparedStatement: lexGuardName}},
		injected{request{kind: reqExecute, swallow: true, guard: g}, &pgproto3.Execute{Portal: lexGuardName}},
	)
}

// lexGuardFailed is what the pump makes of an ErrorResponse body answering
// the check (request.guard g): the reason to end the session, or "" to
// relay the error. A failed check means a changed setting. Any other error
// in front of a Parse is the client's to see (the backend skips the rest
// up to Sync, as for an error of the client's own); in front of a simple
// Query it ends the session too, since the backend would skip the Query
// and leave the client waiting for its answer (in practice: a pipelined
// Query, lexing otherwise, behind a statement that aborted the transaction).
func lexGuardFailed(g uint8, body []byte) string {
	code, msg := errorFields(body)
	if i := strings.Index(msg, lexGuardMarker); code == "22P02" && i >= 0 {
		now := strings.TrimSuffix(msg[i+len(lexGuardMarker):], "\"")
		return "a statement changed standard_conforming_strings or client_encoding out of dbalproxy's sight (now " + now + "): the proxy checks statements as PostgreSQL lexes them with standard_conforming_strings on and an ASCII-safe client_encoding"
	}
	if g == guardQuery {
		return "dbalproxy could not check this session's standard_conforming_strings and client_encoding before a pipelined query (" + code + ": " + msg + ")"
	}
	return ""
}

// pipelineLexCheck returns plan, or a denial in its place once the backend
// reported a changed setting: the pump is ending the session, and nothing
// read from the client meanwhile goes to the backend as checked.
func (sess *session) pipelineLexCheck(pl *plan.Plan) *plan.Plan {
	if pl.Deny != nil {
		return pl
	}
	h := sess.lexHazard.Load()
	if h == nil {
		return pl
	}
	command := ""
	if len(pl.Statements) > 0 {
		command = pl.Statements[0].Command
	}
	return &plan.Plan{Version: pl.Version,
		Statements: []plan.Statement{{Command: command, Decision: audit.DecisionDeny, Reason: *h, PolicyVersion: pl.Version}},
		Deny:       &plan.Denial{Code: CodeFeatureNotSupported, Message: *h}}
}
