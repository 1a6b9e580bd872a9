package recommend

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/internal/fsutil"
	"github.com/kubearmor/kscmp/internal/testenv"
)

// TestWriteConfined: the policies of `recommend -o DIR` are managed files
// of DIR (#12 items 2 and 3). A namespace directory that is a link out of
// DIR is followed inside DIR, as if DIR were "/"; a FIFO or a device
// where a policy goes is refused, never opened (a FIFO would block the
// run, a device be destroyed); a killed run's temporary file is removed.
// Before the fix the link led the write to the directory outside, and the
// FIFO was written in place (the run blocked).
func TestWriteConfined(t *testing.T) {
	res, err := Recommend([]report.Source{reportOf("a", pod("ns", "p", "c", map[string]string{"app": "x"}, nil, "read"))}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Files) != 1 {
		t.Fatalf("want one file, got %d", len(res.Files))
	}
	rel := filepath.FromSlash(res.Files[0].Path)
	ns, name := filepath.Split(rel)

	t.Run("link out of the directory", func(t *testing.T) {
		dir, outside := t.TempDir(), t.TempDir()
		if err := os.Symlink(outside, filepath.Join(dir, filepath.Clean(ns))); err != nil {
			t.Fatal(err)
		}
		before := testenv.Tree(t, outside)
		_, err := res.Write(dir)
		if diff := testenv.TreeDiff(before, testenv.Tree(t, outside)); diff != "" {
			t.Errorf("a write left DIR through the link:\n%s", diff)
		}
		// outside, seen from DIR as the root, would be DIR/<outside>,
		// which does not exist: the write is refused, naming the link.
		if err == nil || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("want the write refused (the link leads nowhere inside DIR), got %v", err)
		}
		// Where the link leads inside DIR, the policy is written there.
		if err := os.MkdirAll(filepath.Join(dir, outside), 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := res.Write(dir); err != nil {
			t.Fatalf("write: %v", err)
		}
		inside := filepath.Join(dir, outside, name)
		if b, err := os.ReadFile(inside); err != nil || string(b) != string(res.Files[0].Data) {
			t.Errorf("the policy is not at %s, where the link leads inside DIR: %v", inside, err)
		}
		if diff := testenv.TreeDiff(before, testenv.Tree(t, outside)); diff != "" {
			t.Errorf("a write left DIR through the link:\n%s", diff)
		}
	})

	t.Run("special files", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, ns), 0o755); err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(dir, rel)
		if err := unix.Mkfifo(target, 0o644); err != nil {
			t.Fatal(err)
		}
		// A FIFO opened for writing would block until a reader came.
		done := make(chan error, 1)
		go func() { _, err := res.Write(dir); done <- err }()
		var err error
		select {
		case err = <-done:
		case <-time.After(30 * time.Second):
			// Unblock the writer (a reader opens the FIFO), then fail.
			if f, oerr := os.OpenFile(target, os.O_RDONLY|unix.O_NONBLOCK, 0); oerr == nil {
				defer f.Close()
			}
			t.Fatalf("the write opened the FIFO and blocked")
		}
		if !errors.Is(err, fsutil.ErrNotRegular) {
			t.Errorf("write over a FIFO: want an error wrapping ErrNotRegular, got %v", err)
		}
		if fi, err := os.Lstat(target); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
			t.Errorf("the FIFO was replaced: %v %v", fi.Mode(), err)
		}
	})

	t.Run("killed run's temporary file", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, ns), 0o755); err != nil {
			t.Fatal(err)
		}
		left := filepath.Join(dir, ns, fsutil.TempName(name))
		if err := os.WriteFile(left, []byte("half a pol"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := res.Write(dir); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(left); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the temporary file of a killed run is still there: %v", err)
		}
	})
}

// TestCommitConfined: with --git, -o names a directory of the checkout,
// and a link committed for it cannot lead the policies out of the
// checkout: it is resolved inside the checkout. Before the fix the write
// followed the link to wherever it pointed.
func TestCommitConfined(t *testing.T) {
	res, err := Recommend([]report.Source{reportOf("a", pod("ns", "p", "c", map[string]string{"app": "x"}, nil, "read"))}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	repo, git := newRepo(t)
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(repo, "policies")); err != nil {
		t.Fatal(err)
	}
	git("add", "policies")
	git("commit", "-q", "-m", "a link")
	before := testenv.Tree(t, outside)
	// Whether git then refuses the path beyond a link or commits what is
	// inside the checkout, nothing may be written outside it.
	res.Commit(context.Background(), repo, "policies", "kscmp/recommend")
	if diff := testenv.TreeDiff(before, testenv.Tree(t, outside)); diff != "" {
		t.Errorf("--git wrote outside the checkout through a committed link:\n%s", diff)
	}
}

// TestWriteAllOrNothing: when one policy's place is taken by something
// that is not a regular file, recommend -o writes none of the policies (a
// person reviews the set as a whole; a half-written set reads as if the
// other workloads had nothing recommended). Before the check, the files
// before the FIFO were written.
func TestWriteAllOrNothing(t *testing.T) {
	res, err := Recommend([]report.Source{reportOf("a",
		pod("ns", "p", "c", map[string]string{"app": "x"}, nil, "read"),
		pod("ns", "q", "c", map[string]string{"app": "y"}, nil, "write"))}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Files) != 2 {
		t.Fatalf("want two files, got %d", len(res.Files))
	}
	dir := t.TempDir()
	last := filepath.Join(dir, filepath.FromSlash(res.Files[1].Path))
	if err := os.MkdirAll(filepath.Dir(last), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(last, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := res.Write(dir); !errors.Is(err, fsutil.ErrNotRegular) {
		t.Fatalf("want an error wrapping ErrNotRegular, got %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(res.Files[0].Path))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s was written although %s could not be: %v", res.Files[0].Path, res.Files[1].Path, err)
	}
}
