// Package testenv decides what a test does when a real part it needs (root,
// a kernel feature, a runtime, a built binary) is missing: outside CI it is
// skipped with a message that names what is missing and how to get it; in CI
// (CI=true) it fails, because CI must run everything.
package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// InCI reports whether the tests run in CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing skips tb, or fails it in CI, when anything is missing. Each entry
// names one missing prerequisite and, where it helps, how to get it.
func Missing(tb testing.TB, missing ...string) {
	tb.Helper()
	if len(missing) == 0 {
		return
	}
	msg := "missing prerequisite: " + strings.Join(missing, "; ")
	if InCI() {
		tb.Fatal(msg + " (CI=true: not skipping)")
	}
	tb.Skip(msg)
}

// ModuleRoot returns the module's root directory: the first directory with a
// go.mod from the test's working directory (its package's) up.
func ModuleRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("testenv: no go.mod above the working directory")
		}
		dir = parent
	}
}
