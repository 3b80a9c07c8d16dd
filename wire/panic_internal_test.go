package wire

import (
	"bytes"
	"strings"
)

// Markers that make a session panic in tests (see honesty_test.go): a
// statement whose text holds PanicInSession panics in the session goroutine
// while it is handled; a DataRow that holds PanicInPump panics in the pump
// while it is relayed.
const (
	PanicInSession = "dbalproxy-test-panic-in-session"
	PanicInPump    = "dbalproxy-test-panic-in-pump"
)

// The hooks are set once, before any test runs, so that no session reads
// them while they change.
func init() {
	testPanicHook = func(text string) {
		if strings.Contains(text, PanicInSession) {
			panic("test panic in the session goroutine")
		}
	}
	testPumpHook = func(typ byte, msg []byte) {
		if typ == 'D' && bytes.Contains(msg, []byte(PanicInPump)) {
			panic("test panic in the pump")
		}
	}
}
