package host

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubearmor/kscmp/api"
)

// confineTree returns a root with /etc/systemd/system holding web.service,
// and outside: a directory next to the root, with a file, that nothing
// kscmp does with the root may change.
func confineTree(t *testing.T) (root, outside string) {
	t.Helper()
	base := t.TempDir()
	root, outside = filepath.Join(base, "root"), filepath.Join(base, "outside")
	os.MkdirAll(filepath.Join(root, UnitDir), 0o755)
	os.WriteFile(filepath.Join(root, UnitDir, "web.service"), []byte("[Service]\nExecStart=/bin/true\n"), 0o644)
	os.MkdirAll(outside, 0o755)
	os.WriteFile(filepath.Join(outside, "victim"), []byte("keep\n"), 0o644)
	return root, outside
}

var webPolicy = []*api.KubeArmorSeccompPolicy{hostPolicy("web", []string{"web"}, []string{"web"}, api.ActionBlock, "mkdir")}

// TestSystemdUnitDirLinkOut: a <unit>.d that is a symbolic link out of the
// root (absolute or relative) is resolved inside the root, where it leads
// to nothing: apply is refused and writes nothing, outside or in.
func TestSystemdUnitDirLinkOut(t *testing.T) {
	for _, target := range []string{"ABS", "../../../../outside"} {
		root, outside := confineTree(t)
		if target == "ABS" {
			target = outside
		}
		os.Symlink(target, filepath.Join(root, UnitDir, "web.service.d"))
		beforeOut, beforeRoot := snapshot(t, outside), snapshot(t, root)
		s := &Systemd{Root: root}
		_, err := s.Apply(context.Background(), webPolicy, Options{})
		if err == nil || !strings.Contains(err.Error(), "web.service.d is a symbolic link to "+target+", which does not exist inside the root") {
			t.Errorf("apply with web.service.d -> %s: %v", target, err)
		}
		sameTree(t, "outside", beforeOut, snapshot(t, outside))
		sameTree(t, "root", beforeRoot, snapshot(t, root))
	}
}

// TestSystemdUnitDirAbsoluteLink: /etc/systemd/system is an absolute link
// inside an image (to a directory the image has): kscmp follows it inside
// the root, as the image's systemd does, never to the same path on the
// machine it runs on; remove takes the drop-in back and leaves the link.
func TestSystemdUnitDirAbsoluteLink(t *testing.T) {
	ctx := context.Background()
	root, outside := confineTree(t)
	// The link names the absolute path of outside, which the root has too.
	inRoot := filepath.Join(root, outside)
	os.MkdirAll(filepath.Dir(inRoot), 0o755)
	if err := os.Rename(filepath.Join(root, UnitDir), inRoot); err != nil {
		t.Fatal(err)
	}
	os.Symlink(outside, filepath.Join(root, UnitDir))
	beforeOut, beforeRoot := snapshot(t, outside), snapshot(t, root)
	s := &Systemd{Root: root}
	changes, err := s.Apply(ctx, webPolicy, Options{})
	if err != nil || actions(changes) != "web.service:created" {
		t.Fatalf("apply: %s %v", actions(changes), err)
	}
	if _, err := os.Stat(filepath.Join(inRoot, "web.service.d", DropInName)); err != nil {
		t.Errorf("drop-in not inside the root: %v", err)
	}
	sameTree(t, "outside after apply", beforeOut, snapshot(t, outside))
	if units, err := s.Managed(); err != nil || strings.Join(units, ",") != "web.service" {
		t.Errorf("Managed: %v %v", units, err)
	}
	if changes, err := s.Remove(ctx, []string{"web"}, Options{}); err != nil || actions(changes) != "web.service:removed" {
		t.Errorf("remove: %s %v", actions(changes), err)
	}
	sameTree(t, "root after remove", beforeRoot, snapshot(t, root))
	sameTree(t, "outside after remove", beforeOut, snapshot(t, outside))
}

// TestSystemdRemoveKeepsLinkedUnitDir: the administrator made web.service.d
// a link to a directory of the image; kscmp's drop-in goes there, and
// remove deletes the drop-in, never the link nor the directory it names.
func TestSystemdRemoveKeepsLinkedUnitDir(t *testing.T) {
	ctx := context.Background()
	root, _ := confineTree(t)
	shared := filepath.Join(root, "etc/systemd/shared.d")
	os.MkdirAll(shared, 0o755)
	link := filepath.Join(root, UnitDir, "web.service.d")
	os.Symlink("../shared.d", link)
	before := snapshot(t, root)
	s := &Systemd{Root: root}
	if _, err := s.Apply(ctx, webPolicy, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(shared, DropInName)); err != nil {
		t.Fatalf("drop-in not written through the link: %v", err)
	}
	if changes, err := s.Remove(ctx, []string{"web"}, Options{}); err != nil || actions(changes) != "web.service:removed" {
		t.Errorf("remove: %s %v", actions(changes), err)
	}
	if st, err := os.Lstat(link); err != nil || st.Mode().Type() != fs.ModeSymlink {
		t.Errorf("the administrator's link: %v %v", st, err)
	}
	sameTree(t, "after remove", before, snapshot(t, root))
}

// TestDirLinkOut: a profile directory that is an absolute link out of the
// root is resolved inside it: apply writes nothing outside.
func TestDirLinkOut(t *testing.T) {
	root, outside := confineTree(t)
	os.MkdirAll(filepath.Join(root, "etc/seccomp"), 0o755)
	os.Symlink(outside, filepath.Join(root, DefaultDir))
	beforeOut := snapshot(t, outside)
	d := &Dir{Root: root}
	if _, err := d.Apply(context.Background(), webPolicy, Options{}); err == nil || !strings.Contains(err.Error(), "does not exist inside the root") {
		t.Errorf("apply: %v", err)
	}
	sameTree(t, "outside", beforeOut, snapshot(t, outside))
	// Where the root has the directory the link names, the profiles go there.
	os.MkdirAll(filepath.Join(root, outside), 0o755)
	if _, err := d.Apply(context.Background(), webPolicy, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, outside, "web.json")); err != nil {
		t.Error(err)
	}
	sameTree(t, "outside", beforeOut, snapshot(t, outside))
}

// TestRootWithGlobCharacters: a root whose path holds "[" (no glob: every
// drop-in is found by reading the directory).
func TestRootWithGlobCharacters(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "img[1]")
	s := &Systemd{Root: root}
	if _, err := s.Apply(ctx, webPolicy, Options{}); err != nil {
		t.Fatal(err)
	}
	units, err := s.Managed()
	if err != nil || strings.Join(units, ",") != "web.service" {
		t.Fatalf("Managed under %s: %v %v", root, units, err)
	}
	if changes, err := s.Remove(ctx, units, Options{}); err != nil || actions(changes) != "web.service:removed" {
		t.Errorf("remove --all: %s %v", actions(changes), err)
	}
}
