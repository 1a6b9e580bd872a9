package discover

import (
	"os"
	"os/exec"
	"testing"

	"github.com/kubearmor/kscmp/internal/stracetest"
)

// TestRecorderSyscalls measures which system calls `kscmp discover
// --node-recorder` makes doing its whole job (recorderJob: load the
// recorder, list and watch the node's pods, record a container, progress
// lines, the stream; ended by its pod's stop annotation, by SIGTERM and by
// its duration; a failure), under strace -f, as CGO_ENABLED=0 builds it
// (the image) and with cgo, both with GOGC=5 so that the garbage collector,
// its scavenger and preemption signals run often. It prints each set and
// their union, and fails when the recorder's own policy
// (discover/recorderprofile/kscmp-recorder-policy.yaml) lacks a call. Slow
// and needs root, strace and runc: run it with KSCMP_RECORDER_SYSCALLS=1
// after changing the recorder.
func TestRecorderSyscalls(t *testing.T) {
	if os.Getenv("KSCMP_RECORDER_SYSCALLS") != "1" {
		t.Skip("measures the node recorder's system calls for its own policy; set KSCMP_RECORDER_SYSCALLS=1")
	}
	requireKernel(t, "strace")
	sets := map[string][]string{}
	for _, cgo := range []bool{false, true} {
		name := map[bool]string{false: "static", true: "cgo"}[cgo]
		t.Run(name, func(t *testing.T) {
			bin, tr := buildKscmp(t, cgo), stracetest.New(t)
			recorderJob(t, bin, func(t *testing.T, args, env []string) *recorderRun {
				return startRecorderRun(t, tr.Command(bin, args, env), func(cmd *exec.Cmd) int { return stracetest.Child(t, cmd.Process.Pid, bin) })
			})
			set, err := tr.Calls()
			if err != nil {
				t.Fatal(err)
			}
			sets["strace, "+name] = set
		})
	}
	p, err := RecorderPolicy()
	if err != nil {
		t.Fatal(err)
	}
	stracetest.Check(t, sets, p, nil)
}
