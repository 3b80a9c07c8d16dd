package wire

import (
	"testing"

	"github.com/dbalproxy/dbalproxy/parser"
)

// settingHazard knows the pinned settings whatever their spelling, and
// only them.
func TestSettingHazard(t *testing.T) {
	for _, c := range []struct {
		name, value string
		hazard      bool
	}{
		{"standard_conforming_strings", "on", false},
		{"Standard_Conforming_Strings", "TRUE", false},
		{"standard_conforming_strings", " yes ", false},
		{"standard_conforming_strings", "off", true},
		{"standard_conforming_strings", "", true},
		{"STANDARD_CONFORMING_STRINGS", "0", true},
		{"client_encoding", "UTF8", false},
		{"client_encoding", "latin1", false},
		{"client_encoding", "EUC_JP", false},
		{"client_encoding", "SJIS", true},
		{"Client_Encoding", "shift-jis", true},
		{"client_encoding", "Windows-936", true},
		{"client_encoding", "gb18030", true},
		{"client_encoding", "BIG5", true},
		{"names", "SJIS", false}, // SET NAMES reaches the parser as client_encoding
		{"application_name", "off", false},
		{"search_path", "SJIS", false},
	} {
		if got := parser.SettingHazard(c.name, c.value) != ""; got != c.hazard {
			t.Errorf("parser.SettingHazard(%q, %q) = %v, want %v", c.name, c.value, got, c.hazard)
		}
	}
}

// lexSensitive flags backslashes and every non-ASCII byte: a client-only
// encoding may take an ASCII byte after one as part of a character, and
// even without that, it converts the text before lexing, and two different
// byte runs that convert alike would close a dollar quote for the server
// only. The check it triggers is cheap, so it need not be narrower.
func TestLexSensitive(t *testing.T) {
	for _, c := range []struct {
		sql  string
		want bool
	}{
		{"SELECT 1", false},
		{"SELECT $$a$$, 'it''s', \"q\" -- x", false},
		{"SELECT 'Zoë', 'é '", true},
		{"SELECT 'a\\b'", true},
		{"SELECT E'\\n'", true},
		{"SELECT 'тx'", true},  // 0x82 then 'x'
		{"SELECT 'т1'", true},  // GB18030's four-byte forms take digits
		{"SELECT 'т\\'", true}, // the escape an encoding could swallow
		{"SELECT 'т'", true},
	} {
		if got := lexSensitive(c.sql); got != c.want {
			t.Errorf("lexSensitive(%q) = %v, want %v", c.sql, got, c.want)
		}
	}
}
