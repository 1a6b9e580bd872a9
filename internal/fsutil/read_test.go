package fsutil

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestReadRegular: only regular files are read, up to the limit; a FIFO, a
// device, a directory are refused by name without being opened (a FIFO's
// open would block), and a file over the limit is refused before reading.
func TestReadRegular(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	os.WriteFile(file, []byte("12345"), 0o644)
	link := filepath.Join(dir, "link.yaml")
	os.Symlink(file, link)
	for _, p := range []string{file, link} {
		if data, err := ReadRegular(p, 5); err != nil || string(data) != "12345" {
			t.Errorf("%s: %q %v", p, data, err)
		}
	}
	if data, err := ReadRegular(file, 0); err != nil || string(data) != "12345" {
		t.Errorf("default limit: %q %v", data, err)
	}
	if _, err := ReadRegular(file, 4); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), file+": file too large: 5 bytes, more than the limit of 4") {
		t.Errorf("over the limit: %v", err)
	}
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero.yaml")
	os.Symlink("/dev/zero", zero)
	for p, kind := range map[string]string{fifo: "named pipe (FIFO)", zero: "character device", dir: "directory"} {
		_, err := ReadRegular(p, 0)
		if !errors.Is(err, ErrNotRegular) || err.Error() != p+" is a "+kind+", not a regular file: not read" {
			t.Errorf("%s: %v", p, err)
		}
	}
	if _, err := ReadRegular(filepath.Join(dir, "missing"), 0); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	// ReadOpened refuses what it was handed open, too.
	f, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := ReadOpened(f, fifo, 10); !errors.Is(err, ErrNotRegular) {
		t.Errorf("an open FIFO: %v", err)
	}
}
