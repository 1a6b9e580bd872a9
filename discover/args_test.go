package discover

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/bpf"
	"github.com/kubearmor/kscmp/internal/ocitest"
)

// TestArgsOf: the kernel's arg set in the report's words, an entry for every
// recorded call made (empty when nothing that matters was passed), none for
// calls not made.
func TestArgsOf(t *testing.T) {
	a := bpf.RecorderArgSet{
		UnshareNs:      0x10000000 | 0x80, // CLONE_NEWUSER | CLONE_NEWTIME
		SetnsNs:        bpf.SetnsAny | 0x40000000,
		SocketFamilies: 1<<2 | 1<<16 | 1<<50 | 1<<bpf.FamilyOther,
		SocketTypes:    1<<1 | 1<<3,
		PrctlOptions:   [2]uint64{1 << 15, 1 << (79 - 64)},
		PrctlLarge:     [4]uint64{bpf.ArgSlotUsed | 0x59616d61},
		Personas:       [4]uint64{bpf.ArgSlotUsed | 0xffffffff, bpf.ArgSlotUsed /* persona 0 */},
		Overflow:       bpf.ArgPersonaOverflow,
	}
	got := argsOf(&a, []string{"clone", "personality", "prctl", "read", "setns", "socket", "unshare"})
	want := map[string]report.CallArgs{
		"clone":       {},
		"unshare":     {Namespaces: []string{"CLONE_NEWTIME", "CLONE_NEWUSER"}},
		"setns":       {Namespaces: []string{"CLONE_NEWNET"}, AnyNamespace: true},
		"socket":      {Families: []string{"AF_INET", "AF_NETLINK", "50"}, Types: []string{"SOCK_STREAM", "SOCK_RAW"}, Overflow: true},
		"personality": {Values: []uint32{0xffffffff, 0}, Overflow: true},
		"prctl":       {Options: []string{"PR_SET_NAME", "79", "PR_SET_PTRACER"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("argsOf:\n got %+v\nwant %+v", got, want)
	}
	if got := argsOf(&a, []string{"read"}); got != nil {
		t.Errorf("no recorded call made: %+v, want nil", got)
	}
}

// TestArgRecording runs, in runc containers while discovering, a program
// that calls unshare(CLONE_NEWUSER), socket(AF_NETLINK, SOCK_RAW),
// socket(AF_INET, SOCK_STREAM), prctl(PR_SET_NAME) and personality(-1), and
// one that only forks and starts a thread: the report holds exactly those
// arguments, and for the second clone without namespace flags.
func TestArgRecording(t *testing.T) {
	requireKernel(t, "gcc")
	runc := ocitest.Require(t, "runc")
	bin := buildC(t, t.TempDir(), "doors.c", "doors", "-pthread")
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	run := func(mode string) string {
		rootfs := ocitest.BusyboxRootfs(t)
		if err := os.WriteFile(filepath.Join(rootfs, "bin/doors"), data, 0o755); err != nil {
			t.Fatal(err)
		}
		res, err := ocitest.Run(context.Background(), t, ocitest.Container{Runtime: runc, Rootfs: rootfs, Args: []string{"/bin/doors", mode}})
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("doors %s: %v %+v", mode, err, res)
		}
		return res.ID
	}
	var open, fork string
	rep := discoverWhile(t, func() {
		open = run("open")
		fork = run("fork")
	})
	if l := rep.Lost; l.MapFull+l.RingBufFull != 0 {
		t.Errorf("lost: %+v", l)
	}
	args := func(id string) map[string]map[string]report.CallArgs {
		for _, w := range rep.Workloads {
			if w.Identity.ContainerID == id {
				return w.Args
			}
		}
		t.Fatalf("container %s not in the report", id)
		return nil
	}
	wantOpen := map[string]map[string]report.CallArgs{"x86_64": {
		"unshare":     {Namespaces: []string{"CLONE_NEWUSER"}},
		"socket":      {Families: []string{"AF_INET", "AF_NETLINK"}, Types: []string{"SOCK_RAW", "SOCK_STREAM"}},
		"prctl":       {Options: []string{"PR_SET_NAME"}},
		"personality": {Values: []uint32{0xffffffff}},
	}}
	if got := args(open); !reflect.DeepEqual(got, wantOpen) {
		t.Errorf("doors open: args\n got %+v\nwant %+v", got, wantOpen)
	}
	wantFork := map[string]map[string]report.CallArgs{"x86_64": {"clone": {}}}
	if got := args(fork); !reflect.DeepEqual(got, wantFork) {
		t.Errorf("doors fork: args\n got %+v\nwant %+v", got, wantFork)
	}
}
