package discover

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/internal/apitest"
	"github.com/kubearmor/kscmp/internal/ocitest"
)

// recorderCaps is RecorderCapabilities in the runtime's form (CAP_BPF).
func recorderCaps() []string {
	var caps []string
	for _, c := range RecorderCapabilities() {
		caps = append(caps, "CAP_"+c)
	}
	return caps
}

// recorderContainer is the recorder pod's container as the Job makes it,
// on runc: the static binary on a read-only root, root without the default
// capabilities but caps, no_new_privs, its own profile, the host's PID
// namespace (hostPID) and no host mount. It shares the host's network
// namespace only so that it reaches the test's API server on 127.0.0.1 (a
// pod reaches its cluster's through the pod network); the kubeconfig is
// mounted read-only in place of the service account.
func recorderContainer(t *testing.T, runc, bin, kubeconfig string, hostPID bool, caps []string, args ...string) ocitest.Container {
	t.Helper()
	rootfs := ocitest.BusyboxRootfs(t)
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "kscmp"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	profile, err := RecorderProfileJSON(api.FamilyAMD64)
	if err != nil {
		t.Fatal(err)
	}
	return ocitest.Container{Runtime: runc, Rootfs: rootfs, ReadonlyRootfs: true, NoNewPrivileges: true,
		Capabilities: caps, Seccomp: profile,
		Args: append([]string{"/kscmp", "discover", "--node-recorder", "--kubeconfig", "/etc/kscmp/kubeconfig"}, args...),
		Env:  []string{"NODE_NAME=node-a", "POD_NAME=rec-a", "POD_NAMESPACE=kscmp-system"},
		Mounts: []specs.Mount{{Destination: "/etc/kscmp/kubeconfig", Type: "bind", Source: kubeconfig,
			Options: []string{"rbind", "ro"}}},
		Adjust: func(s *specs.Spec) {
			s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
				return ns.Type == specs.PIDNamespace && hostPID || ns.Type == specs.NetworkNamespace
			})
		}}
}

// TestRecorderInContainer proves the recorder pod's privileges on real
// parts: in a runc container with only recorderCaps(), under its own
// profile, it loads, records a busy container of a pod of its node and
// writes a valid stream, with the host's PID namespace (hostPID) and
// without it (the identity then comes from the kernel's event alone: hostPID
// is not required); with each capability removed in turn it fails and says
// why (exit 4, the kernel's EPERM).
func TestRecorderInContainer(t *testing.T) {
	requireKernel(t)
	if api.Family(runtime.GOARCH) != api.FamilyAMD64 {
		t.Skip("the test's profile is amd64's")
	}
	runc := ocitest.Require(t, "runc")
	bin := buildKscmp(t, false)
	srv := apitest.Start(t)
	srv.CreateNamespace(t, "shop")
	srv.CreateNamespace(t, "kscmp-system")
	kubeconfig := srv.Kubeconfig(t)
	busy := containerID(t)
	createPod(t, srv, "shop", "busy", "node-a", busy)
	createPod(t, srv, "kscmp-system", "rec-a", "node-a", "")

	for _, hostPID := range []bool{true, false} {
		t.Run(fmt.Sprintf("minimum hostPID=%v", hostPID), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var (
				wg      sync.WaitGroup
				busyRes ocitest.Result
				busyErr error
			)
			wg.Add(1)
			go func() { // busy for longer than the recording, from before it starts
				defer wg.Done()
				busyRes, busyErr = ocitest.Run(ctx, t, ocitest.Container{Runtime: runc, ID: busy, Rootfs: ocitest.BusyboxRootfs(t),
					Args: []string{"sh", "-c", "i=0; while [ $i -lt 150 ]; do ls / >/dev/null; sleep 0.1; i=$((i+1)); done"}})
			}()
			res, err := ocitest.Run(ctx, t, recorderContainer(t, runc, bin, kubeconfig, hostPID, recorderCaps(),
				"--run", "r1", "--duration", "8s", "--interval", "1s"))
			wg.Wait()
			if err != nil || res.ExitCode != 0 {
				t.Fatalf("the recorder with %v: %v exit %d\nstderr: %s\nruntime: %s", recorderCaps(), err, res.ExitCode, res.Stderr, res.RuntimeLog)
			}
			if busyErr != nil || busyRes.ExitCode != 0 {
				t.Fatalf("the busy container: %v %+v", busyErr, busyRes)
			}
			rs, err := report.ReadStream(strings.NewReader(res.Stdout), "recorder", 0)
			if err != nil {
				t.Fatalf("%v\nstderr: %s", err, res.Stderr)
			}
			if len(rs.Report.Workloads) != 1 || rs.Report.Workloads[0].Identity.Pod != "busy" ||
				!slices.Contains(rs.Report.Workloads[0].Syscalls["x86_64"], "getdents64") {
				t.Errorf("want the busy pod's container with getdents64, got %+v", rs.Report.Workloads)
			}
			if rs.Report.Run != "r1" || rs.Report.Node != "node-a" || rs.Progress == nil {
				t.Errorf("run %q node %q progress %v", rs.Report.Run, rs.Report.Node, rs.Progress)
			}
		})
	}
	for _, drop := range recorderCaps() {
		t.Run("without "+drop, func(t *testing.T) {
			caps := slices.DeleteFunc(recorderCaps(), func(c string) bool { return c == drop })
			res, err := ocitest.Run(context.Background(), t, recorderContainer(t, runc, bin, kubeconfig, true, caps,
				"--run", "r1", "--duration", "2s"))
			if err != nil {
				t.Fatal(err)
			}
			if res.ExitCode != exitUnsupported || !strings.Contains(res.Stderr, "operation not permitted") {
				t.Errorf("without %s: want exit %d and the kernel's refusal, got exit %d\nstderr: %s", drop, exitUnsupported, res.ExitCode, res.Stderr)
			}
			t.Logf("without %s: %s", drop, res.Stderr)
		})
	}
}

// exitUnsupported is kscmp's exit code when the recorder cannot be loaded.
const exitUnsupported = 4
