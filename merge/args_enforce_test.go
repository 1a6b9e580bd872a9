package merge_test

import (
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/internal/ocitest"
	"github.com/kubearmor/kscmp/internal/testenv"
	"github.com/kubearmor/kscmp/merge"
)

// argFiltered are the calls the argument-condition proof filters; every
// other call of the native ABI is allowed, so what fails fails because of
// the conditions.
var argFiltered = []string{"clone", "clone3", "unshare", "setns", "socket"}

// argPolicyYAML is the proof's policy, in the flat form with symbols:
// clone and unshare without new user or network namespaces, socket for
// AF_INET, AF_INET6 and AF_UNIX only, everything else allowed.
func argPolicyYAML() string {
	var rest []string
	for name := range api.ArchX86_64.Table().SyscallNames {
		if !slices.Contains(argFiltered, name) {
			rest = append(rest, name)
		}
	}
	slices.Sort(rest)
	return `kind: KubeArmorSeccompPolicy
name: no-userns-no-netlink
namespace: demo
app: bb
rules:
- syscalls: [` + strings.Join(rest, ", ") + `]
  action: Allow
- syscalls: [clone, unshare]
  action: Allow
  args: [{index: 0, operator: MaskedEqual, mask: CLONE_NEWUSER|CLONE_NEWNET, value: 0}]
- {syscalls: [socket], action: Allow, args: [{index: 0, operator: Equal, value: AF_INET}]}
- {syscalls: [socket], action: Allow, args: [{index: 0, operator: Equal, value: AF_INET6}]}
- {syscalls: [socket], action: Allow, args: [{index: 0, operator: Equal, value: AF_UNIX}]}
`
}

// argProbe compiles testdata/argprobe.c statically (glibc: pthread_create
// tries clone3 first) into dir/probe.
func argProbe(t *testing.T, dir string) {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		testenv.Missing(t, "gcc (apt-get install gcc)")
	}
	out, err := exec.Command(gcc, "-static", "-pthread", "-O1", "-o", filepath.Join(dir, "probe"), "testdata/argprobe.c").CombinedOutput()
	if err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
}

// probeResults parses the probe's "check result" lines.
func probeResults(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok {
			m[k] = v
		}
	}
	return m
}

// TestArgConditionsEnforced is the proof on real runtimes: under a profile
// that allows clone and unshare only without CLONE_NEWUSER|CLONE_NEWNET and
// socket only for AF_INET, AF_INET6 and AF_UNIX, runc and crun start the
// container (with their start-up sets), `unshare -U true` and `unshare -n
// true` fail with EPERM, `ip link` (netlink) fails, while a glibc program
// makes a thread (clone3 gets ENOSYS, glibc falls back to clone), forks
// and talks TCP over loopback. Without the profile each refused command
// works, so the profile is what refuses.
func TestArgConditionsEnforced(t *testing.T) {
	docs, err := api.Parse(strings.NewReader(argPolicyYAML()), "args.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range []merge.Runtime{merge.RuntimeRunc, merge.RuntimeCrun} {
		t.Run(string(rt), func(t *testing.T) {
			bin := ocitest.Require(t, string(rt))
			rootfs := ocitest.BusyboxRootfs(t)
			argProbe(t, rootfs)
			prof := profileFor(t, rt, docs[0].Policy)
			c := ocitest.Container{Runtime: bin, Rootfs: rootfs, Seccomp: prof,
				Capabilities: append(ocitest.DefaultCapabilities(), "CAP_SYS_ADMIN"),
				// The host's network namespace: its loopback is up for TCP.
				Adjust: func(s *specs.Spec) {
					s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.NetworkNamespace })
				}}
			refused := [][]string{{"busybox", "unshare", "-U", "true"}, {"busybox", "unshare", "-n", "true"}, {"busybox", "ip", "link"}}
			for _, args := range refused {
				c.Args, c.Seccomp = args, prof
				if res := run(t, c); res.ExitCode == 0 || !strings.Contains(res.Stderr, "Operation not permitted") {
					t.Errorf("%v under the profile: want EPERM, got %+v", args, res)
				}
				c.Seccomp = nil
				if res := run(t, c); res.ExitCode != 0 {
					t.Errorf("control: %v without the profile failed: %+v", args, res)
				}
			}
			c.Args, c.Seccomp = []string{"/probe"}, prof
			res := run(t, c)
			got := probeResults(res.Stdout)
			want := map[string]string{"thread": "ok", "fork": "ok", "clone3": "Function not implemented",
				"inet": "ok", "unix": "ok", "netlink": "Operation not permitted", "tcp": "ok"}
			if res.ExitCode != 0 || !maps.Equal(got, want) {
				t.Errorf("probe under the profile: got %v, want %v (%+v)", got, want, res)
			}
		})
	}
}
