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
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-seccomp-bpf/arch"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// startupSearchEnv opts in to TestStartupSyscallSearch; startupRunsEnv
// overrides how many runs in a row must succeed before the search counts a
// call as not needed (default 100), and so how sure it is about calls needed
// only in some runs.
const (
	startupSearchEnv = "KSCMP_STARTUP_SEARCH"
	startupRunsEnv   = "KSCMP_STARTUP_SEARCH_RUNS"
)

// The search's workload is a tiny static program that makes exactly one
// system call, exit_group(42), after its execve. Exit status 42 proves that
// the runtime started it; nothing else the runtimes do exits with 42.
const (
	workloadPath = "/exit42"
	workloadExit = 42
)

// workloadSyscalls are the workload's own system calls after execve.
var workloadSyscalls = []string{"exit_group"}

// searchConfig is one point of the search: runtime × noNewPrivileges × user.
type searchConfig struct {
	runtime string
	nnp     bool
	uid     uint32
}

func (c searchConfig) String() string {
	return fmt.Sprintf("%s/nnp=%t/uid=%d", c.runtime, c.nnp, c.uid)
}

// searcher runs the trials of one configuration.
type searcher struct {
	t      *testing.T
	cfg    searchConfig
	bin    string
	rootfs string
	runs   int // runs without failure before a call counts as not needed
	trials int
	failed string // how the last failed run failed
}

// profile allows set plus the workload's own system calls and denies the
// rest with EPERM, the way a kscmp allow-list profile does.
func profile(set []string) []byte {
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
		Seccomp:         profile(set),
		NoNewPrivileges: s.cfg.nnp,
		User:            specs.User{UID: s.cfg.uid, GID: s.cfg.uid},
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
		s.t.Skipf("the search needs strace (apt-get install strace): %v", err)
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

// closure extends set until the container works in stabilityRuns runs in a
// row. When a run fails, it looks for the calls that were denied: first by
// rerunning the container under strace until a run fails there too, else
// (strace changes the timing, and a rare failure may not show) by adding
// halves of pool, the other candidates, until the set is stable. When
// several calls were denied, those without which the set is stable anyway
// are left out (a denied nanosleep, say, beside the futex that broke the run).
func (s *searcher) closure(set, pool []string) []string {
	for s.firstFailure(set, stabilityRuns) > 0 {
		var denied []string
		for range diagnosisRuns {
			if ok, calls := s.traced(set); !ok {
				denied = without(calls, union(set, workloadSyscalls))
				break
			}
		}
		how := "under strace it was denied"
		if len(denied) == 0 {
			denied = s.addBack(set, without(pool, set))
			how = fmt.Sprintf("not shown by strace in %d runs; adding candidates fixed it:", diagnosisRuns)
		}
		for i := 0; len(denied) > 1 && i < len(denied); {
			if rest := slices.Concat(denied[:i], denied[i+1:]); s.firstFailure(union(set, rest), stabilityRuns) == 0 {
				denied = rest
			} else {
				i++
			}
		}
		s.t.Logf("%s: %s failed now and then; %s %s", s.cfg, goSlice(set), how, goSlice(denied))
		set = union(set, denied)
	}
	return set
}

// addBack returns a small part of pool that makes set stable, given that
// set plus all of pool is: it halves pool as long as one half suffices.
func (s *searcher) addBack(set, pool []string) []string {
	if len(pool) == 0 {
		s.t.Fatalf("%s: %s fails now and then, and no candidate is left to add", s.cfg, goSlice(set))
	}
	if len(pool) == 1 {
		return pool
	}
	a, b := pool[:len(pool)/2], pool[len(pool)/2:]
	if s.firstFailure(union(set, a), stabilityRuns) == 0 {
		return s.addBack(set, a)
	}
	if s.firstFailure(union(set, b), stabilityRuns) == 0 {
		return s.addBack(set, b)
	}
	// Both halves hold a needed call.
	fromA := s.addBack(union(set, b), a)
	return union(fromA, s.addBack(union(set, fromA), b))
}

const (
	stabilityRuns = 100 // runs a set must survive in a row
	diagnosisRuns = 200 // runs under strace to catch a failure
)

// needed returns the members of universe without which the container fails
// (the rest of universe allowed), with the number of the run that failed
// first: 1 for calls needed every time, more for calls needed now and then.
// A failure must show twice, in two rounds of up to s.runs runs, so that one
// odd failure does not make a call needed.
func (s *searcher) needed(universe []string) ([]string, map[string]int) {
	var need []string
	firstFail := map[string]int{}
	for i, name := range universe {
		rest := slices.Concat(universe[:i], universe[i+1:])
		n := s.firstFailure(rest, s.runs)
		if n == 0 {
			continue
		}
		failed := s.failed
		if s.firstFailure(rest, s.runs) == 0 {
			s.t.Logf("%s: without %s run %d failed (%s), but no run of %d more: not counted",
				s.cfg, name, n, failed, s.runs)
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

// TestStartupSyscallSearch finds, for runc and crun with noNewPrivileges
// true and false and a root and a non-root (uid 1000) workload, the minimal
// set of system calls that an allow-list seccomp profile (default EPERM)
// must allow besides the workload's own for the container to start: the
// calls the runtime makes after it installed the filter, up to and including
// the workload's execve. It needs root and strace, takes minutes, and is
// opt-in:
//
//	KSCMP_STARTUP_SEARCH=1 go test -run TestStartupSyscallSearch -v -timeout 60m ./internal/ocitest/
//
// Method, per configuration: (1) with every x86-64 system call allowed,
// trace the runtime with strace a few times and collect the calls its
// processes make after installing the filter; (2) make that set stable:
// while it fails in one of 100 runs, find the missing calls (the ones denied
// in a failing run under strace, else by adding halves of the other
// candidates); (3) keep the calls whose removal breaks the start-up in two
// rounds of up to KSCMP_STARTUP_SEARCH_RUNS runs (default 100); (4) make the
// result stable the same way and check that removing any one call breaks
// it. Calls seen in (1) but not kept are made by the runtime, which survives
// their denial. runc's init is a Go program: some calls (futex,
// rt_sigreturn) are needed in a few runs only, hence the repetitions.
func TestStartupSyscallSearch(t *testing.T) {
	if os.Getenv(startupSearchEnv) != "1" {
		t.Skipf("slow search of the runtimes' start-up system calls; run with %s=1", startupSearchEnv)
	}
	if goruntime.GOARCH != "amd64" {
		t.Skipf("the search workload is an x86-64 program; GOARCH is %s", goruntime.GOARCH)
	}
	runs := 100
	if v := os.Getenv(startupRunsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", startupRunsEnv, v)
		}
		runs = n
	}
	var configs []searchConfig
	for _, rt := range runtimes {
		for _, nnp := range []bool{true, false} {
			for _, uid := range []uint32{0, 1000} {
				configs = append(configs, searchConfig{rt, nnp, uid})
			}
		}
	}
	cands := candidates()
	results := make(map[searchConfig][]string)
	survived := make(map[searchConfig][]string)
	for _, cfg := range configs {
		t.Run(cfg.String(), func(t *testing.T) {
			bin := Require(t, cfg.runtime)
			rootfs := BusyboxRootfs(t)
			if err := os.WriteFile(filepath.Join(rootfs, workloadPath), ExitProgram(workloadExit), 0o755); err != nil {
				t.Fatal(err)
			}
			s := &searcher{t: t, cfg: cfg, bin: bin, rootfs: rootfs, runs: runs}
			s.strace()
			start := time.Now()
			if s.firstFailure(cands, 3) > 0 {
				t.Fatalf("%s: the container does not start even with all %d system calls allowed", cfg, len(cands))
			}
			observed := s.observe(cands, 10)
			universe := s.closure(observed, cands)
			need, firstFail := s.needed(universe)
			set := s.closure(need, without(cands, need))
			// Every member must be needed in the final set too. A call
			// needed only now and then may not show it again in s.runs
			// runs; it is kept on the earlier evidence, with a note.
			for i, name := range set {
				if s.firstFailure(slices.Concat(set[:i], set[i+1:]), s.runs) == 0 {
					t.Logf("%s: %s: no failure without it in %d runs this time; kept on the earlier evidence", cfg, name, s.runs)
				}
			}
			results[cfg] = set
			survived[cfg] = without(universe, set)
			var flaky []string
			for _, name := range set {
				switch n := firstFail[name]; n {
				case 1:
				case 0:
					flaky = append(flaky, name+" (added to make the set stable)")
				default:
					flaky = append(flaky, fmt.Sprintf("%s (first failure in run %d)", name, n))
				}
			}
			t.Logf("%s: %d trials in %v\n  seen after the filter: %s\n  needed: %s\n  needed now and then: %s\n  made, denial survived: %s",
				cfg, s.trials, time.Since(start).Round(time.Second), goSlice(universe), goSlice(set),
				strings.Join(flaky, ", "), goSlice(survived[cfg]))
		})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "start-up system calls (besides the workload's own; execve is the runtime's):\n")
	for _, cfg := range configs {
		if set, ok := results[cfg]; ok {
			fmt.Fprintf(&b, "%-28s %s\n", cfg.String()+":", goSlice(set))
			if extra := survived[cfg]; len(extra) > 0 {
				fmt.Fprintf(&b, "%-28s made, denial survived: %s\n", "", goSlice(extra))
			}
		}
	}
	t.Log("\n" + b.String())
}

func goSlice(names []string) string {
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

func TestFilteredCalls(t *testing.T) {
	const trace = `100 openat(AT_FDCWD, "/proc/self/fd", O_RDONLY) = 3
100 prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, {len=12, filter=0xc0001a2800} <unfinished ...>
101 futex(0xc5c728, FUTEX_WAIT_PRIVATE, 0, NULL <unfinished ...>
100 <... prctl resumed>)              = 0
100 close(3 <unfinished ...>
101 <... futex resumed>)              = 0
100 <... close resumed>)              = 0
100 --- SIGURG {si_signo=SIGURG, si_code=SI_USER, si_pid=0, si_uid=0} ---
100 rt_sigreturn({mask=[]})           = 0
100 clone3({flags=CLONE_VM, exit_signal=0, stack=0x7f1e, stack_size=0x7fff00}, 88 <unfinished ...>
100 <... clone3 resumed> => {parent_tid=[102]}, 88) = 102
102 mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f00
100 execve("/exit42", ["/exit42"], 0xc0000245c0 /* 3 vars */ <unfinished ...>
102 +++ exited with 0 +++
100 <... execve resumed>)             = 0
100 exit_group(42)                    = ?
200 seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, NULL) = -1 EFAULT (Bad address)
200 getpid()                          = 200
300 seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_SPEC_ALLOW, {len=1128, filter=0x5581}) = 0
300 close(5)                          = 0
300 execve("/exit42", ["/exit42"], 0x7ffd /* 3 vars */) = 0
300 brk(NULL)                         = 0x1000
+++ exited with 42 +++
`
	got, err := filteredCalls(strings.NewReader(trace), "/exit42")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"clone3", "close", "execve", "mmap", "rt_sigreturn"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
