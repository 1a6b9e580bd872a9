package fsutil

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a", "b", "profile.json")
	changed, err := WriteFile(p, []byte("one\n"), 0o644)
	if err != nil || !changed {
		t.Fatalf("first write: %v %v", changed, err)
	}
	st1, _ := os.Stat(p)
	time.Sleep(10 * time.Millisecond)
	changed, err = WriteFile(p, []byte("one\n"), 0o644)
	if err != nil || changed {
		t.Fatalf("same content: changed=%v err=%v", changed, err)
	}
	st2, _ := os.Stat(p)
	if !st2.ModTime().Equal(st1.ModTime()) || !os.SameFile(st1, st2) {
		t.Error("unchanged content was rewritten")
	}
	changed, err = WriteFile(p, []byte("two\n"), 0o600)
	if err != nil || !changed {
		t.Fatalf("new content: %v %v", changed, err)
	}
	b, _ := os.ReadFile(p)
	st3, _ := os.Stat(p)
	if string(b) != "two\n" || st3.Mode().Perm() != 0o600 {
		t.Errorf("content %q mode %v", b, st3.Mode())
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	// A directory in the way: an error, and nothing else changes.
	if _, err := WriteFile(filepath.Join(dir, "a"), []byte("x"), 0o644); err == nil {
		t.Error("writing over a directory succeeded")
	}
}
