package host

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/internal/testenv"
)

// smallDisk mounts a tmpfs of 64 KiB (16 pages: 16 files at most) and
// unmounts it when the test ends.
func smallDisk(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root (to mount a tmpfs)")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k,mode=0755"); err != nil {
		testenv.Missing(t, "mount -t tmpfs: "+err.Error())
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

func containerPolicy(n int) []*api.KubeArmorSeccompPolicy {
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("web-%03d", i))
	}
	return []*api.KubeArmorSeccompPolicy{hostPolicy("many", nil, names, api.ActionBlock, "mkdir", "ptrace")}
}

// TestDirFullDisk: apply --dir of 200 profiles on a disk with room for 16
// changes nothing, and the manifest keeps listing exactly the profiles kscmp
// wrote, so a later run never takes a file kscmp did not write for its own.
func TestDirFullDisk(t *testing.T) {
	ctx := context.Background()
	disk := smallDisk(t)
	d := &Dir{Path: disk}
	if changes, err := d.Apply(ctx, containerPolicy(5), Options{}); err != nil || len(changes) != 5 {
		t.Fatalf("5 profiles: %s %v", actions(changes), err)
	}
	before := snapshot(t, disk)

	_, err := d.Apply(ctx, containerPolicy(200), Options{})
	if err == nil || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("200 profiles on 64 KiB: %v, want ENOSPC", err)
	}
	sameTree(t, "after the failed apply", before, snapshot(t, disk))
	managed, err := d.Managed()
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	entries, _ := os.ReadDir(disk)
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".json"); ok {
			files = append(files, n)
		}
	}
	if !slices.Equal(managed, files) {
		t.Errorf("the manifest lists %v, the directory has %v", managed, files)
	}

	// Someone else puts a profile where kscmp failed to write one: kscmp
	// does not take it for its own.
	foreign := filepath.Join(disk, "web-017.json")
	os.WriteFile(foreign, []byte(`{"defaultAction":"SCMP_ACT_ALLOW"}`), 0o644)
	one := []*api.KubeArmorSeccompPolicy{hostPolicy("one", nil, []string{"web-017"}, api.ActionBlock, "mkdir")}
	if changes, err := d.Apply(ctx, one, Options{}); err == nil || !strings.Contains(err.Error(), "not written by kscmp") {
		t.Errorf("apply over a foreign profile: %s %v", actions(changes), err)
	}
	if b, _ := os.ReadFile(foreign); !strings.Contains(string(b), "SCMP_ACT_ALLOW") {
		t.Errorf("the foreign profile was overwritten: %s", b)
	}
}
