package api

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubearmor/kscmp/internal/fsutil"
)

const wordpressCRD = `apiVersion: security.kubearmor.com/v1
kind: KubeArmorSeccompPolicy
metadata:
  name: ksp-wordpress-block-process
  namespace: wordpress-mysql
spec:
  severity: 3
  selector:
    matchLabels:
      app: wordpress
  seccomp:
    arch: [x86_64, x86, x32]
    syscalls: [accept4, epoll_wait, pselect6, futex, madvise]
    action: Allow
`

const wordpressFlat = `kind: KubeArmorSeccompPolicy
name: ksp-wordpress-block-process
namespace: wordpress-mysql
severity: 3
app: wordpress
arch: [x86_64, x86, x32]
syscalls: [accept4, epoll_wait, pselect6, futex, madvise]
action: Allow
`

func TestParseDesignNoteExample(t *testing.T) {
	crd, err := Parse(strings.NewReader(wordpressCRD), "crd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	flat, err := Parse(strings.NewReader(wordpressFlat), "flat.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(crd) != 1 || len(flat) != 1 {
		t.Fatalf("got %d and %d documents, want 1 and 1", len(crd), len(flat))
	}
	if crd[0].Flat || !flat[0].Flat {
		t.Errorf("Flat = %v, %v; want false, true", crd[0].Flat, flat[0].Flat)
	}
	a, b := crd[0].Policy, flat[0].Policy
	if a.APIVersion != APIVersion || b.APIVersion != APIVersion {
		t.Errorf("apiVersion %q, %q", a.APIVersion, b.APIVersion)
	}
	if got, want := b.Spec.Selector.MatchLabels["app"], "wordpress"; got != want {
		t.Errorf("flat app → matchLabels.app = %q, want %q", got, want)
	}
	// The two forms are the same policy.
	if !equalPolicies(a, b) {
		t.Errorf("CRD and flat forms differ:\n%+v\n%+v", a, b)
	}
	if a.Spec.Severity != 3 || a.Spec.Seccomp.Action != ActionAllow || len(a.Spec.Seccomp.Syscalls) != 5 {
		t.Errorf("unexpected spec %+v", a.Spec)
	}
}

func equalPolicies(a, b *KubeArmorSeccompPolicy) bool {
	return a.Key() == b.Key() && a.Spec.Severity == b.Spec.Severity &&
		strings.Join(a.Spec.Seccomp.Syscalls, ",") == strings.Join(b.Spec.Seccomp.Syscalls, ",") &&
		a.Spec.Seccomp.Action == b.Spec.Seccomp.Action &&
		len(a.Spec.Seccomp.Arch) == len(b.Spec.Seccomp.Arch) &&
		len(a.Spec.Selector.MatchLabels) == len(b.Spec.Selector.MatchLabels)
}

func TestParseSeveralDocuments(t *testing.T) {
	in := wordpressCRD + "---\n# empty document follows\n---\n" + strings.Replace(wordpressFlat, "ksp-wordpress-block-process", "second", 1)
	docs, err := Parse(strings.NewReader(in), "multi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 || docs[0].Index != 1 || docs[1].Index != 3 || docs[1].Line != 18 {
		t.Fatalf("got %+v", docs)
	}
}

// TestParseBadInput is the table of bad inputs, each with its exact error.
func TestParseBadInput(t *testing.T) {
	base := func(edit func(string) string) string { return edit(wordpressCRD) }
	repl := func(old, new string) func(string) string {
		return func(s string) string {
			if !strings.Contains(s, old) {
				panic("test bug: " + old)
			}
			return strings.Replace(s, old, new, 1)
		}
	}
	tests := []struct {
		name, in string
		want     []string
	}{
		{"unknown kind", base(repl("kind: KubeArmorSeccompPolicy", "kind: KubeArmorPolicy")),
			[]string{`f.yaml:2: document 1 (wordpress-mysql/ksp-wordpress-block-process): kind: "KubeArmorPolicy": unknown kind: want KubeArmorSeccompPolicy`}},
		{"unknown version", base(repl("security.kubearmor.com/v1", "security.kubearmor.com/v2")),
			[]string{`f.yaml:1: document 1 (wordpress-mysql/ksp-wordpress-block-process): apiVersion: "security.kubearmor.com/v2": unknown group/version: want security.kubearmor.com/v1`}},
		{"missing name", base(repl("  name: ksp-wordpress-block-process\n", "")),
			[]string{`f.yaml:3: document 1 (wordpress-mysql/): metadata.name: missing`}},
		{"missing namespace", base(repl("  namespace: wordpress-mysql\n", "")),
			[]string{`f.yaml:3: document 1 (/ksp-wordpress-block-process): metadata.namespace: missing`}},
		{"path in name", base(repl("name: ksp-wordpress-block-process", "name: ../x")),
			[]string{`f.yaml:4: document 1 (wordpress-mysql/../x): metadata.name: "../x": not a valid name: a lowercase RFC 1123 subdomain`}},
		{"path in namespace", base(repl("namespace: wordpress-mysql", "namespace: a/b")),
			[]string{`f.yaml:5: document 1 (a/b/ksp-wordpress-block-process): metadata.namespace: "a/b": not a valid namespace: a lowercase RFC 1123 label`}},
		{"empty selector", base(repl("    matchLabels:\n      app: wordpress\n", "    matchLabels: {}\n")),
			[]string{`f.yaml:8: document 1 (wordpress-mysql/ksp-wordpress-block-process): spec.selector: empty: a policy must select workloads by matchLabels, matchExpressions, systemdUnits or containerNames`}},
		{"empty syscalls", base(repl("syscalls: [accept4, epoll_wait, pselect6, futex, madvise]", "syscalls: []")),
			[]string{`f.yaml:13: document 1 (wordpress-mysql/ksp-wordpress-block-process): spec.seccomp.syscalls: empty: a rule must name at least one system call`}},
		{"no rules", base(repl("    syscalls: [accept4, epoll_wait, pselect6, futex, madvise]\n    action: Allow\n", "")),
			[]string{`f.yaml:11: document 1 (wordpress-mysql/ksp-wordpress-block-process): spec.seccomp.syscalls: empty: a policy must name at least one system call`}},
		{"unknown action", base(repl("action: Allow", "action: Permit")),
			[]string{`f.yaml:14: document 1 (wordpress-mysql/ksp-wordpress-block-process): spec.seccomp.action: "Permit": unknown action (want one of Allow, Audit, Block, Deny, Kill)`}},
		{"unknown arch", base(repl("arch: [x86_64, x86, x32]", "arch: [x86_64, sparc]")),
			[]string{`f.yaml:12: document 1 (wordpress-mysql/ksp-wordpress-block-process): spec.seccomp.arch[1]: "sparc": unknown architecture (want one of x86_64, x86, x32, aarch64, arm)`}},
		{"unknown syscall", base(repl("epoll_wait,", "epol_wait,")),
			[]string{`f.yaml:13: document 1 (wordpress-mysql/ksp-wordpress-block-process): spec.seccomp.syscalls[1]: "epol_wait": unknown system call on x86_64, x86, x32`}},
		{"syscall of another family", base(repl("epoll_wait,", "open,")),
			nil}, // open exists on x86_64: valid
		{"syscall on none of the arches", base(repl("arch: [x86_64, x86, x32]", "arch: [aarch64]")),
			[]string{`f.yaml:13: document 1 (wordpress-mysql/ksp-wordpress-block-process): spec.seccomp.syscalls[1]: "epoll_wait": unknown system call on aarch64`}},
		{"two actions in one policy", base(repl("    syscalls: [accept4, epoll_wait, pselect6, futex, madvise]\n    action: Allow\n",
			"    rules:\n    - {syscalls: [read, mkdir], action: Allow}\n    - {syscalls: [mkdir], action: Deny}\n")),
			[]string{`f.yaml:15: document 1 (wordpress-mysql/ksp-wordpress-block-process): spec.seccomp.rules[1].syscalls[0]: "mkdir": system call has two actions in one policy: Deny here, Allow at spec.seccomp.rules[0].syscalls[1]`}},
		{"both forms", base(repl("    action: Allow\n", "    action: Allow\n    rules: [{syscalls: [read], action: Allow}]\n")),
			[]string{`f.yaml:15: document 1 (wordpress-mysql/ksp-wordpress-block-process): spec.seccomp.rules: give either spec.seccomp.syscalls with spec.seccomp.action, or spec.seccomp.rules, not both`}},
		{"severity out of range", base(repl("severity: 3", "severity: 11")),
			[]string{`f.yaml:7: document 1 (wordpress-mysql/ksp-wordpress-block-process): spec.severity: "11": must be between 1 and 10`}},
		{"unknown field", base(repl("  severity: 3", "  sevrity: 3")),
			[]string{`f.yaml:7: document 1 (wordpress-mysql/ksp-wordpress-block-process): spec.sevrity: unknown field`}},
		{"wrong type", base(repl("syscalls: [accept4, epoll_wait, pselect6, futex, madvise]", "syscalls: accept4")),
			[]string{`f.yaml:13: document 1 (wordpress-mysql/ksp-wordpress-block-process): spec.seccomp.syscalls: wrong type: got a string, want a list`}},
		{"flat unknown action and field", strings.Replace(wordpressFlat, "action: Allow", "action: allow\nap: x", 1),
			[]string{
				`f.yaml:8: document 1 (wordpress-mysql/ksp-wordpress-block-process): action: "allow": unknown action (want one of Allow, Audit, Block, Deny, Kill)`,
				`f.yaml:9: document 1 (wordpress-mysql/ksp-wordpress-block-process): ap: unknown field of the flat policy form`,
			}},
		{"flat without app", strings.Replace(wordpressFlat, "app: wordpress\n", "", 1),
			[]string{`f.yaml:1: document 1 (wordpress-mysql/ksp-wordpress-block-process): app: empty: a policy must select workloads by matchLabels, matchExpressions, systemdUnits or containerNames`}},
		{"complain mode", base(repl("    action: Allow\n", "    action: Allow\n    defaultAction: Audit\n")), nil},
		{"default Kill", base(repl("    action: Allow\n", "    action: Allow\n    defaultAction: Kill\n")),
			[]string{`f.yaml:15: document 1 (wordpress-mysql/ksp-wordpress-block-process): spec.seccomp.defaultAction: "Kill": not a default action (want Block or Audit; Kill is only for named system calls)`}},
		{"default without allow-list", base(repl("action: Allow\n", "action: Block\n    defaultAction: Audit\n")),
			[]string{`f.yaml:15: document 1 (wordpress-mysql/ksp-wordpress-block-process): spec.seccomp.defaultAction: "Audit": needs an allow-list: it applies to the system calls no Allow rule names, and the policy has no Allow rule`}},
		{"flat complain mode", wordpressFlat + "defaultAction: Audit\n", nil},
		{"flat bad default", wordpressFlat + "defaultAction: Allow\n",
			[]string{`f.yaml:9: document 1 (wordpress-mysql/ksp-wordpress-block-process): defaultAction: "Allow": not a default action (want Block or Audit; Kill is only for named system calls)`}},
		{"not a mapping", "- a\n- b\n",
			[]string{`f.yaml:1: document 1: a policy must be a YAML mapping`}},
		{"bad yaml", "kind: [\n",
			[]string{`f.yaml: document 1: not valid YAML: yaml: line 1: did not find expected node content`}},
		{"host selector", base(repl("    matchLabels:\n      app: wordpress\n", "    systemdUnits: [nginx.service, redis]\n    containerNames: [web-1]\n")), nil},
		{"pods and host in one selector", base(repl("      app: wordpress\n", "      app: wordpress\n    systemdUnits: [nginx.service]\n")),
			[]string{`f.yaml:8: document 1 (wordpress-mysql/ksp-wordpress-block-process): spec.selector: selects pods (matchLabels, matchExpressions) and host workloads (systemdUnits, containerNames): use two policies`}},
		{"bad unit and container names", base(repl("    matchLabels:\n      app: wordpress\n", "    systemdUnits: [../etc/passwd]\n    containerNames: [-x]\n")),
			[]string{
				`f.yaml:9: document 1 (wordpress-mysql/ksp-wordpress-block-process): spec.selector.systemdUnits[0]: "../etc/passwd": not a valid systemd unit name`,
				`f.yaml:10: document 1 (wordpress-mysql/ksp-wordpress-block-process): spec.selector.containerNames[0]: "-x": not a valid container name`,
			}},
		{"label selector expression", base(repl("    matchLabels:\n      app: wordpress\n",
			"    matchExpressions:\n    - {key: app, operator: Within, values: [a]}\n")),
			[]string{`f.yaml:10: document 1 (wordpress-mysql/ksp-wordpress-block-process): spec.selector.matchExpressions[0].operator: "Within": unknown operator (want In, NotIn, Exists or DoesNotExist)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := Parse(strings.NewReader(tt.in), "f.yaml")
			if tt.want == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if len(docs) != 0 {
				t.Errorf("a bad document must be refused whole, got %d documents", len(docs))
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error %v is not an ErrorList", err)
			}
			if len(list) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(list), len(tt.want), err)
			}
			for i, w := range tt.want {
				if got := list[i].Error(); !strings.HasPrefix(got, w) {
					t.Errorf("error %d:\n got %s\nwant %s", i, got, w)
				}
			}
		})
	}
}

func TestLoadReportsEverythingAndDuplicates(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", wordpressCRD)
	write("sub/b.yml", wordpressFlat) // the same name again
	write("sub/c.yaml", strings.Replace(wordpressFlat, "action: Allow", "action: Nope", 1))
	write("notes.txt", "ignored")
	write(".hidden/x.yaml", "ignored: [")
	docs, err := Load(dir)
	if len(docs) != 1 || docs[0].File != filepath.Join(dir, "a.yaml") {
		t.Fatalf("got %d documents: %+v", len(docs), docs)
	}
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 2 {
		t.Fatalf("want 2 errors, got %v", err)
	}
	if !strings.Contains(list[0].Error(), `action: "Nope"`) {
		t.Errorf("first error %q", list[0])
	}
	if want := "b.yml:1: document 1 (wordpress-mysql/ksp-wordpress-block-process): name: \"ksp-wordpress-block-process\": policy defined twice: first in " + filepath.Join(dir, "a.yaml") + " document 1"; !strings.HasSuffix(list[1].Error(), want) {
		t.Errorf("duplicate error %q lacks %q", list[1], want)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "no such file") || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	// A directory without policy files says so, as a sentinel a caller
	// checks (recommend takes an empty --existing directory as no policies).
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	if _, err := Load(empty); !errors.Is(err, ErrNoPolicyFiles) || err.Error() != empty+": no *.yaml, *.yml or *.json files in directory" {
		t.Errorf("empty directory: %v", err)
	}
	if _, err := Load(dir); errors.Is(err, ErrNoPolicyFiles) {
		t.Errorf("a directory with policies is reported empty: %v", err)
	}
}

func TestActionAndArchTables(t *testing.T) {
	for _, a := range Actions {
		back, ok := ActionFromSeccomp(a.SeccompAction())
		if !ok || back != a {
			t.Errorf("%s round trip: %s %v", a, back, ok)
		}
	}
	if ActionDeny.Canonical() != ActionBlock || ActionDeny.SeccompAction() != "SCMP_ACT_ERRNO" {
		t.Error("Deny is not Block's synonym")
	}
	if !(ActionKill.Precedence() > ActionBlock.Precedence() && ActionBlock.Precedence() > ActionAudit.Precedence() && ActionAudit.Precedence() > ActionAllow.Precedence()) {
		t.Error("precedence is not Kill > Block > Audit > Allow")
	}
	for _, a := range Arches {
		if a.Table() == nil || len(a.Table().SyscallNames) < 200 {
			t.Errorf("%s: no syscall table", a)
		}
		if back, ok := ArchFromOCI(a.OCI()); !ok || back != a {
			t.Errorf("%s OCI round trip", a)
		}
	}
	// Names come from the tables: open exists on x86_64 but not aarch64.
	if !SyscallKnown("open", []Arch{ArchX86_64}) || SyscallKnown("open", []Arch{ArchAARCH64}) {
		t.Error("open: wrong table lookup")
	}
}

// TestLoadRefusesSpecialAndLarge: Load reads through the one input reader:
// a file that is not regular, or over the limit, is a problem of that file
// (wrapping the reader's error), and the other files still load.
func TestLoadRefusesSpecialAndLarge(t *testing.T) {
	dir := t.TempDir()
	good := "kind: KubeArmorSeccompPolicy\nname: a\nnamespace: b\napp: x\nsyscalls: [read]\naction: Allow\n"
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(good), 0o644)
	os.WriteFile(filepath.Join(dir, "big.yaml"), []byte(strings.Replace(good, "name: a", "name: big", 1)+strings.Repeat("#\n", 100)), 0o644)
	os.Symlink("/dev/null", filepath.Join(dir, "null.yaml"))
	docs, err := LoadLimit(int64(len(good)+10), dir)
	if len(docs) != 1 || docs[0].Policy.Key() != "b/a" {
		t.Errorf("docs %v", docs)
	}
	if !errors.Is(err, fsutil.ErrTooLarge) || !errors.Is(err, fsutil.ErrNotRegular) {
		t.Errorf("err %v", err)
	}
	if !strings.Contains(err.Error(), filepath.Join(dir, "null.yaml")+" is a character device") {
		t.Errorf("the device is not named: %v", err)
	}
}
