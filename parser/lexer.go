package parser

import (
	"strings"

	"github.com/dbalproxy/dbalproxy/pgbool"
)

// LexerSettings are the settings under which the server lexes SQL as the
// parser does (see SettingHazard); a proxy relying on the parser pins them.
var LexerSettings = []string{"standard_conforming_strings", "client_encoding"}

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

// SettingHazard returns why setting name to value would make the server
// lex SQL unlike the parser (which lexes as the server does with
// standard_conforming_strings on and a client encoding whose multibyte
// characters contain no ASCII bytes), or "".
func SettingHazard(name, value string) string {
	if len(name) != len("client_encoding") && len(name) != len("standard_conforming_strings") {
		return "" // most parameters: no lower-casing
	}
	switch strings.ToLower(name) {
	case "standard_conforming_strings":
		if !pgbool.IsTrue(value) {
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

// LexerHazard returns why the statement could change how the server lexes
// the statements after it, or "".
func (st *Statement) LexerHazard() string {
	if s := st.Setting; s != nil && !s.IsReset {
		if why := SettingHazard(s.Name, s.Value); why != "" {
			return why
		}
	}
	if s := st.DefaultSetting; s != nil && !s.IsReset {
		// ALTER SYSTEM reaches every session at the next reload, before
		// the backend can tell; a role's or database's default would
		// have every later client refused.
		if why := SettingHazard(s.Name, s.Value); why != "" {
			return why
		}
	}
	for _, name := range st.ConfigNames {
		switch name {
		case "standard_conforming_strings", "client_encoding":
			return "set_config may not change " + name + " through dbalproxy (use SET with a supported value)"
		case ConfigUnknown:
			return "set_config through dbalproxy must name its setting with a string constant"
		}
	}
	return ""
}
