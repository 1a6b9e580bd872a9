package fsutil

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kubearmor/kscmp/internal/testenv"
)

// identity is what a rewrite changes: an atomic write makes a new inode, an
// in-place write or a chmod a new ctime. Unlike the mtime, it needs no
// sleep to tell a rewrite apart.
type identity struct {
	ino   uint64
	ctime syscall.Timespec
}

func identityOf(t *testing.T, path string) identity {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	return identity{sys.Ino, sys.Ctim}
}

func TestWriteFile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(string, []byte, fs.FileMode) (bool, error)
	}{{"WriteFile", WriteFile}, {"WriteManaged", WriteManaged}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "a", "b", "profile.json")
			changed, err := tc.write(p, []byte("one\n"), 0o644)
			if err != nil || !changed {
				t.Fatalf("first write: %v %v", changed, err)
			}
			id1 := identityOf(t, p)
			changed, err = tc.write(p, []byte("one\n"), 0o644)
			if err != nil || changed {
				t.Fatalf("same content: changed=%v err=%v", changed, err)
			}
			if identityOf(t, p) != id1 {
				t.Error("unchanged content was rewritten")
			}
			changed, err = tc.write(p, []byte("two\n"), 0o600)
			if err != nil || !changed {
				t.Fatalf("new content: %v %v", changed, err)
			}
			b, _ := os.ReadFile(p)
			st3, _ := os.Stat(p)
			if string(b) != "two\n" || st3.Mode().Perm() != 0o600 {
				t.Errorf("content %q mode %v", b, st3.Mode())
			}
			if identityOf(t, p) == id1 {
				t.Error("new content, same inode and ctime")
			}
			entries, _ := os.ReadDir(filepath.Dir(p))
			if len(entries) != 1 {
				t.Errorf("temporary files left: %v", entries)
			}
			// A directory in the way: an error, and nothing else changes.
			if _, err := tc.write(filepath.Join(dir, "a"), []byte("x"), 0o644); err == nil {
				t.Error("writing over a directory succeeded")
			}
		})
	}
}

// within runs f and fails the test with f's error, or when f has not
// returned after d: a writer that opens or reads a FIFO or a device blocks
// or never ends. (f reports through its error, never through t, since it may
// outlive the test.)
func within(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	case <-time.After(d):
		t.Fatalf("%s: still running after %v", what, d)
	}
}

// refused returns nil when err is a refusal (ErrNotRegular) whose message
// has want, and an error saying what happened instead otherwise.
func refused(want string, err error) error {
	if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), want) {
		return fmt.Errorf("got error %v, want a refusal (ErrNotRegular) naming %q", err, want)
	}
	return nil
}

// mustKind fails unless path (not followed) is still a file of type typ.
func mustKind(t *testing.T, path string, typ fs.FileMode) {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Type() != typ {
		t.Errorf("%s is now a %s, was a %s", path, Kind(st.Mode()), Kind(typ))
	}
}

// TestSpecialFiles: outputs the user names that are not regular files are
// written in place and never read nor replaced; managed files refuse them
// without opening them.
func TestSpecialFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root (for mknod)")
	}
	dir := t.TempDir()
	data := []byte("{\"report\": 1}\n")

	// A FIFO: the writer must neither read it (which blocks until someone
	// writes) nor replace it; a reader gets the data.
	t.Run("fifo", func(t *testing.T) {
		fifo := filepath.Join(dir, "fifo")
		if err := unix.Mkfifo(fifo, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			// Unblock a writer of an old version stuck opening the FIFO.
			if f, err := os.OpenFile(fifo, os.O_RDWR, 0); err == nil {
				f.Close()
			}
		})
		got := make(chan []byte, 1)
		go func() {
			f, err := os.Open(fifo)
			if err != nil {
				got <- nil
				return
			}
			b, _ := io.ReadAll(f)
			f.Close()
			got <- b
		}()
		within(t, 10*time.Second, "WriteFile to a FIFO", func() error {
			if _, err := WriteFile(fifo, data, 0o644); err != nil {
				return err
			}
			if b := <-got; string(b) != string(data) {
				return fmt.Errorf("the FIFO's reader got %q, want %q", b, data)
			}
			return nil
		})
		mustKind(t, fifo, fs.ModeNamedPipe)
		within(t, 10*time.Second, "WriteManaged to a FIFO", func() error {
			_, err := WriteManaged(fifo, data, 0o644)
			return refused(fifo, err)
		})
		mustKind(t, fifo, fs.ModeNamedPipe)
	})

	// A character device like /dev/null (1,3), made here.
	t.Run("device", func(t *testing.T) {
		null := filepath.Join(dir, "null")
		if err := unix.Mknod(null, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		within(t, 10*time.Second, "WriteFile to a device", func() error {
			_, err := WriteFile(null, data, 0o644)
			return err
		})
		mustKind(t, null, fs.ModeDevice|fs.ModeCharDevice)
		within(t, 10*time.Second, "WriteManaged to a device", func() error {
			_, err := WriteManaged(null, data, 0o644)
			return refused(null+" is a character device", err)
		})
		mustKind(t, null, fs.ModeDevice|fs.ModeCharDevice)
	})

	// A symbolic link to /dev/zero: reading it never ends.
	t.Run("link to /dev/zero", func(t *testing.T) {
		zero := filepath.Join(dir, "zero")
		if err := os.Symlink("/dev/zero", zero); err != nil {
			t.Fatal(err)
		}
		within(t, 10*time.Second, "WriteFile to a link to /dev/zero", func() error {
			_, err := WriteFile(zero, data, 0o644)
			return err
		})
		mustKind(t, zero, fs.ModeSymlink)
		mustKind(t, "/dev/zero", fs.ModeDevice|fs.ModeCharDevice)
		within(t, 10*time.Second, "WriteManaged to a link to /dev/zero", func() error {
			_, err := WriteManaged(zero, data, 0o644)
			return refused(zero+" is a symbolic link", err)
		})
		mustKind(t, zero, fs.ModeSymlink)
	})

	// A symbolic link to a regular file: written through, the link stays,
	// and an unchanged write is skipped.
	t.Run("link to a file", func(t *testing.T) {
		target := filepath.Join(dir, "target.json")
		os.WriteFile(target, []byte("old\n"), 0o644)
		link := filepath.Join(dir, "link.json")
		os.Symlink("target.json", link)
		if changed, err := WriteFile(link, data, 0o644); err != nil || !changed {
			t.Fatalf("WriteFile through a link: %v %v", changed, err)
		}
		if b, _ := os.ReadFile(target); string(b) != string(data) {
			t.Errorf("link target holds %q", b)
		}
		mustKind(t, link, fs.ModeSymlink)
		if changed, err := WriteFile(link, data, 0o644); err != nil || changed {
			t.Errorf("unchanged WriteFile through a link: %v %v", changed, err)
		}
	})
}

// TestCompareIsBounded: the old content is read only as far as the new
// content's size + 1. A sparse file of 1 TiB would take the whole memory.
func TestCompareIsBounded(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.json")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 40); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, write := range []func(string, []byte, fs.FileMode) (bool, error){WriteFile, WriteManaged} {
		data := []byte("small\n")
		within(t, 10*time.Second, "write over a 1 TiB file", func() error {
			if changed, err := write(p, data, 0o644); err != nil || !changed {
				return fmt.Errorf("changed %v, error %v", changed, err)
			}
			return nil
		})
		if b, _ := os.ReadFile(p); string(b) != string(data) {
			t.Errorf("content %q", b)
		}
		os.Truncate(p, 1<<40)
	}
}

func TestWriteStdout(t *testing.T) {
	t.Chdir(t.TempDir()) // where an old version made a file named "-"
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	changed, err := WriteFile("-", []byte("to stdout\n"), 0o644)
	os.Stdout = stdout
	w.Close()
	b, _ := io.ReadAll(r)
	if err != nil || !changed || string(b) != "to stdout\n" {
		t.Errorf("WriteFile(-): %v %v %q", changed, err, b)
	}
	if _, err := os.Stat("-"); err == nil {
		t.Error(`WriteFile("-") made a file named "-"`)
	}
}

func TestTempNames(t *testing.T) {
	for _, name := range []string{"web.json", ".kscmp-managed", "50-kscmp-seccomp.conf"} {
		tmp := TempName(name)
		if !IsTemp(tmp) || !strings.HasPrefix(tmp, "."+name+".tmp-") || len(tmp) != len(name)+TempOverhead {
			t.Errorf("TempName(%q) = %q", name, tmp)
		}
		if IsTemp(name) {
			t.Errorf("IsTemp(%q)", name)
		}
	}
	for _, name := range []string{".web.json.tmp-1234567890", ".x.tmp-0a1b2c3d"} {
		if !IsTemp(name) {
			t.Errorf("IsTemp(%q) = false", name)
		}
	}
	for _, name := range []string{"a.tmp-b.json", "web.tmp-12345678", ".tmp-12345678", ".x.tmp-", ".x.tmp-zzzzzzzz", ".x.tmp-12345678901"} {
		if IsTemp(name) {
			t.Errorf("IsTemp(%q) = true", name)
		}
	}

	// The longest name that leaves room for its temporary file is written;
	// one byte more is refused before anything is made.
	dir := t.TempDir()
	longest := strings.Repeat("n", NameMax-TempOverhead)
	if _, err := WriteManaged(filepath.Join(dir, longest), []byte("x"), 0o644); err != nil {
		t.Errorf("name of %d bytes: %v", len(longest), err)
	}
	if _, err := WriteManaged(filepath.Join(dir, longest+"n"), []byte("x"), 0o644); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("name of %d bytes: %v", len(longest)+1, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("files: %v", entries)
	}
}

func TestTempOf(t *testing.T) {
	for tmp, want := range map[string]string{".web.json.tmp-0a1b2c3d": "web.json", "..kscmp-managed.tmp-12": ".kscmp-managed", ".a.tmp-b.tmp-00000000": "a.tmp-b"} {
		if got, ok := TempOf(tmp); !ok || got != want {
			t.Errorf("TempOf(%q) = %q, %v; want %q", tmp, got, ok, want)
		}
	}
	if got, ok := TempOf(TempName("x.conf")); !ok || got != "x.conf" {
		t.Errorf("TempOf(TempName(x.conf)) = %q, %v", got, ok)
	}
}
