package fsutil

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestCheckWritable: what WriteFile can write passes, without a change
// anywhere (no file, no directory made, none left); a directory, and a
// path below a file, do not, with an error that says why.
func TestCheckWritable(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "report.json")
	os.WriteFile(file, []byte("old"), 0o644)
	fifo := filepath.Join(dir, "fifo")
	syscall.Mkfifo(fifo, 0o644)
	dangling := filepath.Join(dir, "dangling")
	os.Symlink("new/target.json", dangling)
	for _, p := range []string{"-", file, filepath.Join(dir, "new.json"), filepath.Join(dir, "a", "b", "new.json"), fifo, "/dev/null", dangling} {
		if err := CheckWritable(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "dangling fifo report.json" {
		t.Errorf("the check changed the directory: %v", names)
	}
	if b, _ := os.ReadFile(file); string(b) != "old" {
		t.Errorf("the file changed: %q", b)
	}
	for p, want := range map[string]string{
		dir:                                "is a directory",
		filepath.Join(file, "x.json"):      "not a directory",
		filepath.Join(file, "a", "x.json"): "not a directory",
	} {
		if err := CheckWritable(p); err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "write "+p+": ") {
			t.Errorf("%s: %v, want %q", p, err, want)
		}
	}
}
