package host

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/internal/fsutil"
)

// TestLeftoversRemoved: every run that may write removes the temporary
// files killed runs left in the directories it manages — also when it has
// nothing else to change — and only those: a dry run removes nothing, nor is
// another program's file touched.
func TestLeftoversRemoved(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	d, s := &Dir{Root: root}, &Systemd{Root: root}
	os.MkdirAll(filepath.Join(root, UnitDir), 0o755)
	if _, err := d.Apply(ctx, webPolicy, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, webPolicy, Options{}); err != nil {
		t.Fatal(err)
	}
	profiles, unitDir := filepath.Join(root, DefaultDir), filepath.Join(root, UnitDir)
	leftovers := []string{
		filepath.Join(profiles, fsutil.TempName("web.json")),
		filepath.Join(profiles, fsutil.TempName("gone.json")),
		filepath.Join(profiles, fsutil.TempName(ManifestName)),
		filepath.Join(unitDir, "web.service.d", fsutil.TempName(DropInName)),
		// A unit whose first drop-in a killed run never renamed: the
		// directory it made goes too.
		filepath.Join(unitDir, "db.service.d", fsutil.TempName(DropInName)),
	}
	others := []string{
		filepath.Join(profiles, fsutil.TempName("notes.txt")),
		filepath.Join(unitDir, "web.service.d", fsutil.TempName("10-vendor.conf")),
		filepath.Join(unitDir, fsutil.TempName("web.service")),
	}
	for _, p := range append(leftovers, others...) {
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("half a fi"), 0o600)
	}
	before := snapshot(t, root)
	if _, err := d.Apply(ctx, webPolicy, Options{DryRun: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, webPolicy, Options{DryRun: true}); err != nil {
		t.Fatal(err)
	}
	sameTree(t, "after dry runs", before, snapshot(t, root))

	for _, in := range []interface {
		Apply(context.Context, []*api.KubeArmorSeccompPolicy, Options) ([]Change, error)
	}{d, s} {
		if changes, err := in.Apply(ctx, webPolicy, Options{}); err != nil || len(changes) != 1 || changes[0].Action != Unchanged {
			t.Errorf("apply: %s %v", actions(changes), err)
		}
	}
	for _, p := range leftovers {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left: %v", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(unitDir, "db.service.d")); !os.IsNotExist(err) {
		t.Errorf("db.service.d left: %v", err)
	}
	for _, p := range others {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("another program's file: %v", err)
		}
	}
}
