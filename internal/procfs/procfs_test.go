package procfs

import (
	"os"
	"path/filepath"
	"testing"
)

func TestStartTicks(t *testing.T) {
	dir := t.TempDir()
	// A comm with spaces and parentheses must not shift the fields.
	stat := "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615\n"
	p := filepath.Join(dir, "stat")
	os.WriteFile(p, []byte(stat), 0o644)
	if got, err := StartTicks(p); err != nil || got != 987654 {
		t.Errorf("StartTicks = %d, %v; want 987654", got, err)
	}
	os.WriteFile(p, []byte("42 (a) S 1\n"), 0o644)
	if _, err := StartTicks(p); err == nil {
		t.Error("a short stat file gave no error")
	}
	if got, err := StartTicks("/proc/self/stat"); err != nil || got == 0 {
		t.Errorf("/proc/self/stat: %d, %v", got, err)
	}
}
