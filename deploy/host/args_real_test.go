package host

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/deploy"
	"github.com/kubearmor/kscmp/internal/nspawntest"
	"github.com/kubearmor/kscmp/internal/testenv"
	"github.com/kubearmor/kscmp/merge"
)

// argProbeScript runs the static probe (merge/testdata/argprobe.c) and
// util-linux's unshare as the service, and writes what each check gave.
const argProbeScript = `#!/bin/sh
/proof/probe > /proof/out 2>&1
for f in U n; do
  if unshare -$f true 2>>/proof/err; then echo "unshare-$f ok"; else echo "unshare-$f refused"; fi >> /proof/out
done
`

// TestSystemdArgDirectivesRealSystemd applies, on a real systemd 252 (a
// systemd-nspawn machine), the drop-in of a hardening policy that refuses
// clone and unshare with CLONE_NEWUSER or CLONE_NEWNET and netlink
// sockets: RestrictNamespaces=, RestrictAddressFamilies=~AF_NETLINK and
// clone3:ENOSYS; then the same in an allow-list drop-in. The service's
// `unshare -U` and `unshare -n` fail, its netlink socket fails, while a
// glibc thread (clone3 gets ENOSYS), a fork and loopback TCP work; without
// the drop-in everything works.
func TestSystemdArgDirectivesRealSystemd(t *testing.T) {
	tree := nspawntest.Tree(t)
	if _, err := exec.LookPath("gcc"); err != nil {
		testenv.Missing(t, "gcc (apt-get install gcc)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	flag := func(f string) []api.ArgCondition {
		return []api.ArgCondition{{Index: 0, Operator: api.OpMaskedEqual, Mask: api.ArgValue(f), Value: api.ArgValue(f)}}
	}
	p := hostPolicy("harden", []string{"argprobe"}, nil, api.ActionBlock, "mkdir")
	p.Spec.Seccomp = api.SeccompSpec{Rules: []api.Rule{
		{Syscalls: []string{"clone", "unshare"}, Action: api.ActionBlock, Args: flag("CLONE_NEWUSER")},
		{Syscalls: []string{"clone", "unshare"}, Action: api.ActionBlock, Args: flag("CLONE_NEWNET")},
		{Syscalls: []string{"socket"}, Action: api.ActionBlock, Args: []api.ArgCondition{{Index: 0, Operator: api.OpEqual, Value: "AF_NETLINK"}}},
	}}
	if errs := api.Validate(p); len(errs) > 0 {
		t.Fatal(errs)
	}
	rs, err := merge.Merge([]*api.KubeArmorSeccompPolicy{p}, merge.Target{Unit: "argprobe"})
	if err != nil {
		t.Fatal(err)
	}
	dropIn := string(rs.Systemd())
	for _, want := range []string{"RestrictNamespaces=cgroup ipc mnt pid uts\n", "RestrictAddressFamilies=~AF_NETLINK\n", "SystemCallFilter=~clone3:ENOSYS\n"} {
		if !strings.Contains(dropIn, want) {
			t.Fatalf("drop-in lacks %q:\n%s", want, dropIn)
		}
	}

	under := runArgProbe(ctx, t, tree, dropIn)
	if strings.Contains(under, "netlink ok") {
		t.Error("under the drop-in: the netlink socket was allowed")
	}

	// The same refusals in an allow-list of every call this systemd knows:
	// an allow-list drop-in takes one error number (EPERM), so clone3 is
	// let through its filter to RestrictNamespaces=, with which systemd
	// refuses it with ENOSYS: the glibc thread still works.
	var all []string
	for name := range api.ArchX86_64.Table().SyscallNames {
		switch name {
		case "clone", "clone3", "unshare", "socket":
		default:
			all = append(all, name)
		}
	}
	p.Spec.Seccomp.Rules = append(p.Spec.Seccomp.Rules, api.Rule{Syscalls: all, Action: api.ActionAllow},
		api.Rule{Syscalls: []string{"clone", "unshare", "socket"}, Action: api.ActionAllow})
	if rs, err = merge.Merge([]*api.KubeArmorSeccompPolicy{p}, merge.Target{Unit: "argprobe"}); err != nil {
		t.Fatal(err)
	}
	allowList := string(rs.Systemd())
	if err := deploy.VerifySystemdDropIn(ctx, []byte(allowList)); err != nil {
		// Leave out the names this systemd does not know.
		for _, l := range strings.Split(err.Error(), "\n") {
			if _, name, ok := strings.Cut(l, "Failed to parse system call, ignoring: "); ok {
				allowList = strings.Replace(allowList, " "+strings.TrimSpace(name)+" ", " ", 1)
			}
		}
	}
	t.Logf("allow-list drop-in without the call list:\n%s", strings.Join(slices.DeleteFunc(strings.Split(allowList, "\n"), func(l string) bool { return len(l) > 200 }), "\n"))
	if strings.Contains(allowList, "~clone3") || !strings.Contains(allowList, " clone3 ") {
		t.Errorf("allow-list drop-in refuses clone3 in its filter")
	}
	runArgProbe(ctx, t, tree, allowList)
}

// runArgProbe boots a machine with the argprobe service, runs it without
// and then under the drop-in, checks the control run and the refusals, and
// returns the output under the drop-in.
func runArgProbe(ctx context.Context, t *testing.T, tree, dropIn string) string {
	t.Helper()
	proof := t.TempDir()
	src := filepath.Join(testenv.ModuleRoot(t), "merge", "testdata", "argprobe.c")
	if out, err := exec.Command("gcc", "-static", "-pthread", "-O1", "-o", filepath.Join(proof, "probe"), src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(proof, "run.sh"), []byte(argProbeScript), 0o755)
	os.WriteFile(filepath.Join(proof, "dropin.conf"), []byte(dropIn), 0o644)
	m, err := nspawntest.Start(ctx, t, nspawntest.Options{
		Tree:    tree,
		Binds:   []nspawntest.Bind{{Host: proof, Guest: "/proof"}},
		Units:   map[string]string{"argprobe.service": "[Service]\nType=oneshot\nExecStart=/bin/sh /proof/run.sh\n"},
		Timeout: 3 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) string {
		out, err := m.Command(ctx, name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	results := func() string {
		run("systemctl", "start", "argprobe.service")
		out, err := os.ReadFile(filepath.Join(proof, "out"))
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	control := results()
	run("mkdir", "-p", "/etc/systemd/system/argprobe.service.d")
	run("cp", "/proof/dropin.conf", "/etc/systemd/system/argprobe.service.d/50-kscmp-seccomp.conf")
	run("systemctl", "daemon-reload")
	t.Logf("%s", run("systemctl", "show", "-p", "RestrictNamespaces", "-p", "RestrictAddressFamilies", "argprobe.service"))
	under := results()
	t.Logf("without the drop-in:\n%s\nunder it:\n%s", control, under)
	for _, want := range []string{"thread ok", "fork ok", "inet ok", "unix ok", "netlink ok", "tcp ok", "unshare-U ok", "unshare-n ok"} {
		if !strings.Contains(control, want+"\n") {
			t.Errorf("control: want %q", want)
		}
	}
	for _, want := range []string{"unshare-U refused", "unshare-n refused", "thread ok", "fork ok", "inet ok", "unix ok", "tcp ok", "clone3 Function not implemented"} {
		if !strings.Contains(under, want+"\n") {
			t.Errorf("under the drop-in: want %q", want)
		}
	}
	if err := m.Poweroff(); err != nil {
		t.Fatal(err)
	}
	return under
}
