package report

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/internal/fsutil"
)

func sampleReport() *Report {
	t0 := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	return &Report{APIVersion: APIVersion, Kind: Kind, Node: "n", Kernel: "6.18", Arch: "x86_64", Hook: "tp_btf",
		Start: t0, End: t0.Add(time.Minute), Workloads: []Workload{
			{Identity: Identity{Kind: KindPod, Namespace: "ns", Pod: "p", Container: "c", Labels: map[string]string{"app": "x"}, Owner: &Owner{Kind: "Deployment", Name: "x"}},
				Syscalls: map[string][]string{"x86_64": {"write", "read"}, "i386": {"exit_group"}}, FirstSeen: t0, LastSeen: t0},
			{Identity: Identity{Kind: KindSystemd, Unit: "nginx.service"}, Syscalls: map[string][]string{"x86_64": {"epoll_wait"}}},
		}}
}

func TestReportRoundTrip(t *testing.T) {
	r := sampleReport()
	data, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Read(bytes.NewReader(data), "r.json")
	if err != nil {
		t.Fatal(err)
	}
	again, _ := back.Marshal()
	if !bytes.Equal(data, again) {
		t.Errorf("report changed in a round trip:\n%s\n%s", data, again)
	}
	if got := back.Workloads[0].Syscalls["x86_64"]; !reflect.DeepEqual(got, []string{"read", "write"}) && !reflect.DeepEqual(back.Workloads[1].Syscalls["x86_64"], []string{"read", "write"}) {
		t.Errorf("names not sorted: %v", back.Workloads)
	}
	for in, want := range map[string]string{
		`{"apiVersion":"kscmp/v2","kind":"ObservationReport"}`:                                                                        `apiVersion "kscmp/v2"`,
		`{"apiVersion":"kscmp/v1","kind":"ObservationReport","workloads":[{"identity":{"kind":"vm"}}]}`:                               `workloads[0].identity.kind: "vm"`,
		`{"apiVersion":"kscmp/v1","kind":"ObservationReport","workloads":[{"identity":{"kind":"pod"},"syscalls":{"mips":["read"]}}]}`: `"mips": unknown ABI`,
		`{"apiVersion":"kscmp/v1","kind":"ObservationReport","extra":1}`:                                                              `unknown field "extra"`,
	} {
		if _, err := Read(bytes.NewReader([]byte(in)), "r.json"); err == nil || !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("%s: got %v, want %q", in, err, want)
		}
	}
}

// FuzzRead: the report reader never panics, and what it accepts
// survives a write and a read unchanged.
func FuzzRead(f *testing.F) {
	data, _ := sampleReport().Marshal()
	f.Add(data)
	f.Add([]byte(`{"apiVersion":"kscmp/v1","kind":"ObservationReport","workloads":[]}`))
	f.Add([]byte(`{"apiVersion":"kscmp/v1","kind":"ObservationReport","workloads":[{"identity":{"kind":"process","exe":"/bin/sh"},"syscalls":{"x86_64":["read","read"]},"unknown":{"x86_64":[999]}}]}`))
	f.Add([]byte(argsReport))
	f.Add([]byte(`{"apiVersion":"kscmp/v1","kind":"ObservationReport","workloads":[{"identity":{"kind":"process"},"syscalls":{"x86_64":["setns","prctl"]},"args":{"x86_64":{"setns":{"anyNamespace":true},"prctl":{"options":["79","PR_SET_NAME"],"overflow":true}}}}]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := Read(bytes.NewReader(in), "fuzz.json")
		if err != nil {
			return
		}
		out, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Read(bytes.NewReader(out), "again.json")
		if err != nil {
			t.Fatalf("written report is refused: %v\n%s", err, out)
		}
		again, _ := back.Marshal()
		if !bytes.Equal(out, again) {
			t.Fatalf("not stable:\n%s\n%s", out, again)
		}
	})
}

// TestReadFileRegularAndBounded: reports are read by the one input reader:
// not a FIFO, not more than the limit.
func TestReadFileRegularAndBounded(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "r.json")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadAll([]string{dir}); !errors.Is(err, fsutil.ErrNotRegular) {
		t.Errorf("a FIFO: %v", err)
	}
	big := filepath.Join(t.TempDir(), "big.json")
	data, _ := New().Marshal()
	os.WriteFile(big, data, 0o644)
	if _, err := ReadAllLimit([]string{big}, int64(len(data))); err != nil {
		t.Errorf("at the limit: %v", err)
	}
	if _, err := ReadAllLimit([]string{big}, int64(len(data)-1)); !errors.Is(err, fsutil.ErrTooLarge) {
		t.Errorf("over the limit: %v", err)
	}
}

// TestValidateSyscallNames: a name that is not in its ABI's table is
// refused with the field and the value (a recorder writes none; unknown
// numbers go under unknown).
func TestValidateSyscallNames(t *testing.T) {
	for abi, name := range map[string]string{"x86_64": "nosuch", "aarch64": "open", "i386": "read\n---"} {
		r := sampleReport()
		r.Workloads[0].Syscalls = map[string][]string{abi: {name}}
		err := r.Validate()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "workloads[0].syscalls."+abi+"[0]: "+strconv.Quote(name)+": not a system call of "+abi) {
			t.Errorf("%s %q: %v", abi, name, err)
		}
	}
	if err := sampleReport().Validate(); err != nil {
		t.Errorf("a good report: %v", err)
	}
}

// TestReadAllLiteralName: a path that names an existing file is that file,
// even when it reads as a pattern: "rep[1].json" is not "rep1.json" (#12
// item 11; before, the glob matched only rep1.json).
func TestReadAllLiteralName(t *testing.T) {
	dir := t.TempDir()
	data, _ := sampleReport().Marshal()
	literal, other := filepath.Join(dir, "rep[1].json"), filepath.Join(dir, "rep1.json")
	os.WriteFile(literal, data, 0o644)
	os.WriteFile(other, data, 0o644)
	srcs, err := ReadAll([]string{literal})
	if err != nil || len(srcs) != 1 || srcs[0].Name != literal {
		t.Errorf("ReadAll(%q): %v %v", literal, srcs, err)
	}
	// Without a file of that name it is still a pattern.
	srcs, err = ReadAll([]string{filepath.Join(dir, "rep[0-9].json")})
	if err != nil || len(srcs) != 1 || srcs[0].Name != other {
		t.Errorf("a pattern: %v %v", srcs, err)
	}
}
