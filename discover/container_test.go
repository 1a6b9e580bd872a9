package discover

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/internal/ocitest"
	"github.com/kubearmor/kscmp/merge"
)

// discoverWhile runs Discover while fn runs, and returns the report.
func discoverWhile(t *testing.T, fn func()) *report.Report {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		r   *report.Report
		err error
	}
	done := make(chan result, 1)
	started := make(chan struct{})
	go func() {
		r, err := Discover(ctx, Options{Interval: 100 * time.Millisecond, Progress: func(Progress) {
			select {
			case <-started:
			default:
				close(started)
			}
		}})
		done <- result{r, err}
	}()
	select {
	case <-started: // the recorder is attached once the first snapshot is taken
	case res := <-done:
		t.Fatalf("Discover ended early: %v", res.err)
	case <-time.After(30 * time.Second):
		t.Fatal("Discover did not start")
	}
	fn()
	cancel()
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	return res.r
}

// TestContainerDiscovered runs a busybox container under runc and under crun
// while discovering: it is reported under its container id, with its own
// calls and none of the runtime's set-up calls; a profile made from the
// report (plus the runtime's start-up set) runs it again, and a call it never
// made is refused.
func TestContainerDiscovered(t *testing.T) {
	requireKernel(t)
	script := "mkfifo /tmp/fifo && ls / >/dev/null && echo done"
	for _, rt := range []merge.Runtime{merge.RuntimeRunc, merge.RuntimeCrun} {
		t.Run(string(rt), func(t *testing.T) {
			bin := ocitest.Require(t, string(rt))
			rootfs := ocitest.BusyboxRootfs(t)
			c := ocitest.Container{Runtime: bin, Rootfs: rootfs, Args: []string{"sh", "-c", script}}
			var res ocitest.Result
			rep := discoverWhile(t, func() {
				var err error
				res, err = ocitest.Run(context.Background(), t, c)
				if err != nil || res.ExitCode != 0 {
					t.Fatalf("container: %v %+v", err, res)
				}
			})
			// MapFull and RingBufFull could hide the container's calls; the
			// other counters count every workload on the machine (other
			// test packages run at the same time).
			if l := rep.Lost; l.MapFull+l.RingBufFull != 0 {
				t.Errorf("lost: %+v", l)
			}
			var w *report.Workload
			for i := range rep.Workloads {
				if rep.Workloads[i].Identity.ContainerID == res.ID {
					w = &rep.Workloads[i]
				}
			}
			if w == nil {
				t.Fatalf("container %s not in the report (%d workloads)", res.ID, len(rep.Workloads))
			}
			if w.Identity.Kind != report.KindContainer {
				t.Errorf("identity %+v, want kind container", w.Identity)
			}
			calls := w.Syscalls["x86_64"]
			for _, want := range []string{"mknodat", "getdents64", "write", "exit_group"} {
				if !slices.Contains(calls, want) {
					t.Errorf("%s missing from the recorded set %v", want, calls)
				}
			}
			// The runtime's set-up calls in the container's namespace are
			// the runtime's, not the workload's.
			for _, runtimeOnly := range []string{"pivot_root", "mount", "sethostname", "umount2", "keyctl"} {
				if slices.Contains(calls, runtimeOnly) {
					t.Errorf("runtime call %s attributed to the workload", runtimeOnly)
				}
			}

			// Close the loop: the recorded set as a policy, merged with the
			// runtime's start-up set, runs the same container again.
			p := &api.KubeArmorSeccompPolicy{
				TypeMeta:   metav1.TypeMeta{APIVersion: api.APIVersion, Kind: api.Kind},
				ObjectMeta: metav1.ObjectMeta{Name: "recorded", Namespace: "demo"},
				Spec: api.PolicySpec{
					Selector: api.Selector{MatchLabels: map[string]string{"app": "bb"}},
					Seccomp:  api.SeccompSpec{Arch: []api.Arch{api.ArchX86_64}, Syscalls: calls, Action: api.ActionAllow},
				},
			}
			if errs := api.Validate(p); len(errs) > 0 {
				t.Fatal(errs)
			}
			rs, err := merge.Merge([]*api.KubeArmorSeccompPolicy{p}, merge.Target{Namespace: "demo", Labels: map[string]string{"app": "bb"}, Runtime: rt})
			if err != nil {
				t.Fatal(err)
			}
			c.Seccomp, err = rs.MarshalOCI()
			if err != nil {
				t.Fatal(err)
			}
			c.Rootfs = ocitest.BusyboxRootfs(t)
			again, err := ocitest.Run(context.Background(), t, c)
			if err != nil || again.ExitCode != 0 || strings.TrimSpace(again.Stdout) != "done" {
				t.Fatalf("the container does not run under the profile made from its report: %v %+v", err, again)
			}
			// A call it never made (mkdir) is refused; it works without the profile.
			c.Args = []string{"mkdir", "/tmp/new"}
			if r, _ := ocitest.Run(context.Background(), t, c); r.ExitCode == 0 || !strings.Contains(r.Stderr, "Operation not permitted") {
				t.Errorf("mkdir under the profile: want EPERM, got %+v", r)
			}
			c.Seccomp = nil
			if r, _ := ocitest.Run(context.Background(), t, c); r.ExitCode != 0 {
				t.Errorf("control: mkdir without the profile: %+v", r)
			}
		})
	}
}
