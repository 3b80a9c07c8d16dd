package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/coder/websocket"
)

// wsAdapter accepts pgbench's TCP connections and carries each over its own
// WebSocket to dbalproxy's websocket.listen, the way the Neon driver
// reaches it: binary frames, one per write. Like the relay, it runs inside
// dbalbench, so the dbalproxy-ws target's CPU figure is the proxy's alone;
// its latency includes this extra hop (compare the relay's row for what a
// bare hop costs).
type wsAdapter struct {
	ln     net.Listener
	url    string
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[io.Closer]struct{}
	ctx    context.Context
	cancel context.CancelFunc
}

func startWSAdapter(wsAddr string) (*wsAdapter, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("websocket adapter: %w", err)
	}
	a := &wsAdapter{ln: ln, url: "ws://" + wsAddr + "/v2", conns: map[io.Closer]struct{}{}}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.wg.Add(1)
	go a.serve()
	return a, nil
}

// Port is the adapter's TCP port, which pgbench connects to.
func (a *wsAdapter) Port() int { return a.ln.Addr().(*net.TCPAddr).Port }

func (a *wsAdapter) serve() {
	defer a.wg.Done()
	for {
		c, err := a.ln.Accept()
		if err != nil {
			return
		}
		a.wg.Add(1)
		go a.handle(c)
	}
}

func (a *wsAdapter) track(c io.Closer, add bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if add {
		a.conns[c] = struct{}{}
	} else {
		delete(a.conns, c)
	}
}

func (a *wsAdapter) handle(client net.Conn) {
	defer a.wg.Done()
	defer client.Close()
	if tc, ok := client.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	ws, _, err := websocket.Dial(a.ctx, a.url, nil)
	if err != nil {
		return
	}
	ws.SetReadLimit(-1)
	server := websocket.NetConn(a.ctx, ws, websocket.MessageBinary)
	defer server.Close()
	a.track(client, true)
	a.track(server, true)
	defer a.track(client, false)
	defer a.track(server, false)
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(server, client)
		server.Close()
		close(done)
	}()
	_, _ = io.Copy(client, server)
	client.Close()
	<-done
}

// Close stops accepting, cuts open connections and waits for the copiers.
func (a *wsAdapter) Close() error {
	err := a.ln.Close()
	a.cancel()
	a.mu.Lock()
	for c := range a.conns {
		c.Close()
	}
	a.mu.Unlock()
	a.wg.Wait()
	return err
}
