package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/dbalproxy/dbalproxy/metrics"
)

// version and revision may be set at build time, e.g. by a release build:
//
//	go build -ldflags "-X main.version=v1.2.3 -X main.revision=$(git rev-parse HEAD)" ./cmd/dbalproxy
//
// Left empty, they come from the module's build info: the version the go
// command stamps (a tag, or a pseudo-version of the commit, +dirty for a
// tree with changes; "dev" when there is none) and the VCS settings.
var (
	version  string
	revision string
)

// buildInfo describes the running binary.
type buildInfo struct {
	Version   string // v1.2.3, a pseudo-version, or "dev"
	Revision  string // the VCS commit; empty when unknown
	Time      string // the commit's time (RFC 3339); empty when unknown
	Modified  bool   // built from a tree with uncommitted changes
	GoVersion string // the Go toolchain that built it
}

// readBuildInfo is the running binary's buildInfo.
func readBuildInfo() buildInfo {
	bi, _ := debug.ReadBuildInfo()
	return makeBuildInfo(version, revision, bi)
}

// makeBuildInfo combines the -ldflags values (which win when set) with the
// module build info bi (which may be nil).
func makeBuildInfo(ldVersion, ldRevision string, bi *debug.BuildInfo) buildInfo {
	b := buildInfo{Version: "dev", GoVersion: runtime.Version()}
	if bi != nil {
		if bi.GoVersion != "" {
			b.GoVersion = bi.GoVersion
		}
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			b.Version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Revision = s.Value
			case "vcs.time":
				b.Time = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	if ldVersion != "" {
		b.Version = ldVersion
	}
	if ldRevision != "" {
		b.Revision = ldRevision
	}
	return b
}

// String is what `dbalproxy version` prints, e.g.
// "dbalproxy v1.2.3 (revision 0123456789ab, 2026-01-01T12:00:00Z; go1.26.8 linux/amd64)".
func (b buildInfo) String() string {
	var vcs []string
	if b.Revision != "" {
		vcs = append(vcs, "revision "+shortRevision(b.Revision))
	}
	if b.Time != "" {
		vcs = append(vcs, b.Time)
	}
	if b.Modified {
		vcs = append(vcs, "modified")
	}
	paren := fmt.Sprintf("%s %s/%s", b.GoVersion, runtime.GOOS, runtime.GOARCH)
	if len(vcs) > 0 {
		paren = strings.Join(vcs, ", ") + "; " + paren
	}
	return fmt.Sprintf("dbalproxy %s (%s)", b.Version, paren)
}

// shortRevision is a commit hash cut to 12 characters, as Go pseudo-versions
// and most tools show it.
func shortRevision(r string) string {
	if len(r) > 12 {
		return r[:12]
	}
	return r
}

// metricsBuildInfo is the running binary's dbalproxy_build_info.
func metricsBuildInfo() metrics.BuildInfo {
	b := readBuildInfo()
	return metrics.BuildInfo{Version: b.Version, Revision: b.Revision, GoVersion: b.GoVersion}
}

// loginNames are the configured logins' names, in order: the values of the
// metrics' login label.
func loginNames(cfg *Config) []string {
	out := make([]string, 0, len(cfg.Logins))
	for _, l := range cfg.Logins {
		out = append(out, l.Name)
	}
	return out
}
