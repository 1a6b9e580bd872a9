// Package stracetest measures the system calls a kscmp component makes, for
// the tests that keep a component's own seccomp policy (the agent's, the
// node recorder's) equal to what it needs: runs under strace -f, the calls
// read from strace's output, and the union checked against the policy.
package stracetest

import (
	"bufio"
	"fmt"
	"maps"
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

// Tracer writes the strace output of one measured program's runs into its
// own directory, one file per run (trace.1, trace.2, …).
type Tracer struct {
	strace, dir string
	runs        int
}

// New finds strace (a test that needs it checks it with testenv first) and
// gives the runs a directory of t's.
func New(t *testing.T) *Tracer {
	t.Helper()
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Fatalf("strace: %v", err)
	}
	return &Tracer{strace: strace, dir: t.TempDir()}
}

// Command is bin with args under strace -f, with GOGC=5 so that the
// garbage collector, its scavenger and preemption signals run often, and
// env added to the test's environment.
func (tr *Tracer) Command(bin string, args, env []string) *exec.Cmd {
	tr.runs++
	out := filepath.Join(tr.dir, fmt.Sprintf("trace.%d", tr.runs))
	cmd := exec.Command(tr.strace, append([]string{"-f", "-qq", "-o", out, "--", bin}, args...)...)
	cmd.Env = append(append(os.Environ(), "GOGC=5"), env...)
	return cmd
}

// Calls returns the system calls of every run so far, sorted.
func (tr *Tracer) Calls() ([]string, error) { return callsIn(tr.dir) }

// straceLine finds the system call of a line of `strace -f -o`: "PID
// name(args) = ret", "PID <... name resumed>...", never signals or exits.
var straceLine = regexp.MustCompile(`^\d+\s+(?:<\.\.\. )?([a-z0-9_]+)(?:\(| resumed>)`)

// callsIn returns the system calls in every strace output file in dir.
func callsIn(dir string) ([]string, error) {
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

// Check logs each measured set (sets: how it was measured → calls), their
// union and what the union adds for arm64 nodes (recommend.Equivalents),
// and fails t when policy allows less than the union. leftOut names the
// calls the policy leaves out on purpose, with why; they are logged.
func Check(t *testing.T, sets map[string][]string, policy *api.KubeArmorSeccompPolicy, leftOut map[string]string) {
	t.Helper()
	if len(sets) == 0 {
		t.Skip("nothing was measured: every measurement was skipped (see above)")
	}
	var union []string
	for _, name := range slices.Sorted(maps.Keys(sets)) {
		set := sets[name]
		t.Logf("%s (%d): %s", name, len(set), strings.Join(set, " "))
		union = append(union, set...)
	}
	slices.Sort(union)
	union = slices.Compact(union)
	t.Logf("union (%d): %s", len(union), strings.Join(union, " "))
	if len(sets) > 1 {
		for _, name := range slices.Sorted(maps.Keys(sets)) {
			var only []string
			for _, s := range sets[name] {
				n := 0
				for _, other := range sets {
					if slices.Contains(other, s) {
						n++
					}
				}
				if n == 1 {
					only = append(only, s)
				}
			}
			t.Logf("only %s: %s", name, strings.Join(only, " "))
		}
	}
	eq, none := recommend.Equivalents(api.ArchX86_64, api.ArchAARCH64, union)
	var adds []string
	for _, e := range eq {
		if !slices.Contains(union, e.Name) {
			adds = append(adds, fmt.Sprintf("%s (for %s)", e.Name, e.For))
		}
	}
	t.Logf("for arm64: %s; none there: %s", strings.Join(adds, ", "), strings.Join(none, " "))

	var allowed []string
	for _, r := range policy.Spec.Seccomp.AllRules() {
		allowed = append(allowed, r.Syscalls...)
	}
	var missing []string
	for _, s := range union {
		if slices.Contains(allowed, s) {
			continue
		}
		if why, ok := leftOut[s]; ok {
			t.Logf("left out of the policy: %s: %s", s, why)
			continue
		}
		missing = append(missing, s)
	}
	if len(missing) > 0 {
		t.Errorf("the policy %s/%s lacks: %s", policy.Namespace, policy.Name, strings.Join(missing, " "))
	}
}

// Child waits for the child of pid that runs exe and returns its pid:
// strace forks short-lived test children of its own before it runs the
// measured program.
func Child(t *testing.T, pid int, exe string) int {
	t.Helper()
	if abs, err := filepath.Abs(exe); err == nil {
		exe = abs
	}
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
