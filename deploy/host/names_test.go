package host

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubearmor/kscmp/api"
)

// TestRemoveBadUnitName: a unit name given to remove is checked before it
// becomes a path: "../../../../x/y" would name a drop-in outside the root.
func TestRemoveBadUnitName(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	os.MkdirAll(filepath.Join(root, UnitDir), 0o755)
	// Where root/etc/systemd/system/../../../../x/y.d/ leads without the
	// check: a drop-in of kscmp's outside the root.
	victim := filepath.Join(base, "x/y.d", DropInName)
	os.MkdirAll(filepath.Dir(victim), 0o755)
	os.WriteFile(victim, append(marker, "\n[Service]\n"...), 0o644)
	before := snapshot(t, base)
	s := &Systemd{Root: root}
	for _, unit := range []string{"../../../../x/y", "../../../../x/y.service", "a/b.service", ".hidden.service", "web.1"} {
		_, err := s.Remove(context.Background(), []string{unit, "web"}, Options{})
		if !errors.Is(err, api.ErrBadName) || !strings.Contains(err.Error(), "not a valid systemd unit name") {
			t.Errorf("remove --unit %s: %v, want a bad name", unit, err)
		}
	}
	sameTree(t, "after remove of bad names", before, snapshot(t, base))
}

// TestManifestBadLine: a manifest line that is not a container name
// (../victim) is an error naming the file, the line and the value, and
// neither prune nor remove --all deletes anything.
func TestManifestBadLine(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	d := &Dir{Root: root}
	if _, err := d.Apply(ctx, webPolicy, Options{}); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(root, "etc/seccomp/victim.json")
	os.WriteFile(victim, []byte("{}"), 0o644)
	manifest := filepath.Join(root, DefaultDir, ManifestName)
	data, _ := os.ReadFile(manifest)
	os.WriteFile(manifest, append(data, "../victim\n"...), 0o644)
	before := snapshot(t, root)
	want := manifest + `:3: "../victim": not a valid container name`
	if _, err := d.Managed(); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Managed: %v, want %s", err, want)
	}
	if _, err := d.Apply(ctx, nil, Options{Prune: true}); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("apply --prune: %v, want %s", err, want)
	}
	// remove --all: what the command does.
	if names, err := d.Managed(); err == nil {
		_, err = d.Remove(ctx, names, Options{})
		t.Errorf("remove --all: %v", err)
	}
	if _, err := d.Remove(ctx, []string{"../victim"}, Options{}); !errors.Is(err, api.ErrBadName) {
		t.Errorf("remove ../victim: %v", err)
	}
	sameTree(t, "after refusals", before, snapshot(t, root))
}

// TestNameLengths: the longest names the rules take get their files (the
// temporary files included); one byte more is refused before anything is
// written.
func TestNameLengths(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	d := &Dir{Root: root}
	longest := strings.Repeat("c", api.MaxContainerNameLen)
	pol := []*api.KubeArmorSeccompPolicy{hostPolicy("c", nil, []string{longest}, api.ActionBlock, "mkdir")}
	if changes, err := d.Apply(ctx, pol, Options{}); err != nil || actions(changes) != longest+":created" {
		t.Errorf("container name of %d bytes: %s %v", len(longest), actions(changes), err)
	}
	unit := strings.Repeat("u", api.MaxUnitNameLen-len(".service")) + ".service"
	s := &Systemd{Root: root}
	if changes, err := s.Apply(ctx, []*api.KubeArmorSeccompPolicy{hostPolicy("u", []string{unit}, nil, api.ActionBlock, "mkdir")}, Options{}); err != nil || actions(changes) != unit+":created" {
		t.Errorf("unit name of %d bytes: %s %v", len(unit), actions(changes), err)
	}
	before := snapshot(t, root)
	for _, n := range []int{1, 4, 17} { // 237, 240 and 253 bytes: docker's limit
		tooLong := strings.Repeat("c", api.MaxContainerNameLen+n)
		pol = append(pol, hostPolicy("c2", nil, []string{tooLong}, api.ActionBlock, "mkdir"))
		if _, err := d.Apply(ctx, pol, Options{}); !errors.Is(err, api.ErrBadName) {
			t.Errorf("container name of %d bytes: %v", len(tooLong), err)
		}
		pol = pol[:1]
	}
	unit = "u" + unit
	if _, err := s.Apply(ctx, []*api.KubeArmorSeccompPolicy{hostPolicy("u", []string{unit}, nil, api.ActionBlock, "mkdir")}, Options{}); !errors.Is(err, api.ErrBadName) {
		t.Errorf("unit name of %d bytes: %v", len(unit), err)
	}
	sameTree(t, "after refusals", before, snapshot(t, root))
}
