package testenv

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// treeVerbatim is the largest file Tree records as its content; a larger
// one is recorded by its sha256, so a diff of small files (drop-ins,
// manifests) shows what changed and a large one still cannot change unseen.
const treeVerbatim = 4096

// Tree maps every entry below dir (by its path relative to dir, "" for dir
// itself) to its type and permissions and, for a symbolic link, its target;
// for a regular file, its content. Two Trees are equal exactly when nothing
// below dir was created, removed, re-typed, re-linked, chmod-ed or written
// with other bytes: the tests' "changes nothing" checks compare them with
// TreeDiff.
func Tree(tb testing.TB, dir string) map[string]string {
	tb.Helper()
	tree := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		v := info.Mode().String()
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			v += " -> " + target
		case info.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if len(b) > treeVerbatim {
				v += fmt.Sprintf(" sha256:%x", sha256.Sum256(b))
			} else {
				v += "\n" + string(b)
			}
		}
		tree[strings.TrimPrefix(strings.TrimPrefix(p, dir), "/")] = v
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return tree
}

// TreeDiff describes how two Trees differ, one line per path in path order,
// or returns "" when they are equal.
func TreeDiff(before, after map[string]string) string {
	paths := slices.Collect(maps.Keys(before))
	for p := range after {
		if _, ok := before[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	var b strings.Builder
	for _, p := range paths {
		v, was := before[p]
		w, is := after[p]
		switch {
		case !is:
			fmt.Fprintf(&b, "%s: gone (was %q)\n", p, v)
		case !was:
			fmt.Fprintf(&b, "%s: new: %q\n", p, w)
		case w != v:
			fmt.Fprintf(&b, "%s: %q, was %q\n", p, w, v)
		}
	}
	return b.String()
}
