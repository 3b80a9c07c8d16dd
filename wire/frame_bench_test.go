package wire

import (
	"bufio"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// loopReader yields the same bytes forever.
type loopReader struct {
	b   []byte
	off int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], l.b[l.off:])
		n += c
		l.off = (l.off + c) % len(l.b)
	}
	return n, nil
}

// BenchmarkForwardMessage measures relaying one small backend message
// (a DataRow of pgbench -S's size) as the pump does: frame it in the read
// buffer, copy it into the client writer, consume it. No allocation is
// expected in steady state.
func BenchmarkForwardMessage(b *testing.B) {
	msg, err := (&pgproto3.DataRow{Values: [][]byte{[]byte("-4711")}}).Encode(nil)
	if err != nil {
		b.Fatal(err)
	}
	var stream []byte
	for len(stream) < 64*1024 {
		stream = append(stream, msg...)
	}
	r := &msgReader{r: bufio.NewReaderSize(&loopReader{b: stream}, clientBufSize), max: 1 << 20}
	w := bufio.NewWriterSize(io.Discard, clientBufSize)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		_, n, err := r.header()
		if err != nil || !r.fits(n) {
			b.Fatal(err)
		}
		whole, err := r.peekWhole(n)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := w.Write(whole); err != nil {
			b.Fatal(err)
		}
		r.discard(5 + n)
	}
}
