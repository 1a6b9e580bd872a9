package agent

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/kubearmor/kscmp/discover/violations"
	"github.com/kubearmor/kscmp/internal/apitest"
	"github.com/kubearmor/kscmp/internal/ocitest"
	"github.com/kubearmor/kscmp/internal/testenv"
)

// TestAgentViolationEvents runs the agent with its violations watch against
// a real API server, and a real container under a profile standing for a
// pod of this node (the pod's status names the container's id, as the
// kubelet publishes it): its mkdir calls become Events on that pod naming
// the call, the count, the container and the pod's profile, and the
// metrics count them under the pod. crun takes SECCOMP_FILTER_FLAG_LOG, so
// a Block is seen; runc 1.1.5 does not, so it runs the complain-mode
// profile (SCMP_ACT_LOG), whose calls run and are logged.
func TestAgentViolationEvents(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		testenv.Missing(t, "an amd64 machine (the test program is x86-64 code)")
	}
	srv := apitest.Start(t)
	srv.InstallPolicyCRD(t)
	srv.CreateNamespace(t, "shop")
	for _, c := range []struct {
		runtime, action string
		profile         string
		want            string
	}{
		{"crun", "Block", `{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_LOG"],"syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}`, "kscmp refused mkdir"},
		{"runc", "Audit", `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_LOG"}]}`, "kscmp logged (complain mode) mkdir"},
	} {
		t.Run(c.runtime, func(t *testing.T) {
			bin := ocitest.Require(t, c.runtime)
			agentViolationEvents(t, srv, bin, c.runtime, c.action, []byte(c.profile), c.want)
		})
	}
}

func agentViolationEvents(t *testing.T, srv *apitest.Server, bin, rt, action string, profile []byte, want string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const calls = 3
	id := "kscmp-agentviol-" + rt
	node, pod := "node-"+rt, "web-"+rt
	runningPod(ctx, t, srv, node, pod, rt+"://"+id)

	m := NewMetrics(t.TempDir(), 0)
	// AttributeExited, as kscmp agent runs by default: the container's
	// process exits right after its calls, before the agent reads their
	// records, and is still named.
	a := startViolationAgent(ctx, t, srv, Options{Node: node, Metrics: m,
		Violations: &ViolationOptions{Interval: 500 * time.Millisecond, AttributeExited: true}})

	rootfs := ocitest.BusyboxRootfs(t)
	if err := os.WriteFile(filepath.Join(rootfs, "prog"), ocitest.LoopProgram(83, calls, 0), 0o755); err != nil {
		t.Fatal(err)
	}
	res, err := ocitest.Run(ctx, t, ocitest.Container{Runtime: bin, ID: id, Rootfs: rootfs, Args: []string{"/prog"}, Seccomp: profile})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("container: %+v %v", res, err)
	}

	// The calls may fall into two intervals: the Events' counts add up.
	msg := regexp.MustCompile(`^` + regexp.QuoteMeta(want) + ` (once|(\d+) times) in container bb \(profile localhost/` + regexp.QuoteMeta(violationProfile) + `\)$`)
	var seen []string
	waitFor(ctx, t, "Events with "+strconv.Itoa(calls)+" mkdir calls on pod "+pod, func() bool {
		evs, err := srv.Client.CoreV1().Events("shop").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
		if err != nil {
			return false
		}
		total := 0
		seen = seen[:0]
		for _, e := range evs.Items {
			seen = append(seen, e.Reason+": "+e.Message)
			sm := msg.FindStringSubmatch(e.Message)
			if sm == nil || e.Reason != "Seccomp"+action || e.Source.Component != EventComponent {
				t.Fatalf("event on %s: %s %q", pod, e.Reason, e.Message)
			}
			n := 1
			if sm[2] != "" {
				n, _ = strconv.Atoi(sm[2])
			}
			if int(e.Count) != n {
				t.Errorf("event %q has count %d", e.Message, e.Count)
			}
			total += n
		}
		return total == calls
	})
	t.Logf("events: %s", strings.Join(seen, "; "))
	text := scrapeMetrics(t, m)
	series := `kscmp_agent_violations_total{action="` + action + `",namespace="shop",syscall="mkdir",workload="Pod/` + pod + `"} ` + strconv.Itoa(calls)
	if !strings.Contains(text, series) {
		t.Errorf("metrics lack %s:\n%s", series, grepKscmp(text))
	}
	if sum := a.ViolationSummary("shop"); !containsCount(sum, pod, "mkdir", action, calls) {
		t.Errorf("summary %+v", sum)
	}
}

func containsCount(sum []ViolationCount, pod, syscall, action string, n int) bool {
	for _, c := range sum {
		if c.Pod == pod && c.Syscall == syscall && c.Action == action && c.Count == uint64(n) && c.Profile != "" {
			return true
		}
	}
	return false
}

// TestAgentExitErrors: runc 1.1.5 cannot set SECCOMP_FILTER_FLAG_LOG, so a
// runc container's refused mkdir (SCMP_ACT_ERRNO) never reaches audit. The
// agent reports it, as a SeccompBlock Event on the pod, only with
// ViolationOptions.ExitErrors (kscmp agent --exit-errors). Without it the
// same container's logged call (chdir, SCMP_ACT_LOG, made after the mkdir)
// is reported and the refusal is not: nothing but the exit-errors program
// could report it later.
func TestAgentExitErrors(t *testing.T) {
	srv := apitest.Start(t)
	srv.InstallPolicyCRD(t)
	srv.CreateNamespace(t, "shop")
	bin := ocitest.Require(t, "runc")
	for _, on := range []bool{false, true} {
		name := map[bool]string{false: "off", true: "on"}[on]
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			id := "kscmp-agentexit-" + name
			node, pod := "node-exit-"+name, "web-exit-"+name
			runningPod(ctx, t, srv, node, pod, "runc://"+id)
			vo := &ViolationOptions{Interval: 500 * time.Millisecond}
			if on {
				// ocitest keeps each run's runc state beside this test's
				// temporary directory.
				vo.ExitErrors = violations.RuntimeWatches([]string{filepath.Join(filepath.Dir(t.TempDir()), "*", "state")})
			}
			a := startViolationAgent(ctx, t, srv, Options{Node: node, Violations: vo})
			// The container waits a second: the monitor's next interval
			// watches its cgroup before it calls. The logged call is the
			// shell's own (cd: chdir), and the shell stays a second after:
			// a record's pid is named when it is read, and a forked
			// applet's is gone by then.
			res, err := ocitest.Run(ctx, t, ocitest.Container{Runtime: bin, ID: id, Rootfs: ocitest.BusyboxRootfs(t),
				Seccomp: []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"},{"names":["chdir"],"action":"SCMP_ACT_LOG"}]}`),
				Args:    []string{"sh", "-c", "sleep 1; mkdir /tmp/refused; cd /tmp; sleep 1; exit 0"}})
			if err != nil || res.ExitCode != 0 || !strings.Contains(res.Stderr, "Operation not permitted") {
				t.Fatalf("container: want mkdir refused with EPERM: %+v %v", res, err)
			}
			var got []corev1.Event
			defer func() {
				if t.Failed() {
					for _, e := range got {
						t.Logf("event %s: %s", e.Reason, e.Message)
					}
					t.Logf("summary: %+v", a.ViolationSummary(""))
				}
			}()
			waitFor(ctx, t, "the logged chdir's Event", func() bool {
				evs, err := srv.Client.CoreV1().Events("shop").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
				if err != nil {
					return false
				}
				got = evs.Items
				for _, e := range got {
					if e.Reason == "SeccompAudit" && strings.Contains(e.Message, " chdir ") {
						return true
					}
				}
				return false
			})
			if !on {
				for _, e := range got {
					if e.Reason == "SeccompBlock" {
						t.Errorf("without exit-errors a runc refusal was reported: %q", e.Message)
					}
				}
				return
			}
			want := "kscmp refused mkdir once in container bb (profile localhost/" + violationProfile + ")"
			waitFor(ctx, t, "the refused mkdir's Event", func() bool {
				evs, err := srv.Client.CoreV1().Events("shop").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
				if err != nil {
					return false
				}
				for _, e := range evs.Items {
					if e.Reason == "SeccompBlock" && e.Message == want {
						return true
					}
				}
				return false
			})
			if sum := a.ViolationSummary("shop"); !containsCount(sum, pod, "mkdir", "Block", 1) {
				t.Errorf("summary %+v, want mkdir Block once", sum)
			}
		})
	}
}

// startViolationAgent runs an agent with opts (opts.Violations set; a
// seccomp directory of t's) against srv until t ends, and returns once its
// violations monitor has subscribed to the audit records.
func startViolationAgent(ctx context.Context, t *testing.T, srv *apitest.Server, opts Options) *Agent {
	t.Helper()
	ready := make(chan struct{})
	opts.Violations.Ready = func() { close(ready) }
	opts.SeccompDir = t.TempDir()
	a, err := New(srv.Client, dynamic.NewForConfigOrDie(srv.Config), opts)
	if err != nil {
		t.Fatal(err)
	}
	actx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	select {
	case <-ready:
	case <-ctx.Done():
		t.Fatal("the violations monitor did not subscribe")
	}
	return a
}

// violationProfile is the Localhost profile of runningPod's container.
const violationProfile = "kubearmor/shop/web.json"

// runningPod makes pod, on node in namespace shop, what the kubelet would
// report for one running container "bb" (containerID, e.g. runc://<id>)
// started under violationProfile: what the agent names a
// violation's container by.
func runningPod(ctx context.Context, t *testing.T, srv *apitest.Server, node, pod, containerID string) {
	t.Helper()
	prof := violationProfile
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: pod, Namespace: "shop"},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "bb", Image: "busybox",
			SecurityContext: &corev1.SecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: &prof}}}}}}
	p, err := srv.Client.CoreV1().Pods("shop").Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "bb", Image: "busybox", ImageID: "busybox", ContainerID: containerID,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}}
	if _, err := srv.Client.CoreV1().Pods("shop").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
