package policy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/dbalproxy/dbalproxy/decision"
	"github.com/fsnotify/fsnotify"
)

// Watch timing; variables so that tests can shorten them.
var (
	// watchDebounce is how long Watch waits after the last file event
	// before it reloads, so that an editor's save (or a git checkout)
	// becomes one reload.
	watchDebounce = 200 * time.Millisecond
	// watchRetry is how often Watch tries to watch a vanished directory
	// again.
	watchRetry = time.Second
)

// Watch reloads the policy set when files in the directory change: it
// watches the directory and its subdirectories with fsnotify, waits for
// events to settle (about 200ms), then calls Reload (which keeps the
// running set if the new one is broken, and does nothing if the content is
// unchanged). If the directory vanishes, the running set stays in force and
// Watch watches for it to come back. Watch returns nil when ctx is done, or
// an error if it cannot start. In ModeDisabled it only waits for ctx.
//
// With a bundle service (Options.Bundle), Watch polls it instead, as
// BundleOptions describes, until ctx is done.
func (e *Engine) Watch(ctx context.Context) error {
	if e.mode == decision.ModeDisabled {
		<-ctx.Done()
		return nil
	}
	if e.bundle != nil {
		return e.pollLoop(ctx)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("policy: watch %s: %w", e.dir, err)
	}
	defer w.Close()
	if err := addTree(w, e.dir); err != nil {
		return fmt.Errorf("policy: watch %s: %w", e.dir, err)
	}
	e.log.Info().Str("policy_dir", e.dir).Msg("watching the policy directory for changes")

	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	var retry *time.Ticker
	var retryC <-chan time.Time
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	lost := func() {
		if retry == nil {
			e.log.Warn().Str("policy_dir", e.dir).Msg("the policy directory vanished; the running policy set stays in force")
			retry = time.NewTicker(watchRetry)
			retryC = retry.C
		}
	}

	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("policy: watch: fsnotify closed its event channel")
			}
			if ev.Name == e.dir && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				_ = w.Remove(e.dir) // a renamed directory would still be watched
				lost()
			}
			if ev.Has(fsnotify.Create) && !skipName(filepath.Base(ev.Name)) {
				// A new subdirectory: watch it too (errors: it is gone again).
				_ = addTree(w, ev.Name)
			}
			// Any event may change the set (Kubernetes swaps a hidden
			// "..data" symlink); Reload is a no-op when nothing changed.
			debounce.Reset(watchDebounce)
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("policy: watch: fsnotify closed its error channel")
			}
			e.log.Warn().Err(err).Str("policy_dir", e.dir).Msg("policy directory watch error")
		case <-retryC:
			if err := addTree(w, e.dir); err == nil {
				retry.Stop()
				retry, retryC = nil, nil
				e.log.Info().Str("policy_dir", e.dir).Msg("the policy directory is back")
				debounce.Reset(watchDebounce)
			}
		case <-debounce.C:
			_ = e.Reload() // logs its own failure
		}
	}
}

// addTree watches dir and its subdirectories, except hidden ones. A path
// that is not a directory is ignored.
func addTree(w *fsnotify.Watcher, dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if path != dir && skipName(d.Name()) {
			return filepath.SkipDir
		}
		return w.Add(path)
	})
}
