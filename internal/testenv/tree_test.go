package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTreeSeesEveryChange: each kind of change below a directory makes
// TreeDiff non-empty and names the path; no change makes it empty.
func TestTreeSeesEveryChange(t *testing.T) {
	for _, tc := range []struct {
		name, path string
		change     func(dir string) error
	}{
		{"content", "f", func(d string) error { return os.WriteFile(filepath.Join(d, "f"), []byte("b"), 0o644) }},
		{"large content", "big", func(d string) error {
			return os.WriteFile(filepath.Join(d, "big"), []byte(strings.Repeat("y", 2*treeVerbatim)), 0o644)
		}},
		{"mode", "f", func(d string) error { return os.Chmod(filepath.Join(d, "f"), 0o600) }},
		{"link target", "l", func(d string) error {
			os.Remove(filepath.Join(d, "l"))
			return os.Symlink("/elsewhere", filepath.Join(d, "l"))
		}},
		{"new file", "n", func(d string) error { return os.WriteFile(filepath.Join(d, "n"), nil, 0o644) }},
		{"removed", "f", func(d string) error { return os.Remove(filepath.Join(d, "f")) }},
		{"file for a directory", "sub", func(d string) error {
			os.Remove(filepath.Join(d, "sub"))
			return os.WriteFile(filepath.Join(d, "sub"), nil, 0o644)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "f"), []byte("a"), 0o644)
			os.WriteFile(filepath.Join(dir, "big"), []byte(strings.Repeat("x", 2*treeVerbatim)), 0o644)
			os.Symlink("/target", filepath.Join(dir, "l"))
			os.Mkdir(filepath.Join(dir, "sub"), 0o755)
			before := Tree(t, dir)
			if d := TreeDiff(before, Tree(t, dir)); d != "" {
				t.Fatalf("no change, but: %s", d)
			}
			if err := tc.change(dir); err != nil {
				t.Fatal(err)
			}
			if d := TreeDiff(before, Tree(t, dir)); !strings.HasPrefix(d, tc.path+":") {
				t.Errorf("diff %q does not name %s", d, tc.path)
			}
		})
	}
}
