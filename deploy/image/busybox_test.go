package image

import (
	"archive/tar"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/kubearmor/kscmp/internal/testenv"
)

// TestWriteBusybox reads the busybox image back: one platform, named
// localhost/busybox:TAG for ctr, busybox at /bin/busybox with every applet a
// symbolic link to it, the command given, and the same bytes when written
// twice (the cluster's import skips an unchanged tarball).
func TestWriteBusybox(t *testing.T) {
	bin, err := exec.LookPath("busybox")
	if err != nil {
		testenv.Missing(t, "busybox: apt-get install busybox-static")
	}
	p := Platform{OS: "linux", Arch: runtime.GOARCH}
	dir := t.TempDir()
	o := BusyboxOptions{Binary: bin, Platform: p, Repository: "localhost/busybox", Tag: "pause",
		Created: testCreated, Output: filepath.Join(dir, "a.tar"), Cmd: []string{"sleep", "2147483647"}}
	digest, written, err := WriteBusybox(o)
	if err != nil || !written {
		t.Fatalf("WriteBusybox: written %v, %v", written, err)
	}
	o.Output = filepath.Join(dir, "b.tar")
	if again, _, err := WriteBusybox(o); err != nil || again != digest {
		t.Errorf("written twice: index %s then %s (%v)", digest, again, err)
	}
	a, _ := os.ReadFile(filepath.Join(dir, "a.tar"))
	b, _ := os.ReadFile(filepath.Join(dir, "b.tar"))
	if !bytes.Equal(a, b) {
		t.Error("written twice: the tarballs differ")
	}

	v := readLayout(t, a)
	if len(v.top.Manifests) != 1 || v.top.Manifests[0].Annotations[AnnotationContainerdName] != "localhost/busybox:pause" {
		t.Fatalf("index.json: %+v, want one entry named localhost/busybox:pause", v.top.Manifests)
	}
	pv, ok := v.platforms[p.String()]
	if !ok || len(v.platforms) != 1 {
		t.Fatalf("platforms %v, want only %s", v.platforms, p)
	}
	if !slices.Equal(pv.config.Config.Cmd, o.Cmd) || pv.config.Architecture != p.Arch {
		t.Errorf("config: cmd %q arch %s, want %q %s", pv.config.Config.Cmd, pv.config.Architecture, o.Cmd, p.Arch)
	}
	want, _ := os.ReadFile(bin)
	if f, ok := pv.files["bin/busybox"]; !ok || !bytes.Equal(f.data, want) || f.hdr.Mode&0o111 == 0 {
		t.Errorf("bin/busybox: present %v, want %s's bytes, executable", ok, bin)
	}
	for _, a := range BusyboxApplets {
		f, ok := pv.files["bin/"+a]
		if !ok || f.hdr.Typeflag != tar.TypeSymlink || f.hdr.Linkname != "busybox" {
			t.Errorf("bin/%s: %+v, want a symbolic link to busybox", a, f.hdr)
		}
	}
}
