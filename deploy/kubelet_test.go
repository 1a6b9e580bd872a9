package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func fakeProc(t *testing.T, cmdlines ...string) string {
	t.Helper()
	root := t.TempDir()
	for i, c := range cmdlines {
		dir := filepath.Join(root, string(rune('1'+i)))
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "cmdline"), []byte(strings.ReplaceAll(c, " ", "\x00")+"\x00"), 0o644)
	}
	os.MkdirAll(filepath.Join(root, "self"), 0o755)
	return root
}

func TestKubeletRootDir(t *testing.T) {
	cases := []struct {
		name, flag string
		procs      []string
		want       string
		src        KubeletRootSource
	}{
		{"flag wins", "/data/kubelet/", []string{"/usr/bin/kubelet --root-dir=/other"}, "/data/kubelet", RootFromFlag},
		{"kubeadm", "", []string{"/usr/sbin/sshd", "/usr/bin/kubelet --config=/var/lib/kubelet/config.yaml --root-dir=/mnt/kubelet"}, "/mnt/kubelet", RootFromCmdline},
		{"separate value", "", []string{"/usr/bin/kubelet --root-dir /srv/kubelet"}, "/srv/kubelet", RootFromCmdline},
		{"k3s", "", []string{"/usr/local/bin/k3s server --kubelet-arg=root-dir=/var/lib/k3s-kubelet"}, "/var/lib/k3s-kubelet", RootFromCmdline},
		{"rke2 spaced", "", []string{"/usr/local/bin/rke2 agent --kubelet-arg root-dir=/opt/kubelet"}, "/opt/kubelet", RootFromCmdline},
		{"k0s", "", []string{"/usr/local/bin/k0s worker --kubelet-root-dir=/var/lib/k0s/kubelet"}, "/var/lib/k0s/kubelet", RootFromCmdline},
		{"no flag: default", "", []string{"/usr/bin/kubelet --config=/etc/kubelet.yaml"}, DefaultKubeletRoot, RootFromFallback},
		{"nothing running", "", nil, DefaultKubeletRoot, RootFromFallback},
	}
	for _, c := range cases {
		got, src, err := KubeletRootDir(c.flag, fakeProc(t, c.procs...))
		if err != nil || got != c.want || src != c.src {
			t.Errorf("%s: %q %s %v, want %q %s", c.name, got, src, err, c.want, c.src)
		}
	}
	if _, _, err := KubeletRootDir("relative/dir", fakeProc(t)); err == nil {
		t.Error("a relative --kubelet-root was accepted")
	}
	// The real /proc reads: an absolute directory, whatever runs here.
	if got, _, err := KubeletRootDir("", "/proc"); err != nil || !filepath.IsAbs(got) {
		t.Errorf("real /proc: %q %v", got, err)
	}
}
