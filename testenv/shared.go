package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// shared is the package-wide cluster of a test binary.
var shared struct {
	mu      sync.Mutex
	started bool     // Start was attempted; guarded by mu
	stopped bool     // RunMain stopped the cluster; guarded by mu
	cluster *Cluster // guarded by mu
	err     error    // Start's error; guarded by mu
}

// dbCounter numbers the databases NewDatabase creates.
var dbCounter atomic.Uint64

// RunMain is for a package's TestMain: it runs the tests and then stops the
// package's shared cluster, if one was started, and returns the exit code:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.RunMain(m)) }
func RunMain(m *testing.M) int {
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	shared.stopped = true
	if shared.cluster != nil {
		if err := shared.cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	return code
}

// Shared returns the package-wide cluster, starting it on first use; it is
// safe to call from parallel tests. A cluster that cannot start fails the
// test (and every later caller); it never skips.
func Shared(tb testing.TB) *Cluster {
	tb.Helper()
	c, err := sharedCluster()
	if err != nil {
		tb.Fatalf("testenv: no PostgreSQL for the tests: %v", err)
	}
	return c
}

// sharedCluster starts the shared cluster once and returns it.
func sharedCluster() (*Cluster, error) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.stopped {
		return nil, errors.New("testenv: the shared cluster was already stopped by RunMain")
	}
	if !shared.started {
		shared.started = true
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		shared.cluster, shared.err = Start(ctx, Options{})
	}
	return shared.cluster, shared.err
}

// NewDatabase creates a database of its own for the test on the shared
// cluster, owned by the app login, registers a tb.Cleanup that drops it,
// and returns its name.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	c := Shared(tb)
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbCounter.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.CreateDatabase(ctx, name); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.DropDatabase(ctx, name); err != nil {
			tb.Error(err)
		}
	})
	return name
}
