package testenv

import (
	"context"
	"errors"
	"path/filepath"
	"syscall"
	"time"
)

// Restart stops the server with a fast shutdown (every backend gets FATAL
// 57P01 and its connection closes) and starts it again on the same port and
// data directory, for tests of what clients see when the database restarts.
// down, if not nil, runs while the server is stopped.
func (c *Cluster) Restart(ctx context.Context, down func()) error {
	if c.proc == nil {
		return errors.New("testenv: restart of a cluster that is not running")
	}
	_ = c.proc.Process.Signal(syscall.SIGINT)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		_ = c.proc.Process.Kill()
		<-c.exited
	}
	c.proc = nil
	if down != nil {
		down()
	}
	return c.startServer(ctx, filepath.Join(c.dir, "data"))
}
