package safepath

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/kubearmor/kscmp/internal/fsutil"
)

// tree makes root and, next to it, outside: a directory that nothing done
// inside root may touch. root holds links that point out of it, an
// absolute one and a relative one.
func tree(t *testing.T) (root, outside string) {
	t.Helper()
	base := t.TempDir()
	root, outside = filepath.Join(base, "root"), filepath.Join(base, "outside")
	for _, d := range []string{root, outside, filepath.Join(root, "real/dir")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(outside, "victim"), []byte("keep\n"), 0o644)
	os.Symlink(outside, filepath.Join(root, "abs"))             // absolute, out of root
	os.Symlink("../../outside", filepath.Join(root, "real/up")) // relative, out of root
	os.Symlink("/real/dir", filepath.Join(root, "inside"))      // absolute, meant for the root
	os.Symlink(filepath.Join(outside, "victim"), filepath.Join(root, "real/dir/link"))
	return root, outside
}

func listing(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			names = append(names, p)
		}
		return nil
	})
	return names
}

func TestConfined(t *testing.T) {
	root, outside := tree(t)
	before := listing(t, outside)
	r, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	// Links that point out of the root are resolved inside it, as if the
	// root were "/": where that is nothing, a write is refused; where the
	// root has the directory, the write lands there.
	for _, rel := range []string{"abs/victim", "real/up/victim"} {
		if _, err := r.WriteFile(rel, []byte(rel), 0o644); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("write %s through a link to nothing in the root: %v", rel, err)
		}
	}
	os.MkdirAll(filepath.Join(root, outside), 0o755)
	os.MkdirAll(filepath.Join(root, "outside"), 0o755)
	for rel, want := range map[string]string{
		"abs/victim":            filepath.Join(root, outside, "victim"),
		"real/up/victim":        filepath.Join(root, "outside/victim"),
		"../../outside/victim":  filepath.Join(root, "outside/victim"),
		"/inside/new/file.conf": filepath.Join(root, "real/dir/new/file.conf"),
	} {
		if _, err := r.WriteFile(rel, []byte(rel), 0o644); err != nil {
			t.Errorf("write %s: %v", rel, err)
			continue
		}
		if b, err := os.ReadFile(want); err != nil || string(b) != rel {
			t.Errorf("write %s: %s holds %q, %v", rel, want, b, err)
		}
		if b, err := r.ReadFile(rel, 100); err != nil || string(b) != rel {
			t.Errorf("read %s: %q %v", rel, b, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "victim")); string(b) != "keep\n" {
		t.Errorf("outside/victim now holds %q", b)
	}
	if after := listing(t, outside); !slices.Equal(before, after) {
		t.Errorf("outside changed: %v → %v", before, after)
	}

	// The last component is never followed: a link there is refused by
	// reads, writes and removals, and stays.
	link := "inside/link"
	if _, err := r.WriteFile(link, []byte("x"), 0o644); !errors.Is(err, fsutil.ErrNotRegular) {
		t.Errorf("write over a link: %v", err)
	}
	if _, err := r.ReadFile(link, 100); !errors.Is(err, fsutil.ErrNotRegular) {
		t.Errorf("read of a link: %v", err)
	}
	if err := r.Remove(link); !errors.Is(err, fsutil.ErrNotRegular) {
		t.Errorf("remove of a link: %v", err)
	}
	if m, err := r.Lstat(link); err != nil || m.Type() != fs.ModeSymlink {
		t.Errorf("the link: %v %v", m, err)
	}
	if _, err := r.ReadFile("real/dir/missing", 100); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("read of a missing file: %v", err)
	}
	if _, err := r.ReadFile("inside/new/file.conf", 3); !errors.Is(err, ErrTooLarge) {
		t.Errorf("read of a large file: %v", err)
	}
}

func TestRemoveEmptyDir(t *testing.T) {
	root, outside := tree(t)
	r, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	os.Mkdir(filepath.Join(root, "empty"), 0o755)
	os.Mkdir(filepath.Join(outside, "empty"), 0o755)
	os.Symlink("/empty", filepath.Join(root, "link.d"))
	os.Symlink(filepath.Join(outside, "empty"), filepath.Join(root, "out.d"))
	for rel, want := range map[string]bool{"link.d": false, "out.d": false, "real": false, "missing": false, "empty": true} {
		if removed, err := r.RemoveEmptyDir(rel); err != nil || removed != want {
			t.Errorf("RemoveEmptyDir(%s) = %v, %v; want %v", rel, removed, err, want)
		}
	}
	for _, p := range []string{filepath.Join(root, "link.d"), filepath.Join(root, "out.d"), filepath.Join(outside, "empty")} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func TestRemoveTemps(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{".a.json.tmp-0a1b2c3d", ".b.json.tmp-123", "a.json", ".x.tmp-notatemp", "c.tmp-12345678"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o644)
	}
	os.Mkdir(filepath.Join(dir, ".d.json.tmp-0a1b2c3d"), 0o755) // not a file: stays
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if removed, err := r.RemoveTemps(".", func(n string) bool { return n == "a.json" }); err != nil || !slices.Equal(removed, []string{".a.json.tmp-0a1b2c3d"}) {
		t.Errorf("RemoveTemps(a.json) = %v, %v", removed, err)
	}
	if removed, err := r.RemoveTemps("/", func(string) bool { return true }); err != nil || !slices.Equal(removed, []string{".b.json.tmp-123"}) {
		t.Errorf("RemoveTemps = %v, %v", removed, err)
	}
	var left []string
	entries, _ := r.ReadDir(".")
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if want := []string{".d.json.tmp-0a1b2c3d", ".x.tmp-notatemp", "a.json", "c.tmp-12345678"}; !slices.Equal(left, want) {
		t.Errorf("left %v, want %v", left, want)
	}
	if removed, err := r.RemoveTemps("missing", func(string) bool { return true }); err != nil || removed != nil {
		t.Errorf("RemoveTemps of a missing directory: %v %v", removed, err)
	}
}
