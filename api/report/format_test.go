package report

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/api"
)

// formatSample covers every field of the format: the kinds, labels and
// owner, several ABIs, unknown numbers, duplicates and lost counters.
func formatSample() *Report {
	t0 := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	r := sampleReport()
	r.Workloads = append(r.Workloads,
		Workload{Identity: Identity{Kind: KindProcess, Exe: "/bin/b", Cgroup: "/x"}, Syscalls: map[string][]string{"aarch64": {"read", "read"}}, Unknown: map[string][]int{"aarch64": {999, 3}}},
		Workload{Identity: Identity{Kind: KindProcess, Exe: "/bin/a", Cgroup: "/x"}, Syscalls: map[string][]string{"x32": {"read"}}},
		Workload{Identity: Identity{Kind: KindContainer, ContainerID: "c1", Runtime: "runc"}},
	)
	r.End = t0.Add(time.Minute)
	r.Lost = Lost{MapFull: 1, Unattributed: 2}
	return r
}

// TestFormat: the written report is byte for byte the format kscmp/v1 has
// had since discover wrote it (testdata/format.json was written by the
// report code before it moved into this package).
func TestFormat(t *testing.T) {
	want, err := os.ReadFile("testdata/format.json")
	if err != nil {
		t.Fatal(err)
	}
	got, err := formatSample().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the format changed:\n%s\nwant:\n%s", got, want)
	}
}

func TestReadRefusesWithSentinel(t *testing.T) {
	for in, want := range map[string]string{
		`not json`: `r.json: not an observation report: invalid character 'o' in literal null (expecting 'u')`,
		`{"apiVersion":"kscmp/v1","kind":"Policy"}`: `r.json: apiVersion "kscmp/v1" kind "Policy": want kscmp/v1 ObservationReport`,
		`{"apiVersion":"kscmp/v1","kind":"ObservationReport","workloads":[{"identity":{"kind":"pod"}},{"identity":{"kind":""}}]}`:       `r.json: workloads[1].identity.kind: "": want pod, container, systemd or process`,
		`{"apiVersion":"kscmp/v1","kind":"ObservationReport","workloads":[{"identity":{"kind":"pod"},"syscalls":{"native":["read"]}}]}`: `r.json: workloads[0].syscalls: "native": unknown ABI (want x86_64, i386, x32, aarch64 or arm)`,
	} {
		_, err := Read(strings.NewReader(in), "r.json")
		if err == nil || err.Error() != want || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s:\n got %v (ErrInvalid: %v)\nwant %s", in, err, errors.Is(err, ErrInvalid), want)
		}
	}
}

// TestABINames: the report's ABI names are the syscall tables' names, which
// the recorder writes, and map one to one onto the policy architectures.
func TestABINames(t *testing.T) {
	want := map[api.Arch]string{api.ArchX86_64: "x86_64", api.ArchX86: "i386", api.ArchX32: "x32", api.ArchAARCH64: "aarch64", api.ArchARM: "arm"}
	for _, a := range api.Arches {
		name := ABIName(a)
		if name != want[a] {
			t.Errorf("ABIName(%s) = %q, want %q", a, name, want[a])
		}
		if back, ok := ArchOf(name); !ok || back != a {
			t.Errorf("ArchOf(%q) = %q %v, want %s", name, back, ok, a)
		}
	}
	for _, bad := range []string{"", "x86", "native", "compat", "mips"} {
		if a, ok := ArchOf(bad); ok {
			t.Errorf("ArchOf(%q) = %s, want unknown", bad, a)
		}
	}
	if ABIName("mips") != "" {
		t.Error("ABIName of an unknown architecture is not empty")
	}
}

func TestIdentityString(t *testing.T) {
	id64 := strings.Repeat("ab", 32)
	for _, c := range []struct {
		id   Identity
		want string
	}{
		{Identity{Kind: KindPod, Namespace: "shop", Pod: "web-1", Container: "nginx", ContainerID: id64}, "pod shop/web-1/nginx"},
		{Identity{Kind: KindPod, Namespace: "shop", Pod: "web-1"}, "pod shop/web-1"},
		{Identity{Kind: KindPod, ContainerID: id64, Runtime: "containerd"}, "container abababababab (containerd)"},
		{Identity{Kind: KindContainer, ContainerID: "demo-1"}, "container demo-1"},
		{Identity{Kind: KindSystemd, Unit: "nginx.service", Exe: "/usr/sbin/nginx"}, "unit nginx.service"},
		{Identity{Kind: KindProcess, Exe: "/bin/sh", Cgroup: "/"}, "process /bin/sh"},
		{Identity{Kind: KindProcess, Cgroup: "/x"}, "workload in cgroup /x"},
	} {
		if got := c.id.String(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.id, got, c.want)
		}
	}
}

func TestReadAll(t *testing.T) {
	dir := t.TempDir()
	data, _ := sampleReport().Marshal()
	write := func(rel string) string {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, b := write("nodes/b.json"), write("nodes/a.json")
	odd := write("odd[1]/c.json") // a directory whose name is a glob pattern
	write("nodes/notes.txt")

	srcs, err := ReadAll([]string{filepath.Join(dir, "nodes"), b, filepath.Join(dir, "nodes", "*.json"), filepath.Join(dir, "odd[[]1]")})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range srcs {
		names = append(names, s.Name)
		if len(s.Report.Workloads) != 2 {
			t.Errorf("%s: %d workloads, want 2", s.Name, len(s.Report.Workloads))
		}
	}
	if want := []string{b, a, odd}; !reflect.DeepEqual(names, want) {
		t.Errorf("read %v, want each file once, sorted: %v", names, want)
	}

	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	for _, c := range []struct{ path, msg string }{
		{filepath.Join(dir, "none-*.json"), `none-*.json": no such file`},
		{empty, `empty": no *.json reports in the directory`},
	} {
		if _, err := ReadAll([]string{c.path}); !errors.Is(err, ErrNoReports) || !strings.HasSuffix(err.Error(), c.msg) {
			t.Errorf("%s: %v, want ErrNoReports ending in %q", c.path, err, c.msg)
		}
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"apiVersion":"kscmp/v9"}`), 0o644)
	if _, err := ReadAll([]string{bad}); !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), bad+": apiVersion") {
		t.Errorf("bad report: %v", err)
	}
}

func TestWriteFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out", "r.json")
	r := formatSample()
	for i, want := range []bool{true, false} {
		changed, err := r.WriteFile(path)
		if err != nil || changed != want {
			t.Fatalf("write %d: changed %v, err %v; want changed %v", i+1, changed, err, want)
		}
	}
	got, _ := os.ReadFile(path)
	want, _ := os.ReadFile("testdata/format.json")
	if !bytes.Equal(got, want) {
		t.Errorf("written:\n%s\nwant:\n%s", got, want)
	}
	back, err := ReadFile(path)
	if err != nil || len(back.Workloads) != 5 {
		t.Errorf("read back: %v", err)
	}
}
