package status

import (
	"go/build"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/dbalproxy/dbalproxy/"

// TestNoWireImport keeps the dependency direction this package exists for:
// the packages beside the protocol server reach it through status and their
// own small interfaces, never by importing wire (only cmd/dbalproxy does).
// Test files may import wire; only the build graph counts.
func TestNoWireImport(t *testing.T) {
	for _, dir := range []string{"console", "metrics", "bridge", "status"} {
		pkg, err := build.ImportDir(filepath.Join("..", dir), 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range pkg.Imports {
			if imp == module+"wire" {
				t.Errorf("package %s imports %s", dir, imp)
			}
		}
	}
}

// TestLeaf checks that status imports no dbalproxy package: it sits below
// wire, console and metrics.
func TestLeaf(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if strings.HasPrefix(imp, module) {
			t.Errorf("status imports %s", imp)
		}
	}
}
