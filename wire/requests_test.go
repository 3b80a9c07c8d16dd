package wire

import (
	"bufio"
	"io"
	"testing"
	"time"
)

func TestReqQueueAnswers(t *testing.T) {
	var q reqQueue
	q.init()
	w := bufio.NewWriter(io.Discard)
	for _, k := range []reqKind{reqParse, reqBind, reqDescribePortal, reqExecute, reqSync, reqQuery} {
		q.push(request{kind: k}, w)
	}
	steps := []struct {
		msg     byte
		relay   bool
		pending int
	}{
		{'1', true, 5}, {'2', true, 4}, {'T', true, 3}, {'D', true, 3}, {'C', true, 2}, {'Z', true, 1},
		{'T', true, 1}, {'C', true, 1}, {'E', true, 1}, {'N', true, 1}, {'Z', true, 0},
	}
	for i, s := range steps {
		relay, _ := q.onBackend(s.msg)
		if relay != s.relay || q.pending() != s.pending {
			t.Fatalf("step %d (%q): relay %v pending %d, want %v %d", i, s.msg, relay, q.pending(), s.relay, s.pending)
		}
	}
}

func TestReqQueueExtendedErrorSkipsToSync(t *testing.T) {
	var q reqQueue
	q.init()
	w := bufio.NewWriter(io.Discard)
	for _, k := range []reqKind{reqParse, reqBind, reqExecute, reqSync, reqParse, reqSync} {
		q.push(request{kind: k}, w)
	}
	q.onBackend('E') // the Parse failed: Bind and Execute get no answer
	if q.pending() != 3 {
		t.Fatalf("pending %d after an extended-protocol error, want 3 (Sync, Parse, Sync)", q.pending())
	}
	q.onBackend('Z')
	q.onBackend('1')
	q.onBackend('Z')
	if q.pending() != 0 {
		t.Fatalf("pending %d, want 0", q.pending())
	}
}

func TestReqQueueSwallow(t *testing.T) {
	var q reqQueue
	q.init()
	w := bufio.NewWriter(io.Discard)
	q.push(request{kind: reqParse, swallow: true}, w)
	q.push(request{kind: reqBind, swallow: true}, w)
	q.push(request{kind: reqExecute}, w)
	q.push(request{kind: reqSync}, w)
	for _, m := range []struct {
		msg   byte
		relay bool
	}{{'1', false}, {'2', false}, {'E', true}, {'Z', true}} {
		if relay, _ := q.onBackend(m.msg); relay != m.relay {
			t.Fatalf("%q relayed %v, want %v", m.msg, relay, m.relay)
		}
	}
}

func TestReqQueueBoundsPipeline(t *testing.T) {
	var q reqQueue
	q.init()
	w := bufio.NewWriter(io.Discard)
	for i := 0; i < maxPipeline; i++ {
		q.push(request{kind: reqExecute}, w)
	}
	pushed := make(chan bool)
	go func() { pushed <- q.push(request{kind: reqSync}, w) }()
	select {
	case <-pushed:
		t.Fatal("push did not wait on a full queue")
	case <-time.After(50 * time.Millisecond):
	}
	q.onBackend('C')
	if ok := <-pushed; !ok {
		t.Fatal("push failed after room was made")
	}
	if q.pending() != maxPipeline {
		t.Fatalf("pending %d", q.pending())
	}
	go func() { pushed <- q.push(request{kind: reqSync}, w) }()
	time.Sleep(20 * time.Millisecond)
	q.close()
	if ok := <-pushed; ok {
		t.Fatal("push succeeded on a closed queue")
	}
}
