package violations

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/api/violation"
	"github.com/kubearmor/kscmp/internal/ocitest"
)

// TestRefusedNumbers: the refused set is the calls refused with EPERM
// whatever their arguments; an allow-list's default counts every call it
// does not name, a conditional rule's calls never count, other errnos
// never count.
func TestRefusedNumbers(t *testing.T) {
	table := api.ArchX86_64.Table().SyscallNames
	got, err := RefusedNumbers([]byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
		{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"},
		{"names":["chmod"],"action":"SCMP_ACT_ERRNO","errnoRet":38},
		{"names":["clone"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":268435456,"op":"SCMP_CMP_MASKED_EQ","valueTwo":268435456}]},
		{"names":["no_such_call"],"action":"SCMP_ACT_ERRNO"}]}`), "x86_64")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	want := []int{table["mkdir"], table["mkdirat"]}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("deny-list: %v, want %v", got, want)
	}
	got, err = RefusedNumbers([]byte(`{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
		{"names":["read","write"],"action":"SCMP_ACT_ALLOW"},
		{"names":["socket"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1,"op":"SCMP_CMP_EQ"}]}]}`), "x86_64")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, table["mkdir"]) || slices.Contains(got, table["read"]) || slices.Contains(got, table["socket"]) {
		t.Errorf("allow-list: mkdir in %v, read and socket (conditional) not", len(got))
	}
	if _, err := RefusedNumbers([]byte(`{`), "x86_64"); err == nil || !strings.Contains(err.Error(), "seccomp profile") {
		t.Errorf("bad JSON: %v", err)
	}
}

// TestRuncBlockExitErrors: runc 1.1.5 refuses the log flag, so a Block
// (SCMP_ACT_ERRNO) refusal never reaches audit. With the exit-errors
// source watching runc's state directories, a runc container's refused
// mkdir is reported as Block under the container; its genuine EPERM
// (sethostname without CAP_SYS_ADMIN, a call its profile allows) is not.
func TestRuncBlockExitErrors(t *testing.T) {
	bin := ocitest.Require(t, "runc")
	id := fixedID(t)
	prof := []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}`)
	// The watch source reads the state directories of this test's runs
	// (ocitest keeps each in its own t.TempDir, beside this one); the
	// container waits a second so the monitor's next interval watches its
	// cgroup before it calls.
	states := filepath.Join(filepath.Dir(t.TempDir()), "*", "state")
	c := ocitest.Container{Runtime: bin, ID: id, Rootfs: ocitest.BusyboxRootfs(t), Seccomp: prof,
		Args: []string{"sh", "-c", "sleep 1; hostname kscmp-genuine; mkdir /tmp/refused; mkdir /tmp/refused; exit 0"}}
	before := time.Now()
	rep, res := monitorWhileOpts(t, c, Options{ExitErrors: RuntimeWatches([]string{states})}, func(r *violation.Report) bool {
		return len(of(r, id)) > 0
	})
	if res.ExitCode != 0 || !strings.Contains(res.Stderr, "hostname") || strings.Count(res.Stderr, "Operation not permitted") != 3 {
		t.Fatalf("container: want the hostname and both mkdirs refused with EPERM: %+v", res)
	}
	got := of(rep, id)
	if len(got) != 1 || got[0].Syscall != "mkdir" || got[0].Action != violation.ActionBlock || got[0].Count != 2 || got[0].ABI != "x86_64" {
		t.Fatalf("entries of container %s: %+v, want mkdir Block twice (all: %+v)", id, got, rep.Violations)
	}
	// Seen while the test ran: after it began (the container sleeps a
	// second before its first mkdir, well beyond the boot-time clock's
	// conversion to wall time), first before last, and not after now.
	if e := got[0]; e.Identity.Kind != "container" || e.FirstSeen.Before(before) || e.LastSeen.Before(e.FirstSeen) || e.LastSeen.After(time.Now()) {
		t.Errorf("entry %+v: want a container, seen between %s and now", e, before.UTC())
	}
	if !strings.Contains(rep.Source, "exit-errors") {
		t.Errorf("source %q", rep.Source)
	}
}
