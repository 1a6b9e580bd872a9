package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/internal/testenv"
	"github.com/kubearmor/kscmp/merge"
)

// TestStarterSyscalls proves merge's start-up list on this machine in both
// directions, with the built binary: /bin/true and /bin/ls (dynamically
// linked) run under kscmp exec with a profile that refuses one call. Each
// listed call refused, neither starts, and kscmp exec warns before it runs
// them; each of the other calls they make before main refused, both run,
// and there is no warning.
func TestStarterSyscalls(t *testing.T) {
	var missing []string
	for _, tool := range []string{"go", "/bin/true", "/bin/ls"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	testenv.Missing(t, missing...)
	bin := buildKscmp(t)
	dir := t.TempDir()
	native := api.Family(defaultFamily()).Native()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// under runs prog under a profile that refuses name (only) and reports
	// whether it ran, and kscmp's stderr.
	under := func(name string, prog ...string) (ok bool, stderr string) {
		prof, _ := json.Marshal(map[string]any{"defaultAction": "SCMP_ACT_ALLOW", "architectures": []string{native.OCI()},
			"syscalls": []map[string]any{{"names": []string{name}, "action": "SCMP_ACT_ERRNO"}}})
		path := filepath.Join(dir, name+".json")
		os.WriteFile(path, prof, 0o644)
		cmd := exec.CommandContext(ctx, bin, append([]string{"exec", "--profile", path, "--"}, prog...)...)
		var errb strings.Builder
		cmd.Stderr = &errb
		return cmd.Run() == nil, errb.String()
	}
	check := func(name string, wantStart bool) {
		t.Helper()
		for _, prog := range [][]string{{"/bin/true"}, {"/bin/ls", "/"}} {
			ok, stderr := under(name, prog...)
			warned := strings.Contains(stderr, "kscmp: warning: ") && strings.Contains(stderr, "refuses "+name+", which every")
			if ok != wantStart || warned == wantStart {
				t.Errorf("%v with %s refused: started %v, warned %v (want started %v, warned %v); stderr %q", prog, name, ok, warned, wantStart, !wantStart, stderr)
			}
		}
	}
	check("mkdir", true) // the control
	for _, alt := range merge.StarterSyscalls(native) {
		check(alt[0], false)
	}
	for _, name := range []string{"access", "brk", "munmap", "prlimit64", "rseq", "set_robust_list", "set_tid_address"} {
		if native.Has(name) {
			check(name, true)
		}
	}
}
