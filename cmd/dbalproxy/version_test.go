package main

import (
	osexec "os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// The version comes from -ldflags when given, else from the module's build
// info (a tagged or pseudo-version), else "dev"; the revision, its time and
// the dirty flag from the VCS stamp.
func TestMakeBuildInfo(t *testing.T) {
	stamped := &debug.BuildInfo{
		GoVersion: "go1.99.1",
		Main:      debug.Module{Path: "github.com/dbalproxy/dbalproxy", Version: "v0.0.0-20260101120000-0123456789ab+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-01-01T12:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	for _, tc := range []struct {
		name       string
		ldv, ldr   string
		bi         *debug.BuildInfo
		want       buildInfo
		wantString string
	}{
		{name: "no build info", want: buildInfo{Version: "dev", GoVersion: runtime.Version()},
			wantString: "dbalproxy dev (" + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")"},
		{name: "devel, no vcs", bi: &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Version: "(devel)"}},
			want: buildInfo{Version: "dev", GoVersion: "go1.99.1"}},
		{name: "vcs stamp", bi: stamped,
			want: buildInfo{Version: "v0.0.0-20260101120000-0123456789ab+dirty", Revision: "0123456789abcdef0123456789abcdef01234567",
				Time: "2026-01-01T12:00:00Z", Modified: true, GoVersion: "go1.99.1"},
			wantString: "dbalproxy v0.0.0-20260101120000-0123456789ab+dirty (revision 0123456789ab, 2026-01-01T12:00:00Z, modified; go1.99.1 " +
				runtime.GOOS + "/" + runtime.GOARCH + ")"},
		{name: "ldflags win", ldv: "v1.2.3", ldr: "fedcba9876543210", bi: stamped,
			want: buildInfo{Version: "v1.2.3", Revision: "fedcba9876543210", Time: "2026-01-01T12:00:00Z", Modified: true, GoVersion: "go1.99.1"}},
		{name: "tagged module", bi: &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Version: "v1.4.0"}},
			want: buildInfo{Version: "v1.4.0", GoVersion: "go1.99.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := makeBuildInfo(tc.ldv, tc.ldr, tc.bi)
			if got != tc.want {
				t.Fatalf("makeBuildInfo = %+v, want %+v", got, tc.want)
			}
			if tc.wantString != "" && got.String() != tc.wantString {
				t.Fatalf("String() = %q, want %q", got.String(), tc.wantString)
			}
		})
	}
}

// `dbalproxy version` prints more than "dev": at least the Go version and
// platform the binary was built with.
func TestVersionCommand(t *testing.T) {
	for _, arg := range []string{"version", "--version"} {
		code, out, _ := runCLI(t, arg)
		if code != 0 || !strings.HasPrefix(out, "dbalproxy ") || !strings.Contains(out, runtime.Version()) {
			t.Fatalf("%s: code %d, output %q", arg, code, out)
		}
	}
}

// A release build sets the version and revision with -ldflags -X (the
// Dockerfile does, from build arguments): they win over the build info.
// (The go command stamps no VCS settings in a linked git worktree, whose
// .git is a file, nor in a container build without .git: golang/go#58218.)
func TestVersionOfBuiltBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	head, err := osexec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skip("not in a git checkout:", err)
	}
	rev := strings.TrimSpace(string(head))
	bin := filepath.Join(t.TempDir(), "dbalproxy")
	build := osexec.Command("go", "build", "-ldflags=-X main.version=v9.8.7-test -X main.revision="+rev, "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := osexec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("version: %v\n%s", err, out)
	}
	if want := "dbalproxy v9.8.7-test (revision " + rev[:12]; !strings.HasPrefix(string(out), want) {
		t.Fatalf("version printed %q, want it to start with %q", out, want)
	}
}
