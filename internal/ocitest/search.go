package ocitest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-seccomp-bpf/arch"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kubearmor/kscmp/internal/testenv"
)

// The start-up search's workload is a tiny static program that makes
// exactly one system call, exit_group(42), after its execve. Exit status 42
// proves that the runtime started it; nothing else the runtimes do exits
// with 42.
const (
	workloadPath = "/exit42"
	workloadExit = 42
)

// workloadSyscalls are the workload's own system calls after execve.
var workloadSyscalls = []string{"exit_group"}

// SearchConfig is one point of the start-up search: runtime ×
// noNewPrivileges × user.
type SearchConfig struct {
	Runtime         string // "runc", "crun" or the path of such a binary
	NoNewPrivileges bool
	UID             uint32 // the workload's user and group
}

func (c SearchConfig) String() string {
	return fmt.Sprintf("%s/nnp=%t/uid=%d", filepath.Base(c.Runtime), c.NoNewPrivileges, c.UID)
}

// SearchOptions sets how sure the search is. The zero value gives the
// full search's numbers (100, 100, 200, 10).
type SearchOptions struct {
	// Runs without failure before a call counts as not needed, in each
	// of the two rounds that must both fail for a call to be kept.
	Runs int
	// StabilityRuns a set must survive in a row to count as stable.
	StabilityRuns int
	// DiagnosisRuns under strace to catch a rare failure.
	DiagnosisRuns int
	// ObserveRuns under strace with everything allowed, to collect what
	// the runtime calls after its filter is installed.
	ObserveRuns int
}

func (o SearchOptions) withDefaults() SearchOptions {
	for _, f := range []struct {
		v   *int
		def int
	}{{&o.Runs, 100}, {&o.StabilityRuns, 100}, {&o.DiagnosisRuns, 200}, {&o.ObserveRuns, 10}} {
		if *f.v <= 0 {
			*f.v = f.def
		}
	}
	return o
}

// SearchResult is what StartupSearch found for one configuration.
type SearchResult struct {
	Config SearchConfig
	// Seen: made by the runtime after its filter, with every call allowed.
	Seen []string
	// Needed: the smallest set found with which the container starts in
	// StabilityRuns runs in a row, and without any one call of which it
	// fails, sorted.
	Needed []string
	// FirstFailure gives, per call of Needed, the number of the first
	// failed run without it: 1 for a call needed every time, more for one
	// needed now and then, 0 for one added to make the set stable.
	FirstFailure map[string]int
	// Survived: seen, but the runtime survives its denial.
	Survived []string
	Trials   int
}

// EveryTime returns the calls of Needed without which the first run
// already failed: the ones needed on every start, sorted.
func (r SearchResult) EveryTime() []string {
	var out []string
	for _, name := range r.Needed {
		if r.FirstFailure[name] == 1 {
			out = append(out, name)
		}
	}
	return out
}

// searcher runs the trials of one configuration.
type searcher struct {
	t      testing.TB
	cfg    SearchConfig
	opt    SearchOptions
	bin    string
	rootfs string
	trials int
	failed string // how the last failed run failed
}

// StartupProfile returns an allow-list profile (default EPERM, the three
// x86 ABIs) that allows set plus the search workload's exit_group, the way
// a kscmp allow-list profile for it does.
func StartupProfile(set []string) []byte {
	p := specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Syscalls:      []specs.LinuxSyscall{{Names: union(set, workloadSyscalls), Action: specs.ActAllow}},
	}
	data, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	return data
}

func (s *searcher) container(set []string) Container {
	return Container{
		Runtime:         s.bin,
		Rootfs:          s.rootfs,
		Args:            []string{workloadPath},
		Seccomp:         StartupProfile(set),
		NoNewPrivileges: s.cfg.NoNewPrivileges,
		User:            specs.User{UID: s.cfg.UID, GID: s.cfg.UID},
	}
}

// works reports whether the container starts and the workload runs with
// set allowed.
func (s *searcher) works(set []string) bool {
	s.trials++
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := Run(ctx, s.t, s.container(set))
	if err != nil && ctx.Err() == nil {
		s.t.Fatalf("harness error: %v", err)
	}
	if err == nil && res.ExitCode == workloadExit {
		return true
	}
	s.failed = fmt.Sprintf("exit %d, error %v, stderr %q, runtime log %q", res.ExitCode, err, firstLine(res.Stderr), firstLine(res.RuntimeLog))
	return false
}

// firstLine returns the first line of s, marked when more follows.
func firstLine(s string) string {
	if line, rest, _ := strings.Cut(s, "\n"); rest != "" {
		return line + " ..."
	}
	return strings.TrimSuffix(s, "\n")
}

// firstFailure runs the container with set allowed up to n times and
// returns the number of the first failed run (1 to n), or 0 when all worked.
// Some calls are needed only now and then: runc's init is a Go program, and
// a futex under contention or the rt_sigreturn that ends the handler of a
// preemption signal happen in some runs only. One lucky run proves nothing.
func (s *searcher) firstFailure(set []string, n int) int {
	for i := 1; i <= n; i++ {
		if !s.works(set) {
			return i
		}
	}
	return 0
}

// traced runs the container once under strace and returns whether it worked
// and the system calls the runtime's processes made after they installed
// the filter (see filteredCalls).
func (s *searcher) traced(set []string) (bool, []string) {
	s.trials++
	out := filepath.Join(s.t.TempDir(), "strace.out")
	c := s.container(set)
	c.wrapper = []string{s.strace(), "-f", "-qq", "-o", out}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	res, runErr := Run(ctx, s.t, c)
	cancel()
	if runErr != nil && ctx.Err() == nil {
		s.t.Fatalf("harness error: %v", runErr)
	}
	f, err := os.Open(out)
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close()
	calls, err := filteredCalls(f, workloadPath)
	if err != nil {
		s.t.Fatal(err)
	}
	return runErr == nil && res.ExitCode == workloadExit, calls
}

func (s *searcher) strace() string {
	p, err := exec.LookPath("strace")
	if err != nil {
		testenv.Missing(s.t, "strace, for the start-up search (apt-get install strace)")
	}
	return p
}

// observe runs the container n times under strace with every candidate
// allowed and returns the union of the calls made after the filter.
func (s *searcher) observe(cands []string, n int) []string {
	var all []string
	for i := range n {
		ok, calls := s.traced(cands)
		if !ok {
			s.t.Fatalf("%s: run %d under strace failed with all candidates allowed", s.cfg, i)
		}
		all = union(all, calls)
	}
	return all
}

// closure extends set until the container works in StabilityRuns runs in a
// row. When a run fails, it looks for the calls that were denied: first by
// rerunning the container under strace until a run fails there too, else
// (strace changes the timing, and a rare failure may not show) by adding
// halves of pool, the other candidates, until the set is stable. When
// several calls were denied, those without which the set is stable anyway
// are left out (a denied nanosleep, say, beside the futex that broke the run).
func (s *searcher) closure(set, pool []string) []string {
	for s.firstFailure(set, s.opt.StabilityRuns) > 0 {
		var denied []string
		for range s.opt.DiagnosisRuns {
			if ok, calls := s.traced(set); !ok {
				denied = without(calls, union(set, workloadSyscalls))
				break
			}
		}
		how := "under strace it was denied"
		if len(denied) == 0 {
			denied = s.addBack(set, without(pool, set))
			how = fmt.Sprintf("not shown by strace in %d runs; adding candidates fixed it:", s.opt.DiagnosisRuns)
		}
		for i := 0; len(denied) > 1 && i < len(denied); {
			if rest := slices.Concat(denied[:i], denied[i+1:]); s.firstFailure(union(set, rest), s.opt.StabilityRuns) == 0 {
				denied = rest
			} else {
				i++
			}
		}
		s.t.Logf("%s: %s failed now and then; %s %s", s.cfg, GoSlice(set), how, GoSlice(denied))
		set = union(set, denied)
	}
	return set
}

// addBack returns a small part of pool that makes set stable, given that
// set plus all of pool is: it halves pool as long as one half suffices.
func (s *searcher) addBack(set, pool []string) []string {
	if len(pool) == 0 {
		s.t.Fatalf("%s: %s fails now and then, and no candidate is left to add", s.cfg, GoSlice(set))
	}
	if len(pool) == 1 {
		return pool
	}
	a, b := pool[:len(pool)/2], pool[len(pool)/2:]
	if s.firstFailure(union(set, a), s.opt.StabilityRuns) == 0 {
		return s.addBack(set, a)
	}
	if s.firstFailure(union(set, b), s.opt.StabilityRuns) == 0 {
		return s.addBack(set, b)
	}
	// Both halves hold a needed call.
	fromA := s.addBack(union(set, b), a)
	return union(fromA, s.addBack(union(set, fromA), b))
}

// needed returns the members of universe without which the container fails
// (the rest of universe allowed), with the number of the run that failed
// first: 1 for calls needed every time, more for calls needed now and then.
// A failure must show twice, in two rounds of up to Runs runs, so that one
// odd failure does not make a call needed.
func (s *searcher) needed(universe []string) ([]string, map[string]int) {
	var need []string
	firstFail := map[string]int{}
	for i, name := range universe {
		rest := slices.Concat(universe[:i], universe[i+1:])
		n := s.firstFailure(rest, s.opt.Runs)
		if n == 0 {
			continue
		}
		failed := s.failed
		if s.firstFailure(rest, s.opt.Runs) == 0 {
			s.t.Logf("%s: without %s run %d failed (%s), but no run of %d more: not counted",
				s.cfg, name, n, failed, s.opt.Runs)
			continue
		}
		if n > 1 {
			s.t.Logf("%s: without %s run %d failed: %s", s.cfg, name, n, failed)
		}
		need = append(need, name)
		firstFail[name] = n
	}
	return need, firstFail
}

// candidates is the generous start: every x86-64 system call name.
func candidates() []string {
	var names []string
	for name := range arch.X86_64.SyscallNames {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// StartupSearch finds the smallest set of system calls that an allow-list
// profile (default EPERM) must allow, besides the workload's own, for the
// runtime of cfg to start a container: the calls the runtime makes after it
// installed the filter, up to and including the workload's execve. It needs
// root, strace and busybox (Require), and an x86-64 machine.
//
// Method: (1) with every x86-64 system call allowed, trace the runtime with
// strace ObserveRuns times and collect the calls its processes make after
// installing the filter; (2) make that set stable: while it fails in one of
// StabilityRuns runs, find the missing calls (the ones denied in a failing
// run under strace, else by adding halves of the other candidates); (3) keep
// the calls whose removal breaks the start-up in two rounds of up to Runs
// runs; (4) make the result stable the same way and check that removing any
// one call breaks it. Calls seen in (1) but not kept are made by the
// runtime, which survives their denial. runc's init is a Go program: some
// calls (futex, rt_sigreturn) are needed in a few runs only, hence the
// repetitions.
func StartupSearch(t testing.TB, cfg SearchConfig, opt SearchOptions) SearchResult {
	t.Helper()
	opt = opt.withDefaults()
	bin := Require(t, cfg.Runtime)
	rootfs := BusyboxRootfs(t)
	if err := os.WriteFile(filepath.Join(rootfs, workloadPath), ExitProgram(workloadExit), 0o755); err != nil {
		t.Fatal(err)
	}
	s := &searcher{t: t, cfg: cfg, opt: opt, bin: bin, rootfs: rootfs}
	s.strace()
	cands := candidates()
	if s.firstFailure(cands, 3) > 0 {
		t.Fatalf("%s: the container does not start even with all %d system calls allowed: %s", cfg, len(cands), s.failed)
	}
	observed := s.observe(cands, opt.ObserveRuns)
	universe := s.closure(observed, cands)
	need, firstFail := s.needed(universe)
	set := s.closure(need, without(cands, need))
	// Every member must be needed in the final set too. A call needed only
	// now and then may not show it again in Runs runs; it is kept on the
	// earlier evidence, with a note.
	for i, name := range set {
		if s.firstFailure(slices.Concat(set[:i], set[i+1:]), opt.Runs) == 0 {
			t.Logf("%s: %s: no failure without it in %d runs this time; kept on the earlier evidence", cfg, name, opt.Runs)
		}
	}
	ff := map[string]int{}
	for _, name := range set {
		ff[name] = firstFail[name]
	}
	return SearchResult{Config: cfg, Seen: universe, Needed: set, FirstFailure: ff,
		Survived: without(universe, set), Trials: s.trials}
}

// RuntimeVersion returns the version of a runtime binary as its --version
// prints it on its first line ("runc version 1.1.5+ds1" gives "1.1.5+ds1").
func RuntimeVersion(runtime string) (string, error) {
	bin, err := lookPath(runtime)
	if err != nil {
		return "", err
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", bin, err)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	_, v, ok := strings.Cut(first, " version ")
	if !ok || strings.TrimSpace(v) == "" {
		return "", fmt.Errorf("%s --version: no version in %q", bin, first)
	}
	return strings.TrimSpace(v), nil
}

// GoSlice formats names as a Go []string literal, ready to be pasted into
// merge/runtime.go.
func GoSlice(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return "[]string{" + strings.Join(q, ", ") + "}"
}

// filteredCalls reads "strace -f" output and returns the names of the
// system calls made by processes after they (or the process they were cloned
// from) installed a seccomp filter, up to and including the execve of
// workload; what a process calls after that is the workload's.
func filteredCalls(r io.Reader, workload string) ([]string, error) {
	filtered := map[string]bool{}  // pid → filter installed
	done := map[string]bool{}      // pid → workload executed
	pending := map[string]string{} // pid → unfinished call's arguments
	calls := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		pid, rest, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		rest = strings.TrimSpace(rest)
		var name, args string
		switch {
		case strings.HasPrefix(rest, "+++"), strings.HasPrefix(rest, "---"):
			continue
		case strings.HasPrefix(rest, "<... "):
			// "<... name resumed>...": the end of a call begun earlier.
			name, rest, _ = strings.Cut(strings.TrimPrefix(rest, "<... "), " resumed>")
			args = pending[pid] + rest
			delete(pending, pid)
		default:
			if name, args, ok = strings.Cut(rest, "("); !ok {
				continue
			}
			if filtered[pid] && !done[pid] {
				calls[name] = true
			}
			if before, unfinished := strings.CutSuffix(args, " <unfinished ...>"); unfinished {
				pending[pid] = before
				continue
			}
		}
		ret := ""
		if i := strings.LastIndex(args, "= "); i >= 0 {
			ret, _, _ = strings.Cut(args[i+2:], " ")
		}
		switch {
		case (name == "seccomp" && strings.HasPrefix(args, "SECCOMP_SET_MODE_FILTER") ||
			name == "prctl" && strings.HasPrefix(args, "PR_SET_SECCOMP")) && ret == "0":
			filtered[pid] = true
		case name == "execve" && strings.HasPrefix(args, strconv.Quote(workload)) && ret == "0":
			done[pid] = true
		case filtered[pid] && !done[pid] && (strings.HasPrefix(name, "clone") || name == "fork" || name == "vfork"):
			// A filtered process passes its filter to its children.
			if _, err := strconv.Atoi(ret); err == nil {
				filtered[ret] = true
			}
		}
	}
	names := make([]string, 0, len(calls))
	for n := range calls {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, sc.Err()
}

// union returns the sorted union of a and b.
func union(a, b []string) []string {
	u := slices.Concat(a, b)
	slices.Sort(u)
	return slices.Compact(u)
}

// without returns the members of a that are not in b.
func without(a, b []string) []string {
	var d []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			d = append(d, x)
		}
	}
	return d
}
