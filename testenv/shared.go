package testenv

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var shared struct {
	once    sync.Once
	cluster *Cluster
	err     error
}

var dbCounter atomic.Uint64

// RunMain is for a package's TestMain: it runs the tests and then stops the
// package's shared cluster, if one was started, and returns the exit code.
func RunMain(m *testing.M) int {
	code := m.Run()
	if shared.cluster != nil {
		_ = shared.cluster.Stop()
	}
	return code
}

// Shared returns the package-wide cluster, starting it on first use. A
// cluster that cannot start fails the test; it never skips.
func Shared(tb testing.TB) *Cluster {
	tb.Helper()
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		shared.cluster, shared.err = Start(ctx, Options{})
	})
	if shared.err != nil {
		tb.Fatalf("testenv: no PostgreSQL for the tests: %v", shared.err)
	}
	return shared.cluster
}

// NewDatabase creates a database of its own for the test on the shared
// cluster, owned by the app login, and drops it when the test ends.
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
			tb.Logf("testenv: dropping %s: %v", name, err)
		}
	})
	return name
}
