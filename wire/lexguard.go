package wire

import (
	"strings"

	"github.com/dbalproxy/dbalproxy/audit"
	"github.com/dbalproxy/dbalproxy/parser"
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

// lexerSettings are the settings the proxy pins.
var lexerSettings = []string{"standard_conforming_strings", "client_encoding"}

// unsafeEncodings are PostgreSQL's client-only encodings (and their
// aliases), in the form normalizeEncoding gives.
var unsafeEncodings = map[string]bool{
	"sjis": true, "shiftjis": true, "mskanji": true, "win932": true, "windows932": true,
	"shiftjis2004": true,
	"big5":         true, "win950": true, "windows950": true,
	"gbk": true, "win936": true, "windows936": true, "cp936": true,
	"uhc": true, "win949": true, "windows949": true, "cp949": true,
	"gb18030": true,
	"johab":   true,
}

// normalizeEncoding lower-cases an encoding name and drops everything but
// letters and digits, as PostgreSQL compares encoding names.
func normalizeEncoding(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b.WriteByte(c)
		}
	}
	return b.String()
}

// isOn reports whether a boolean setting's value means on.
func isOn(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "on", "true", "yes", "1", "t", "tr", "tru", "y", "ye":
		return true
	}
	return false
}

// settingHazard returns why setting name to value would make the backend
// lex SQL unlike the proxy's parser, or "".
func settingHazard(name, value string) string {
	if len(name) != len("client_encoding") && len(name) != len("standard_conforming_strings") {
		return "" // most parameters: no lower-casing
	}
	switch strings.ToLower(name) {
	case "standard_conforming_strings":
		if !isOn(value) {
			return "standard_conforming_strings must stay on through dbalproxy: the proxy checks statements as PostgreSQL lexes them with it on"
		}
	case "client_encoding":
		if value == "UTF8" || value == "SQL_ASCII" {
			return "" // what backends report nearly always: no work per lease
		}
		if unsafeEncodings[normalizeEncoding(value)] {
			return "client encoding " + strings.ToUpper(value) + " is not supported through dbalproxy: its multibyte characters contain ASCII bytes, so the proxy would check a different statement than the server runs (use UTF8)"
		}
	}
	return ""
}

// lexerHazard returns why a statement could change how the backend lexes
// the statements after it, or "".
func lexerHazard(st *parser.Statement) string {
	if s := st.Setting; s != nil && !s.IsReset {
		if why := settingHazard(s.Name, s.Value); why != "" {
			return why
		}
	}
	for _, name := range st.ConfigNames {
		switch name {
		case "standard_conforming_strings", "client_encoding":
			return "set_config may not change " + name + " through dbalproxy (use SET with a supported value)"
		case parser.ConfigUnknown:
			return "set_config through dbalproxy must name its setting with a string constant"
		}
	}
	return ""
}

// A setting can still change where the proxy cannot see it: a function the
// client may call that runs set_config or SET (say, a wrapper
// app_set(name, value) in the application's schema). The backend reports
// the change (ParameterStatus) only when that statement has finished, and
// the session then ends (see the pump); but a text the client pipelined
// behind it reaches the backend first and is lexed under the new setting.
// Such a text is only at risk if it contains a backslash (which
// standard_conforming_strings = off turns into an escape) or a non-ASCII
// byte followed by a byte 0x30-0x7E (which a client-only encoding can take
// as one character, swallowing a backslash). pipelineLexCheck refuses those,
// and only those, while another statement of the client's is still
// unanswered.

// lexSensitive reports whether sql could lex differently under the settings
// lexguard.go pins.
func lexSensitive(sql string) bool {
	for i := 0; i < len(sql); i++ {
		c := sql[i]
		if c == '\\' {
			return true
		}
		if c >= 0x80 && i+1 < len(sql) && sql[i+1] >= 0x30 && sql[i+1] <= 0x7e {
			return true
		}
	}
	return false
}

// pipelineLexCheck returns plan, or a denial in its place when sql was sent
// while another statement of the client's was still unanswered and could
// lex differently if that statement changed a pinned setting, or when the
// backend already reported such a change.
func (sess *session) pipelineLexCheck(plan *Plan, sql string) *Plan {
	if plan.Deny != nil {
		return plan
	}
	why := ""
	if h := sess.lexHazard.Load(); h != nil {
		why = *h
	} else if sess.reqs.pending() > 0 && lexSensitive(sql) {
		why = "this statement was sent before the previous one was answered, and it contains a backslash or a non-ASCII character next to an ASCII one: the proxy cannot be sure the server reads it as checked (a function called before it may have changed standard_conforming_strings or client_encoding)"
	} else {
		return plan
	}
	command := ""
	if len(plan.Statements) > 0 {
		command = plan.Statements[0].Command
	}
	return &Plan{Version: plan.Version,
		Statements: []PlannedStatement{{Command: command, Decision: audit.DecisionDeny, Reason: why, PolicyVersion: plan.Version}},
		Deny: &Denial{Code: CodeFeatureNotSupported, Message: why,
			Hint: "send it after the previous statement's result, or pass the value as a parameter"}}
}
