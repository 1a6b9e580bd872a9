package discover

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/internal/apitest"
	"github.com/kubearmor/kscmp/internal/ocitest"
	"github.com/kubearmor/kscmp/internal/testenv"
)

// buildKscmp builds cmd/kscmp into a temporary directory: with
// CGO_ENABLED=0 as make build and the image do, or with cgo as a plain
// `go build` does.
func buildKscmp(t *testing.T, cgo bool) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		testenv.Missing(t, "go on PATH, to build kscmp (/usr/local/go/bin)")
	}
	bin := filepath.Join(t.TempDir(), "kscmp")
	build := exec.Command("go", "build", "-o", bin, "../cmd/kscmp")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if cgo {
		build.Env = append(os.Environ(), "CGO_ENABLED=1")
	}
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// recorderRun is one `kscmp discover --node-recorder` process of
// recorderJob, started by the caller's launcher (directly, under strace).
type recorderRun struct {
	cmd    *exec.Cmd
	pid    int // the kscmp process itself, to signal
	stdout *syncBuffer
	done   chan error
}

// recorderLauncher starts kscmp with args and env (added to the test's).
type recorderLauncher func(t *testing.T, args, env []string) *recorderRun

// startRecorderRun starts cmd; pid finds the kscmp process in it (nil: cmd's own).
func startRecorderRun(t *testing.T, cmd *exec.Cmd, pid func(*exec.Cmd) int) *recorderRun {
	t.Helper()
	r := &recorderRun{cmd: cmd, stdout: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = r.stdout, os.Stderr
	// A wrapper (strace) that dies may leave kscmp holding the pipe.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- cmd.Wait() }()
	r.pid = cmd.Process.Pid
	if pid != nil {
		r.pid = pid(cmd)
	}
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			_ = cmd.Process.Kill()
			<-r.done
		}
	})
	return r
}

// wait waits for the run's end (at most a minute) and returns its error.
func (r *recorderRun) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(time.Minute):
		t.Fatal("the recorder did not end within a minute")
		return nil
	}
}

// TestRecorderBinary runs the node recorder's whole job (recorderJob) with
// the binary as the image builds it: the command's flags and environment
// reach discover.RecordNode, and every way it ends writes its report.
func TestRecorderBinary(t *testing.T) {
	requireKernel(t)
	bin := buildKscmp(t, false)
	recorderJob(t, bin, func(t *testing.T, args, env []string) *recorderRun {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), env...)
		return startRecorderRun(t, cmd, nil)
	})
}

// recorderJob is the node recorder's whole job, as the Job runs it, through
// launch: a pod of this node runs a container while it records; it ends by
// its pod's stop annotation, by SIGTERM, and by its duration, writing its
// report each time; and it fails on a missing NODE_NAME. It returns the
// reports.
func recorderJob(t *testing.T, bin string, launch recorderLauncher) []*report.Report {
	t.Helper()
	runc := ocitest.Require(t, "runc")
	srv := apitest.Start(t)
	srv.CreateNamespace(t, "shop")
	srv.CreateNamespace(t, "kscmp-system")
	kubeconfig := srv.Kubeconfig(t)
	var reps []*report.Report
	for i, end := range []string{"annotation", "sigterm", "duration"} {
		id, self := containerID(t), "rec-"+end
		createPod(t, srv, "shop", "web-"+end, "node-a", id)
		createPod(t, srv, "kscmp-system", self, "node-a", "")
		duration := "0"
		if end == "duration" {
			duration = "4s"
		}
		r := launch(t, []string{"discover", "--node-recorder", "--run", "r" + strconv.Itoa(i), "--duration", duration,
			"--interval", "200ms", "--kubeconfig", kubeconfig, "-n", "shop"},
			[]string{"NODE_NAME=node-a", "POD_NAME=" + self, "POD_NAMESPACE=kscmp-system"})
		waitFor(t, r.done, "a progress line", func() bool { return strings.Contains(r.stdout.String(), "kscmp-progress ") })
		res, err := ocitest.Run(context.Background(), t, ocitest.Container{Runtime: runc, ID: id, Rootfs: ocitest.BusyboxRootfs(t),
			Args: []string{"sh", "-c", "ls / >/dev/null && echo " + end}})
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("container: %v %+v", err, res)
		}
		switch end {
		case "annotation":
			patch := []byte(`{"metadata":{"annotations":{"` + StopAnnotation + `":""}}}`)
			if _, err := srv.Client.CoreV1().Pods("kscmp-system").Patch(context.Background(), self, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
		case "sigterm":
			if err := syscall.Kill(r.pid, syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.wait(t); err != nil {
			t.Fatalf("recorder ended by %s: %v", end, err)
		}
		rs, err := report.ReadStream(strings.NewReader(r.stdout.String()), end, 0)
		if err != nil {
			t.Fatalf("recorder ended by %s: %v", end, err)
		}
		if len(rs.Report.Workloads) != 1 || rs.Report.Workloads[0].Identity.ContainerID != id {
			t.Errorf("recorder ended by %s: want the one container %s, got %+v", end, id, rs.Report.Workloads)
		}
		reps = append(reps, rs.Report)
	}
	r := launch(t, []string{"discover", "--node-recorder", "--run", "r9", "--kubeconfig", kubeconfig}, []string{"NODE_NAME="})
	if err := r.wait(t); err == nil {
		t.Error("a recorder without NODE_NAME did not fail")
	}
	return reps
}
