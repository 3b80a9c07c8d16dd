package bridge

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/pool"
	"github.com/dbalproxy/dbalproxy/wire"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/rs/zerolog"
)

// FuzzSQLRequest: any body is either refused with an error or gives one
// parameter list per query, and never panics.
func FuzzSQLRequest(f *testing.F) {
	for _, s := range []string{
		`{"query":"SELECT $1","params":["a"]}`,
		`{"queries":[{"query":"SELECT 1","params":[]},{"query":"SELECT $1","params":[null]}]}`,
		`{"query":"SELECT $1","params":[[1,[2,null],"x\"y"],{"a":1},true,1e400]}`,
		`{"query":"x","queries":[]}`, `{"queries":null}`, `[]`, `{"query":1}`, `{"query":"","params":[[[[[[[[1]]]]]]]]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := parseSQLRequest(body)
		if err != nil {
			return
		}
		if len(req.params) != len(req.Queries) {
			t.Fatalf("%d parameter lists for %d queries", len(req.params), len(req.Queries))
		}
		for i, q := range req.Queries {
			if len(req.params[i]) != len(q.Params) {
				t.Fatalf("query %d: %d values for %d parameters", i, len(req.params[i]), len(q.Params))
			}
		}
		if !req.batch && len(req.Queries) != 1 {
			t.Fatalf("a single query request with %d queries", len(req.Queries))
		}
	})
}

// noBackends refuses every backend connection: the fuzz targets exercise
// what comes before a backend.
type noBackends struct{}

func (noBackends) Acquire(context.Context, string) (*pool.Conn, error) {
	return nil, errors.New("no backend in fuzzing")
}
func (noBackends) Release(*pool.Conn)           {}
func (noBackends) Put(*pool.Conn)               {}
func (noBackends) TryAcquire(string) *pool.Conn { return nil }
func (noBackends) Destroy(*pool.Conn)           {}

var fuzzBridge = sync.OnceValue(func() *Bridge {
	sc, err := wire.NewSCRAMCredentials("alice")
	if err != nil {
		panic(err)
	}
	srv, err := wire.NewServer(wire.Config{
		Logins:          wire.Logins{"alice": &wire.Login{Name: "alice", Role: "user", SCRAM: sc}},
		Backends:        noBackends{},
		DefaultDatabase: "app",
		StartupTimeout:  time.Second,
		Logger:          zerolog.Nop(),
	})
	if err != nil {
		panic(err)
	}
	b, err := New(Config{Server: srv, AllowedOrigins: []string{"*.example.com"}, MaxFrameSize: 4096, IdleTimeout: time.Second,
		RequestTimeout: time.Second, Logger: zerolog.Nop()})
	if err != nil {
		panic(err)
	}
	return b
})

// hijackWriter is a ResponseWriter over one end of an in-memory
// connection that can be hijacked, as net/http's is.
type hijackWriter struct {
	conn   net.Conn
	header http.Header
	buf    *bufio.ReadWriter
	wrote  bool
}

func (w *hijackWriter) Header() http.Header { return w.header }
func (w *hijackWriter) WriteHeader(code int) {
	if !w.wrote {
		w.wrote = true
		_, _ = w.buf.WriteString("HTTP/1.1 " + strconv.Itoa(code) + " " + http.StatusText(code) + "\r\n")
		_ = w.header.Write(w.buf)
		_, _ = w.buf.WriteString("\r\n")
	}
}
func (w *hijackWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.buf.Write(p)
}
func (w *hijackWriter) Flush() { _ = w.buf.Flush() }
func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	_ = w.buf.Flush()
	return w.conn, w.buf, nil
}

// wsFrame is a masked binary WebSocket frame, as a client sends it.
func wsFrame(payload []byte) []byte {
	b := []byte{0x82}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	default:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	}
	mask := []byte{1, 2, 3, 4}
	b = append(b, mask...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	return b
}

// FuzzUpgrade feeds an HTTP request and then raw bytes (WebSocket frames
// when the upgrade succeeds) to the bridge, whose sessions are real wire
// sessions without a backend. Nothing may panic or hang.
func FuzzUpgrade(f *testing.F) {
	const upgrade = "GET /v2?address=db:5432 HTTP/1.1\r\nHost: db\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	startup, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "alice", "database": "app"}}).Encode(nil)
	password, _ := (&pgproto3.PasswordMessage{Password: "alice"}).Encode(nil)
	ssl := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), 80877103)
	f.Add([]byte(upgrade+"\r\n"), wsFrame(append(append([]byte{}, startup...), password...)))
	f.Add([]byte(upgrade+"\r\n"), append(wsFrame(ssl), wsFrame(startup)...))
	f.Add([]byte(upgrade+"Origin: https://evil.example.net\r\n\r\n"), wsFrame(startup))
	f.Add([]byte(upgrade+"Origin: https://a.example.com\r\n\r\n"), wsFrame(bytes.Repeat([]byte{0}, 5000)))
	f.Add([]byte("POST /sql HTTP/1.1\r\nHost: db\r\nContent-Length: 9\r\nNeon-Connection-String: postgres://a:b@c/d\r\n\r\n"), []byte(`{"query":`))
	f.Fuzz(func(t *testing.T, head, rest []byte) {
		req, err := http.ReadRequest(bufio.NewReader(io.MultiReader(bytes.NewReader(head), bytes.NewReader(rest))))
		if err != nil {
			return
		}
		req.RemoteAddr = "127.0.0.1:1234" // loopback: the bridge runs SCRAM for a cleartext password
		server, client := net.Pipe()
		_ = server.SetDeadline(time.Now().Add(2 * time.Second))
		_ = client.SetDeadline(time.Now().Add(2 * time.Second))
		done := make(chan struct{})
		go func() {
			defer close(done)
			go func() { _, _ = client.Write(rest) }()
			_, _ = io.Copy(io.Discard, client)
		}()
		w := &hijackWriter{conn: server, header: http.Header{}, buf: bufio.NewReadWriter(bufio.NewReader(server), bufio.NewWriter(server))}
		fuzzBridge().ServeHTTP(w, req)
		_ = w.buf.Flush()
		server.Close()
		client.Close()
		<-done
	})
}
