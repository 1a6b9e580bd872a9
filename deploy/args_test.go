package deploy

import (
	"context"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/internal/testenv"
	"github.com/kubearmor/kscmp/merge"
)

// TestExecArgConditions is the in-process half of the argument-condition
// proof (merge's TestArgConditionsEnforced is the runtimes' half): through
// the OCI profile, read back and loaded by Exec, clone and unshare are
// allowed only without CLONE_NEWUSER|CLONE_NEWNET and socket only for
// AF_INET, AF_INET6 and AF_UNIX, every other call is allowed. The host's
// `unshare -U true`, `unshare -n true` and `ip link` are refused (and work
// without the profile); a static glibc program makes a thread (clone3 gets
// ENOSYS, glibc falls back to clone), forks and talks TCP over loopback,
// and its netlink socket is refused.
func TestExecArgConditions(t *testing.T) {
	var missing []string
	for _, tool := range []string{"gcc", "unshare", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool+" (apt-get install gcc util-linux iproute2)")
		}
	}
	testenv.Missing(t, missing...)
	var rest []string
	for name := range api.ArchX86_64.Table().SyscallNames {
		if !slices.Contains([]string{"clone", "clone3", "unshare", "setns", "socket"}, name) {
			rest = append(rest, name)
		}
	}
	noNS := []api.ArgCondition{{Index: 0, Operator: api.OpMaskedEqual, Mask: "CLONE_NEWUSER|CLONE_NEWNET", Value: "0"}}
	family := func(af string) api.Rule {
		return api.Rule{Syscalls: []string{"socket"}, Action: api.ActionAllow, Args: []api.ArgCondition{{Index: 0, Operator: api.OpEqual, Value: api.ArgValue(af)}}}
	}
	rs := mustMerge(t, api.Rule{Syscalls: rest, Action: api.ActionAllow},
		api.Rule{Syscalls: []string{"clone", "unshare"}, Action: api.ActionAllow, Args: noNS},
		family("AF_INET"), family("AF_INET6"), family("AF_UNIX"))
	if e := rs.Lookup("clone3"); e == nil || e.Errno != merge.ENOSYS {
		t.Fatalf("clone3 is not refused with ENOSYS: %+v", e)
	}
	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		// The same rule set as a drop-in: systemd's directives, verified.
		dropIn := mustMerge(t, api.Rule{Syscalls: []string{"read", "write", "exit_group"}, Action: api.ActionAllow},
			api.Rule{Syscalls: []string{"clone", "unshare"}, Action: api.ActionAllow, Args: noNS},
			family("AF_INET"), family("AF_INET6"), family("AF_UNIX")).Systemd()
		if err := VerifySystemdDropIn(context.Background(), dropIn); err != nil {
			t.Errorf("%v\n%s", err, dropIn)
		}
		if !strings.Contains(string(dropIn), "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\nRestrictNamespaces=cgroup ipc mnt pid uts\n") {
			t.Errorf("drop-in without the directives:\n%s", dropIn)
		}
	}

	for _, argv := range []string{"unshare -U true", "unshare -n true", "ip link"} {
		if out, err := runUnder(t, rs, argv); err == nil || !strings.Contains(out, "Operation not permitted") {
			t.Errorf("%s under the profile: want EPERM, got %v: %q", argv, err, out)
		}
		f := strings.Fields(argv)
		if out, err := exec.Command(f[0], f[1:]...).CombinedOutput(); err != nil {
			t.Errorf("control: %s without the profile: %v: %s", argv, err, out)
		}
	}

	probe := filepath.Join(t.TempDir(), "probe")
	src := filepath.Join(testenv.ModuleRoot(t), "merge", "testdata", "argprobe.c")
	if out, err := exec.Command("gcc", "-static", "-pthread", "-O1", "-o", probe, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	out, err := runUnder(t, rs, probe)
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok {
			got[k] = v
		}
	}
	want := map[string]string{"thread": "ok", "fork": "ok", "clone3": "Function not implemented",
		"inet": "ok", "unix": "ok", "netlink": "Operation not permitted", "tcp": "ok"}
	if err != nil || !maps.Equal(got, want) {
		t.Errorf("probe under the profile: %v: got %v, want %v", err, got, want)
	}
}
