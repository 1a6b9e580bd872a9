package cluster_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/kubearmor/kscmp/internal/testenv"
)

// TestNoEBPF: the collector runs on workstations; it must not link the
// kernel loader (nor package discover, which does).
func TestNoEBPF(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		testenv.Missing(t, "go in PATH")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".", "./sim").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.Contains(p, "cilium/ebpf") || p == "github.com/kubearmor/kscmp/discover" || p == "github.com/kubearmor/kscmp/bpf" {
			t.Errorf("discover/cluster depends on %s", p)
		}
	}
}
