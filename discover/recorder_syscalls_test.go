package discover

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/recommend"
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
	strace, _ := exec.LookPath("strace")
	var union []string
	for _, cgo := range []bool{false, true} {
		name := map[bool]string{false: "static", true: "cgo"}[cgo]
		t.Run(name, func(t *testing.T) {
			bin, dir, n := buildKscmp(t, cgo), t.TempDir(), 0
			recorderJob(t, bin, func(t *testing.T, args, env []string) *recorderRun {
				n++
				cmd := exec.Command(strace, append([]string{"-f", "-qq", "-o", filepath.Join(dir, fmt.Sprintf("trace.%d", n)), "--", bin}, args...)...)
				cmd.Env = append(append(os.Environ(), "GOGC=5"), env...)
				return startRecorderRun(t, cmd, func(cmd *exec.Cmd) int { return childPid(t, cmd.Process.Pid, bin) })
			})
			set, err := straceCalls(dir)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s (%d): %s", name, len(set), strings.Join(set, " "))
			union = append(union, set...)
		})
	}
	slices.Sort(union)
	union = slices.Compact(union)
	t.Logf("union (%d): %s", len(union), strings.Join(union, " "))
	eq, none := recommend.Equivalents(api.ArchX86_64, api.ArchAARCH64, union)
	var adds []string
	for _, e := range eq {
		if !slices.Contains(union, e.Name) {
			adds = append(adds, fmt.Sprintf("%s (for %s)", e.Name, e.For))
		}
	}
	t.Logf("for arm64: %s; none there: %s", strings.Join(adds, ", "), strings.Join(none, " "))
	allowed, err := recorderPolicyCalls()
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for _, s := range union {
		if !slices.Contains(allowed, s) {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		t.Errorf("the recorder's own policy lacks: %s", strings.Join(missing, " "))
	}
}

// recorderPolicyCalls is what the recorder's own policy allows.
func recorderPolicyCalls() ([]string, error) {
	p, err := RecorderPolicy()
	if err != nil {
		return nil, err
	}
	var allowed []string
	for _, r := range p.Spec.Seccomp.AllRules() {
		allowed = append(allowed, r.Syscalls...)
	}
	return allowed, nil
}

// straceLine finds the system call of a line of `strace -f -o`: "PID
// name(args) = ret", "PID <... name resumed>...", never signals or exits.
var straceLine = regexp.MustCompile(`^\d+\s+(?:<\.\.\. )?([a-z0-9_]+)(?:\(| resumed>)`)

// straceCalls returns the system calls in every strace output file in dir.
func straceCalls(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "trace.*"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no strace output in %s: %v", dir, err)
	}
	seen := map[string]bool{}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if m := straceLine.FindStringSubmatch(sc.Text()); m != nil {
				seen[m[1]] = true
			}
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
	}
	out := make([]string, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	slices.Sort(out)
	return out, nil
}

// childPid waits for pid's child that runs exe and returns it (strace
// forks short-lived test children of its own first).
func childPid(t *testing.T, pid int, exe string) int {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		for _, f := range strings.Fields(string(data)) {
			child, err := strconv.Atoi(f)
			if err != nil {
				continue
			}
			if got, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", child)); got == exe {
				return child
			}
		}
	}
	t.Fatalf("process %d started no %s", pid, exe)
	return 0
}
