package wire

// Framing and message fields: how the session reads PostgreSQL's message
// stream (msgReader) and writes messages, and the few fields of backend
// messages it reads without decoding them whole. Nothing here knows about
// sessions; the message loop is in session.go.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// streamThreshold is the body size above which a relayed message is copied
// through in pieces instead of being held whole. Only DataRow and CopyData
// reach it in practice.
const streamThreshold = 16 * 1024

// errMessageTooLarge is returned for a client message over the configured limit.
type errMessageTooLarge struct {
	typ  byte
	size int
	max  int
}

func (e *errMessageTooLarge) Error() string {
	return fmt.Sprintf("message of type %q is %d bytes, over the limit of %d", e.typ, e.size, e.max)
}

// msgReader frames a PostgreSQL message stream read through a bufio.Reader.
// A message that fits the reader's buffer is returned as a slice of that
// buffer (valid until the next call), so relaying it costs one copy into the
// writer and no allocation.
type msgReader struct {
	r   *bufio.Reader
	max int // largest body accepted
}

// header returns the type and body length of the next message without
// consuming it. The body length excludes the 4 length bytes.
func (m *msgReader) header() (byte, int, error) {
	h, err := m.r.Peek(5)
	if err != nil {
		return 0, 0, err
	}
	n := int(binary.BigEndian.Uint32(h[1:])) - 4
	if n < 0 {
		return 0, 0, fmt.Errorf("invalid message length %d for message type %q", n+4, h[0])
	}
	if n > m.max {
		return 0, 0, &errMessageTooLarge{typ: h[0], size: n + 4, max: m.max}
	}
	return h[0], n, nil
}

// fits reports whether a message of body length n can be held in the buffer.
func (m *msgReader) fits(n int) bool { return n+5 <= m.r.Size() }

// peekWhole returns the next whole message (header included) without
// consuming it. The caller must have checked fits.
func (m *msgReader) peekWhole(n int) ([]byte, error) { return m.r.Peek(5 + n) }

// discard consumes n bytes already peeked.
func (m *msgReader) discard(n int) { _, _ = m.r.Discard(n) }

// readBody consumes the header and reads the body of a message whose body
// length is n into buf (grown as needed), for messages larger than the
// reader's buffer that must be seen whole (a large Query or Parse).
func (m *msgReader) readBody(n int, buf []byte) ([]byte, error) {
	if _, err := m.r.Discard(5); err != nil {
		return nil, err
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	_, err := io.ReadFull(m.r, buf)
	return buf, err
}

// copyThrough relays the next message (body length n) to w without holding it
// whole.
func (m *msgReader) copyThrough(w *bufio.Writer, n int) error {
	_, err := io.CopyN(w, m.r, int64(n)+5)
	return err
}

// buffered reports how many bytes can be read without blocking.
func (m *msgReader) buffered() int { return m.r.Buffered() }

// writeMessage writes a message of type typ with body to w.
func writeMessage(w *bufio.Writer, typ byte, body []byte) error {
	var h [5]byte
	h[0] = typ
	binary.BigEndian.PutUint32(h[1:], uint32(len(body)+4))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(body)
	return err
}

// cstring returns the NUL-terminated string at the start of b and the rest.
func cstring(b []byte) (string, []byte, bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "", nil, false
	}
	return string(b[:i]), b[i+1:], true
}

// tagRows reads the row count at the end of a CommandComplete tag
// ("SELECT 5", "INSERT 0 1"), or -1.
func tagRows(body []byte) int64 {
	end := bytes.IndexByte(body, 0)
	if end < 0 {
		end = len(body)
	}
	i := end
	for i > 0 && body[i-1] >= '0' && body[i-1] <= '9' {
		i--
	}
	if i == end || i == 0 || body[i-1] != ' ' {
		return -1
	}
	var n int64
	for _, c := range body[i:end] {
		n = n*10 + int64(c-'0')
	}
	return n
}

// errorFields returns the SQLSTATE and message of an ErrorResponse body.
func errorFields(body []byte) (code, msg string) {
	for len(body) > 1 {
		t := body[0]
		v, rest, ok := cstring(body[1:])
		if !ok {
			break
		}
		switch t {
		case 'C':
			code = v
		case 'M':
			msg = v
		}
		body = rest
	}
	return code, msg
}

// isFatal reports whether an ErrorResponse body has severity FATAL or PANIC.
func isFatal(body []byte) bool {
	for len(body) > 1 {
		t := body[0]
		v, rest, ok := cstring(body[1:])
		if !ok {
			return false
		}
		if t == 'V' || t == 'S' {
			return v == "FATAL" || v == "PANIC"
		}
		body = rest
	}
	return false
}

// schemaChangeTag reports whether a CommandComplete body's tag is of a
// statement that changes the catalog (CREATE, ALTER, DROP, ...).
func schemaChangeTag(body []byte) bool {
	if len(body) == 0 {
		return false
	}
	switch body[0] { // every CommandComplete passes here: most tags stop at once
	case 'C':
		return bytes.HasPrefix(body, tagCreate)
	case 'A':
		return bytes.HasPrefix(body, tagAlter)
	case 'D':
		return bytes.HasPrefix(body, tagDrop)
	case 'I':
		return bytes.HasPrefix(body, tagImportSchema)
	}
	return false
}
