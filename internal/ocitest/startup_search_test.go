package ocitest

import (
	"fmt"
	"os"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/merge"
)

// startupSearchEnv opts in to TestStartupSyscallSearch; startupRunsEnv
// overrides how many runs in a row must succeed before the search counts a
// call as not needed (default 100), and so how sure it is about calls needed
// only in some runs.
const (
	startupSearchEnv = "KSCMP_STARTUP_SEARCH"
	startupRunsEnv   = "KSCMP_STARTUP_SEARCH_RUNS"
)

// TestStartupSyscallSearch runs StartupSearch for runc and crun with
// noNewPrivileges true and false and a root and a non-root (uid 1000)
// workload, and compares what it finds with the set merge/runtime.go
// records for the installed version of each runtime. It fails when they
// differ: a call needed on every start that is not recorded as required, a
// recorded required call that no configuration needed every time, a call
// needed now and then that is not recorded at all, or no recorded set for
// the installed version. Recorded extra calls the search did not need are
// only logged: they are there for failures it cannot see (a non-root
// workload reopening /dev/stdout, say). It needs root and strace, takes
// many minutes, and is opt-in:
//
//	KSCMP_STARTUP_SEARCH=1 go test -run TestStartupSyscallSearch -v -timeout 120m ./internal/ocitest/
func TestStartupSyscallSearch(t *testing.T) {
	if os.Getenv(startupSearchEnv) != "1" {
		t.Skipf("slow search of the runtimes' start-up system calls; run with %s=1", startupSearchEnv)
	}
	if goruntime.GOARCH != "amd64" {
		t.Skipf("the search workload is an x86-64 program; GOARCH is %s", goruntime.GOARCH)
	}
	opt := SearchOptions{}
	if v := os.Getenv(startupRunsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", startupRunsEnv, v)
		}
		opt.Runs = n
	}
	for _, rt := range runtimes {
		t.Run(rt, func(t *testing.T) {
			var results []SearchResult
			for _, nnp := range []bool{true, false} {
				for _, uid := range []uint32{0, 1000} {
					cfg := SearchConfig{Runtime: rt, NoNewPrivileges: nnp, UID: uid}
					t.Run(fmt.Sprintf("nnp=%t/uid=%d", nnp, uid), func(t *testing.T) {
						start := time.Now()
						res := StartupSearch(t, cfg, opt)
						t.Logf("%s: %d trials in %v\n  seen after the filter: %s\n  needed: %s\n  needed now and then: %s\n  made, denial survived: %s",
							cfg, res.Trials, time.Since(start).Round(time.Second), GoSlice(res.Seen), GoSlice(res.Needed),
							nowAndThen(res), GoSlice(res.Survived))
						results = append(results, res)
					})
				}
			}
			if t.Failed() {
				return
			}
			version, err := RuntimeVersion(rt)
			if err != nil {
				t.Fatal(err)
			}
			if problems := compareRecorded(merge.Runtime(rt), version, results); len(problems) > 0 {
				t.Errorf("%s %s: the search does not confirm merge/runtime.go's set:\n  %s", rt, version, strings.Join(problems, "\n  "))
			}
		})
	}
}

// nowAndThen describes the calls of res needed in some runs only.
func nowAndThen(res SearchResult) string {
	var out []string
	for _, name := range res.Needed {
		switch n := res.FirstFailure[name]; n {
		case 1:
		case 0:
			out = append(out, name+" (added to make the set stable)")
		default:
			out = append(out, fmt.Sprintf("%s (first failure in run %d)", name, n))
		}
	}
	return strings.Join(out, ", ")
}

// compareRecorded compares the search's results for the configurations of
// one runtime with the set recorded for its version and returns the
// differences: required must be exactly the calls some configuration needed
// on every start, and every call needed now and then must be recorded
// (required or extra).
func compareRecorded(rt merge.Runtime, version string, results []SearchResult) []string {
	var everyTime, needed []string
	for _, res := range results {
		everyTime = union(everyTime, res.EveryTime())
		needed = union(needed, res.Needed)
	}
	required, extra, ok := rt.RecordedStartup(version)
	if !ok {
		return []string{fmt.Sprintf("no set recorded for %s %s (recorded: %v); add to merge/runtime.go: required %s, extra %s",
			rt, version, rt.RecordedVersions(), GoSlice(everyTime), GoSlice(without(needed, everyTime)))}
	}
	var problems []string
	if missing := without(everyTime, required); len(missing) > 0 {
		problems = append(problems, "needed on every start, not recorded as required: "+GoSlice(missing))
	}
	if superfluous := without(required, everyTime); len(superfluous) > 0 {
		problems = append(problems, "recorded as required, needed every time by no configuration: "+GoSlice(superfluous))
	}
	if unrecorded := without(without(needed, everyTime), slices.Concat(required, extra)); len(unrecorded) > 0 {
		problems = append(problems, "needed now and then, not recorded: "+GoSlice(unrecorded))
	}
	return problems
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

// TestCompareRecorded checks the comparison of the opt-in search with the
// recorded sets on made-up results, so that a difference really fails it.
func TestCompareRecorded(t *testing.T) {
	required, _, ok := merge.RuntimeCrun.RecordedStartup("1.8.1")
	if !ok {
		t.Fatal("no set recorded for crun 1.8.1")
	}
	res := func(needed []string, ff map[string]int) SearchResult {
		return SearchResult{Needed: needed, FirstFailure: ff}
	}
	every := func(names []string) map[string]int {
		ff := map[string]int{}
		for _, n := range names {
			ff[n] = 1
		}
		return ff
	}
	withFutex := every(required)
	withFutex["futex"] = 7
	for _, tc := range []struct {
		name    string
		version string
		results []SearchResult
		want    []string // substrings of the problems, in order; none: no problem
	}{
		{"same", "1.8.1", []SearchResult{res([]string{"execve"}, every([]string{"execve"})), res(required, every(required))}, nil},
		{"missing", "1.8.1", []SearchResult{res(union(required, []string{"getpid"}), every(union(required, []string{"getpid"})))},
			[]string{`not recorded as required: []string{"getpid"}`}},
		{"superfluous", "1.8.1", []SearchResult{res(required[1:], every(required[1:]))},
			[]string{"needed every time by no configuration: []string{" + strconv.Quote(required[0]) + "}"}},
		{"unrecorded now and then", "1.8.1", []SearchResult{res(union(required, []string{"futex"}), withFutex)},
			[]string{`needed now and then, not recorded: []string{"futex"}`}},
		{"no record", "0.0.1", []SearchResult{res(required, every(required))}, []string{"no set recorded for crun 0.0.1"}},
	} {
		got := compareRecorded(merge.RuntimeCrun, tc.version, tc.results)
		if len(got) != len(tc.want) {
			t.Errorf("%s: got %q, want %d problems like %q", tc.name, got, len(tc.want), tc.want)
			continue
		}
		for i := range got {
			if !strings.Contains(got[i], tc.want[i]) {
				t.Errorf("%s: problem %d is %q, want it to contain %q", tc.name, i, got[i], tc.want[i])
			}
		}
	}
}
