package main

import (
	"os/exec"
	"testing"
	"time"
)

// pct is the nearest-rank quantile.
func TestPct(t *testing.T) {
	d := []time.Duration{1 * time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond, 4 * time.Millisecond}
	for _, c := range []struct {
		q    float64
		want float64
	}{{0.5, 2}, {0.99, 4}, {1, 4}, {0, 1}} {
		if got := pct(d, c.q); got != c.want {
			t.Errorf("pct(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if pct(nil, 0.5) != 0 {
		t.Error("pct of nothing is not 0")
	}
}

// cpuTime reads a subprocess's CPU time from /proc and the relay's from
// dbalbench's own rusage; it grows as the process works.
func TestCPUTime(t *testing.T) {
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 5")
	if err := cmd.Start(); err != nil {
		t.Skip("no sh:", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	sub := &target{name: tProxy, proc: &proc{cmd: cmd}}
	var d time.Duration
	deadline := time.Now().Add(10 * time.Second)
	for d == 0 && time.Now().Before(deadline) {
		var ok bool
		if d, ok = sub.cpuTime(); !ok {
			t.Fatal("no CPU time for a running subprocess")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d <= 0 {
		t.Errorf("the busy subprocess used %v of CPU", d)
	}
	relay := &target{name: tRelay}
	before, ok := relay.cpuTime()
	for end := time.Now().Add(30 * time.Millisecond); time.Now().Before(end); {
	}
	after, _ := relay.cpuTime()
	if !ok || after <= before {
		t.Errorf("own CPU time %v -> %v (%v)", before, after, ok)
	}
	if _, ok := (&target{name: tDirect}).cpuTime(); ok {
		t.Error("direct has no process of its own to measure")
	}
}
