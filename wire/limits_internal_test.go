package wire

import (
	"bufio"
	"io"
	"testing"

	"github.com/dbalproxy/dbalproxy/plan"
)

// TestReqQueueTimedFront: a statement's timer counts from when every
// request ahead of it that may take time (an Execute, a sync point) was
// answered; the Parse, Bind and Describe ahead of it do not hold it back,
// and a Flush is needed only behind another Execute.
func TestReqQueueTimedFront(t *testing.T) {
	var q reqQueue
	q.init()
	w := bufio.NewWriter(io.Discard)
	timed := func() *stmtRun {
		return &stmtRun{plan: &plan.Plan{Statements: []plan.Statement{{TimeoutMS: 100}}}, timer: &stmtTimer{ms: 100}}
	}
	r1, r2, r3 := timed(), timed(), timed()
	q.push(request{kind: reqParse}, w)
	q.push(request{kind: reqBind}, w)
	if q.execsPending() {
		t.Fatal("no Execute is pending yet")
	}
	q.push(request{kind: reqExecute, run: r1}, w)
	if r1.timer.frontAt.Load() == 0 || q.frontIs(r1) != frontIsRun {
		t.Fatal("an Execute behind a Parse and a Bind runs at once")
	}
	if !q.execsPending() {
		t.Fatal("an Execute is pending")
	}
	q.push(request{kind: reqBind}, w)
	q.push(request{kind: reqExecute, run: r2}, w)
	q.push(request{kind: reqSync}, w)
	q.push(request{kind: reqQuery, run: r3}, w)
	if r2.timer.frontAt.Load() != 0 || q.frontIs(r2) != frontOther || q.frontIs(r3) != frontOther {
		t.Fatal("an Execute behind another waits")
	}
	for _, m := range []byte{'1', '2', 'C'} {
		q.onBackend(m)
	}
	if r2.timer.frontAt.Load() == 0 || q.frontIs(r2) != frontIsRun || q.frontIs(r1) != frontClosed {
		t.Fatal("the second Execute runs once the first is answered")
	}
	q.onBackend('2')
	q.onBackend('C')
	if r3.timer.frontAt.Load() != 0 || q.frontIs(r3) != frontOther {
		t.Fatal("a Query waits for the Sync ahead of it (it may commit)")
	}
	q.onBackend('Z')
	if r3.timer.frontAt.Load() == 0 || q.frontIs(r3) != frontIsRun || q.execsPending() {
		t.Fatal("the Query runs after the Sync's ReadyForQuery")
	}
}
