package recommend

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/internal/testenv"
	"github.com/kubearmor/kscmp/merge"
)

var t0 = time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)

func pod(ns, name, container string, labels map[string]string, owner *report.Owner, calls ...string) report.Workload {
	return report.Workload{
		Identity: report.Identity{Kind: report.KindPod, Namespace: ns, Pod: name, Container: container, Labels: labels, Owner: owner},
		Syscalls: map[string][]string{"x86_64": calls},
	}
}

func reportOf(node string, ws ...report.Workload) report.Source {
	return report.Source{Name: node + ".json", Report: &report.Report{APIVersion: report.APIVersion, Kind: report.Kind,
		Node: node, Start: t0, End: t0.Add(10 * time.Minute), Workloads: ws}}
}

func paths(r *Result) []string {
	var out []string
	for _, f := range r.Files {
		out = append(out, f.Path)
	}
	return out
}

func fileAt(t *testing.T, r *Result, path string) File {
	t.Helper()
	for _, f := range r.Files {
		if f.Path == path {
			return f
		}
	}
	t.Fatalf("no %s in %v", path, paths(r))
	return File{}
}

func TestGroupingAndUnion(t *testing.T) {
	deploy := &report.Owner{Kind: "Deployment", Name: "web"}
	webLabels := func(hash string) map[string]string {
		return map[string]string{"app": "web", "pod-template-hash": hash}
	}
	ownerOnly := map[string]string{"tier": "db", "pod-template-hash": "x1", "team": "a"}
	ownerOnly2 := map[string]string{"tier": "db", "pod-template-hash": "x2", "team": "b"}
	sources := []report.Source{
		reportOf("node-a",
			pod("shop", "web-1", "nginx", webLabels("h1"), deploy, "read", "write", "accept4"),
			pod("shop", "db-1", "pg", ownerOnly, &report.Owner{Kind: "StatefulSet", Name: "db"}, "read", "fsync"),
			pod("shop", "multi-1", "app", map[string]string{"app.kubernetes.io/name": "multi", "app": "ignored"}, nil, "read", "open"),
			pod("shop", "multi-1", "sidecar", map[string]string{"app.kubernetes.io/name": "multi", "app": "ignored"}, nil, "read", "nanosleep"),
			report.Workload{Identity: report.Identity{Kind: report.KindSystemd, Unit: "nginx.service"}, Syscalls: map[string][]string{"x86_64": {"epoll_wait"}}},
			report.Workload{Identity: report.Identity{Kind: report.KindProcess, Exe: "/bin/sh"}, Syscalls: map[string][]string{"x86_64": {"read"}}},
		),
		reportOf("node-b",
			pod("shop", "web-2", "nginx", webLabels("h2"), deploy, "read", "sendfile"),
			pod("shop", "db-2", "pg", ownerOnly2, &report.Owner{Kind: "StatefulSet", Name: "db"}, "pwrite64"),
		),
	}
	res, err := Recommend(sources, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"_host/nginx.yaml", "shop/db.yaml", "shop/multi-app.yaml", "shop/multi-sidecar.yaml", "shop/web.yaml"}
	if !slices.Equal(paths(res), want) {
		t.Fatalf("files %v, want %v", paths(res), want)
	}
	web := fileAt(t, res, "shop/web.yaml").Policy
	if got := strings.Join(web.Spec.Seccomp.Syscalls, ","); got != "accept4,read,sendfile,write" {
		t.Errorf("union over replicas and nodes: %s", got)
	}
	if !sameLabels(web.Spec.Selector.MatchLabels, map[string]string{"app": "web"}) {
		t.Errorf("web selector %v: never pod-template-hash", web.Spec.Selector.MatchLabels)
	}
	db := fileAt(t, res, "shop/db.yaml").Policy
	if !sameLabels(db.Spec.Selector.MatchLabels, map[string]string{"tier": "db"}) {
		t.Errorf("owner-grouped selector %v: want the labels common to its pods", db.Spec.Selector.MatchLabels)
	}
	app := fileAt(t, res, "shop/multi-app.yaml").Policy
	if !slices.Equal(app.Spec.Containers, []string{"app"}) || !sameLabels(app.Spec.Selector.MatchLabels, map[string]string{"app.kubernetes.io/name": "multi"}) {
		t.Errorf("multi-container pod: %+v", app.Spec)
	}
	host := fileAt(t, res, "_host/nginx.yaml").Policy
	if !slices.Equal(host.Spec.Selector.SystemdUnits, []string{"nginx.service"}) || host.Namespace != DefaultHostNamespace {
		t.Errorf("host policy: %+v", host)
	}
	if len(res.Skipped) != 1 || !strings.Contains(res.Skipped[0], "process /bin/sh") {
		t.Errorf("skipped: %v", res.Skipped)
	}
	// Every file parses back, valid, to the policy it was made from.
	for _, f := range res.Files {
		docs, err := api.Parse(bytes.NewReader(f.Data), f.Path)
		if err != nil || len(docs) != 1 || docs[0].Policy.Key() != f.Policy.Key() {
			t.Errorf("%s does not parse back: %v\n%s", f.Path, err, f.Data)
		}
	}
	// And merges: the host policy selects its unit.
	rs, err := merge.Merge([]*api.KubeArmorSeccompPolicy{host, web}, merge.Target{Unit: "nginx"})
	if err != nil || !slices.Equal(rs.Policies, []string{host.Key()}) {
		t.Errorf("merge of the host policy: %v %+v", err, rs)
	}
}

func sameLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestDeterministic(t *testing.T) {
	mk := func() []report.Source {
		return []report.Source{
			reportOf("b", pod("ns", "p2", "c", map[string]string{"app": "x"}, nil, "write", "read")),
			reportOf("a", pod("ns", "p1", "c", map[string]string{"app": "x"}, nil, "read", "open"),
				pod("ns", "q1", "c", map[string]string{"app": "y"}, nil, "stat")),
		}
	}
	a, err := Recommend(mk(), Options{Portable: true})
	if err != nil {
		t.Fatal(err)
	}
	rev := mk()
	slices.Reverse(rev)
	b, err := Recommend(rev, Options{Portable: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Files) != len(b.Files) || !bytes.Equal(a.Summary, b.Summary) {
		t.Fatal("summary depends on the order of the reports")
	}
	for i := range a.Files {
		if a.Files[i].Path != b.Files[i].Path || !bytes.Equal(a.Files[i].Data, b.Files[i].Data) {
			t.Fatalf("%s depends on the order of the reports", a.Files[i].Path)
		}
	}
}

func TestPortability(t *testing.T) {
	res, err := Recommend([]report.Source{reportOf("a", pod("ns", "p", "c", map[string]string{"app": "x"}, nil,
		"open", "stat", "pipe", "epoll_wait", "fork", "read", "arch_prctl"))}, Options{Portable: true})
	if err != nil {
		t.Fatal(err)
	}
	f := res.Files[0]
	if !slices.Equal(f.Policy.Spec.Seccomp.Arch, []api.Arch{api.ArchX86_64, api.ArchAARCH64}) {
		t.Errorf("arch %v", f.Policy.Spec.Seccomp.Arch)
	}
	var got []string
	for _, e := range f.Portable {
		got = append(got, e.Name+"<"+e.For)
	}
	want := []string{"clone<fork", "epoll_pwait<epoll_wait", "newfstatat<stat", "openat<open", "pipe2<pipe"}
	if !slices.Equal(got, want) {
		t.Errorf("portable additions %v, want %v", got, want)
	}
	if !strings.Contains(string(f.Data), "openat (aarch64, for open)") {
		t.Errorf("additions not shown in the file:\n%s", f.Data)
	}
	// Without --portable, only what was observed.
	res, _ = Recommend([]report.Source{reportOf("a", pod("ns", "p", "c", map[string]string{"app": "x"}, nil, "open"))}, Options{})
	if p := res.Files[0].Policy; !slices.Equal(p.Spec.Seccomp.Syscalls, []string{"open"}) || !slices.Equal(p.Spec.Seccomp.Arch, []api.Arch{api.ArchX86_64}) {
		t.Errorf("not portable: %+v", p.Spec.Seccomp)
	}
}

// TestPortabilityTable checks the table against the syscall tables: every
// rename names a call the other family has, and every x86_64 call that
// aarch64 lacks is either renamed or known to have no equivalent.
func TestPortabilityTable(t *testing.T) {
	x86, arm := api.ArchX86_64.Table(), api.ArchAARCH64.Table()
	for from, tos := range renames {
		for _, to := range tos {
			onX86, onArm := api.ArchX86_64.Has(to), api.ArchAARCH64.Has(to)
			if !onX86 && !onArm {
				t.Errorf("rename %s → %s: %s exists on neither family", from, to, to)
			}
		}
	}
	var all []string
	for n := range x86.SyscallNames {
		all = append(all, n)
	}
	slices.Sort(all)
	eq, none := Equivalents(api.ArchX86_64, api.ArchAARCH64, all)
	for _, e := range eq {
		if !api.ArchAARCH64.Has(e.Name) {
			t.Errorf("%s for %s is not an aarch64 call", e.Name, e.For)
		}
	}
	// What stays without equivalent is x86-specific or obsolete.
	allowedNone := map[string]bool{"arch_prctl": true, "iopl": true, "ioperm": true, "modify_ldt": true,
		"uselib": true, "sysfs": true, "_sysctl": true, "create_module": true, "get_kernel_syms": true,
		"query_module": true, "nfsservctl": true, "getpmsg": true, "putpmsg": true, "afs_syscall": true,
		"tuxcall": true, "security": true, "vserver": true, "set_thread_area": true, "get_thread_area": true,
		"epoll_ctl_old": true, "epoll_wait_old": true, "map_shadow_stack": true, "uretprobe": true, "uprobe": true,
		"kexec_file_load": true, "lookup_dcookie": true}
	for _, n := range none {
		if !allowedNone[n] {
			t.Errorf("x86_64 %s has no aarch64 equivalent: add it to the rename table or to the known exceptions", n)
		}
	}
	// aarch64 → x86_64: every aarch64 call exists on x86_64 or is renamed.
	var armAll []string
	for n := range arm.SyscallNames {
		armAll = append(armAll, n)
	}
	_, armNone := Equivalents(api.ArchAARCH64, api.ArchX86_64, armAll)
	// The table lists 32-bit-only *time64 calls under aarch64 too; no
	// 64-bit program makes them.
	for _, n := range armNone {
		if !strings.HasSuffix(n, "time64") && n != "arch_specific_syscall" {
			t.Errorf("aarch64 %s has no x86_64 equivalent", n)
		}
	}
}

func TestExistingAndPrune(t *testing.T) {
	first, err := Recommend([]report.Source{reportOf("a", pod("ns", "p", "c", map[string]string{"app": "x"}, nil, "read", "write", "open"))}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	old := first.Files[0].Policy
	// A reviewer added a Block rule.
	old.Spec.Seccomp.Rules = []api.Rule{{Syscalls: old.Spec.Seccomp.Syscalls, Action: api.ActionAllow}, {Syscalls: []string{"mkdir"}, Action: api.ActionBlock}}
	old.Spec.Seccomp.Syscalls, old.Spec.Seccomp.Action = nil, ""
	existing := []api.Document{{Policy: old}}
	again := []report.Source{reportOf("b", pod("ns", "p", "c", map[string]string{"app": "x"}, nil, "read", "close", "mkdir"))}

	res, err := Recommend(again, Options{Existing: existing})
	if err != nil {
		t.Fatal(err)
	}
	f := res.Files[0]
	if f.New || !slices.Equal(f.Added, []string{"close"}) || len(f.Removed) != 0 || !slices.Equal(f.Kept, []string{"open", "write"}) {
		t.Errorf("union: added %v removed %v kept %v", f.Added, f.Removed, f.Kept)
	}
	rules := f.Policy.Spec.Seccomp.Rules
	if len(rules) != 2 || strings.Join(rules[0].Syscalls, ",") != "close,open,read,write" || rules[1].Action != api.ActionBlock {
		t.Errorf("rules %+v: the reviewed Block rule must stay and win over the observed mkdir", rules)
	}
	if !strings.Contains(string(res.Summary), "**Widened**: 1 calls added to the reviewed policy: `close`") ||
		!strings.Contains(string(res.Summary), "kept from the reviewed policy (use --prune to drop): `open`, `write`") {
		t.Errorf("summary:\n%s", res.Summary)
	}

	res, err = Recommend(again, Options{Existing: existing, Prune: true})
	if err != nil {
		t.Fatal(err)
	}
	f = res.Files[0]
	if !slices.Equal(f.Removed, []string{"open", "write"}) || strings.Join(f.Policy.Spec.Seccomp.Rules[0].Syscalls, ",") != "close,read" {
		t.Errorf("prune: removed %v, rules %+v", f.Removed, f.Policy.Spec.Seccomp.Rules)
	}
	if !strings.Contains(string(res.Summary), "**Narrowed** (--prune): 2 calls removed") {
		t.Errorf("summary:\n%s", res.Summary)
	}
}

func TestSummaryRiskyAndShare(t *testing.T) {
	res, err := Recommend([]report.Source{reportOf("a", pod("ns", "p", "c", map[string]string{"app": "x"}, nil, "read", "ptrace", "bpf", "io_uring_setup"))}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := string(res.Summary)
	for _, want := range []string{"| pods ns/x | `ns/x.yaml` | 4 | 1% | new | 3 |", "`ptrace`: reads and writes other processes' memory", "`bpf`: loads eBPF programs", "`io_uring_setup`: io_uring"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
}

func TestWriteAndGit(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		testenv.Missing(t, "git (apt-get install git)")
	}
	res, err := Recommend([]report.Source{reportOf("a", pod("ns", "p", "c", map[string]string{"app": "x"}, nil, "read"))}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if n, err := res.Write(dir); err != nil || n != 1 {
		t.Fatalf("write: %d %v", n, err)
	}
	if n, _ := res.Write(dir); n != 0 {
		t.Errorf("rewrite of the same content changed %d files", n)
	}

	repo := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", repo}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(repo, "README"), []byte("x\n"), 0o644)
	git("add", ".")
	git("commit", "-q", "-m", "init")
	t.Setenv("GIT_AUTHOR_NAME", "t")
	t.Setenv("GIT_AUTHOR_EMAIL", "t@example.com")
	t.Setenv("GIT_COMMITTER_NAME", "t")
	t.Setenv("GIT_COMMITTER_EMAIL", "t@example.com")
	// The user's unrelated work, staged and not, stays out of the commit
	// and in place.
	os.WriteFile(filepath.Join(repo, "README"), []byte("edited\n"), 0o644)
	os.WriteFile(filepath.Join(repo, "staged"), []byte("s\n"), 0o644)
	git("add", "staged")
	id, err := res.Commit(context.Background(), repo, "seccomp", "kscmp/recommend")
	if err != nil || id == "" {
		t.Fatalf("commit: %q %v", id, err)
	}
	if b := git("rev-parse", "--abbrev-ref", "HEAD"); b != "kscmp/recommend" {
		t.Errorf("branch %s", b)
	}
	if msg := git("log", "-1", "--format=%B"); !strings.Contains(msg, "# kscmp: recommended seccomp policies") {
		t.Errorf("commit message is not the summary: %s", msg)
	}
	if files := git("show", "--name-only", "--format="); files != "seccomp/ns/x.yaml" {
		t.Errorf("committed %q", files)
	}
	if b, _ := os.ReadFile(filepath.Join(repo, "README")); string(b) != "edited\n" {
		t.Errorf("the user's change was lost: %q", b)
	}
	if st := git("status", "--porcelain"); !strings.Contains(st, "A  staged") || !strings.Contains(st, "M README") {
		t.Errorf("the user's work tree changed: %q", st)
	}
	// The branch exists now: a second run refuses, and changes nothing.
	if _, err := res.Commit(context.Background(), repo, "seccomp", "kscmp/recommend"); err == nil {
		t.Error("an existing branch was reused")
	}
}

// TestComplain checks --complain: a new policy gets defaultAction Audit,
// its file and the summary say so (a header note and a line for the
// policy); a reviewed policy keeps its default, Block or Audit, whatever
// the flag says.
func TestComplain(t *testing.T) {
	src := []report.Source{reportOf("a",
		pod("ns", "p", "c", map[string]string{"app": "x"}, nil, "read", "write"),
		pod("ns", "q", "c", map[string]string{"app": "y"}, nil, "read"))}
	res, err := Recommend(src, Options{Complain: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Files {
		if !f.Complain || f.Policy.Spec.Seccomp.DefaultAction != api.ActionAudit || !bytes.Contains(f.Data, []byte("defaultAction: Audit")) ||
			!bytes.Contains(f.Data, []byte("# Complain mode (defaultAction: Audit)")) {
			t.Errorf("%s: new policy not in complain mode:\n%s", f.Path, f.Data)
		}
	}
	s := string(res.Summary)
	for _, want := range []string{"**Complain mode**: 2 of 2 policies (`ns/x.yaml`, `ns/y.yaml`) have defaultAction: Audit",
		"- **Complain mode** (defaultAction: Audit): calls this policy does not allow run and are logged, not refused."} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}

	// Reviewed: x stays in complain mode without the flag; y, switched to
	// Block by its reviewer, is not switched back by the flag.
	x, y := fileAt(t, res, "ns/x.yaml").Policy, fileAt(t, res, "ns/y.yaml").Policy
	y.Spec.Seccomp.DefaultAction = ""
	existing := []api.Document{{Policy: x}, {Policy: y}}
	for _, complain := range []bool{false, true} {
		res, err := Recommend(src, Options{Existing: existing, Complain: complain})
		if err != nil {
			t.Fatal(err)
		}
		if f := fileAt(t, res, "ns/x.yaml"); !f.Complain || f.Policy.Spec.Seccomp.DefaultAction != api.ActionAudit {
			t.Errorf("complain=%v: the reviewed complain policy lost its default: %q", complain, f.Policy.Spec.Seccomp.DefaultAction)
		}
		f := fileAt(t, res, "ns/y.yaml")
		if f.Complain || f.Policy.Spec.Seccomp.DefaultAction != "" || f.NotSwitched != complain {
			t.Errorf("complain=%v: the reviewed Block policy was switched: %q (not switched: %v)", complain, f.Policy.Spec.Seccomp.DefaultAction, f.NotSwitched)
		}
		if note := "Not switched to complain mode"; strings.Contains(string(res.Summary), note) != complain {
			t.Errorf("complain=%v: summary and %q:\n%s", complain, note, res.Summary)
		}
	}
}
