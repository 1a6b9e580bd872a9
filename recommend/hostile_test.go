package recommend

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/api/report"
)

// evil is a policy hidden in text that a report carries: written as it is
// into a comment, it ends the comment and becomes a second policy that
// allows ptrace, bpf and mount.
const evil = "r.json\n---\n{kind: KubeArmorSeccompPolicy, name: evil, namespace: shop, app: web, syscalls: [ptrace, bpf, mount], action: Allow}\n---\n#.json"

// checkFiles holds the invariants every recommendation keeps, whatever the
// reports said: each file is exactly one valid policy, the one File.Policy
// says; every comment line of a file and every line of the summary is
// printable text (no control character, nothing that breaks a line); the
// summary's risky lists are the risky calls the files allow.
func checkFiles(t *testing.T, res *Result) {
	t.Helper()
	var riskyLines []string
	for _, f := range res.Files {
		docs, err := api.Parse(bytes.NewReader(f.Data), f.Path)
		if err != nil || len(docs) != 1 {
			t.Fatalf("%s: %d policies, %v; want exactly one:\n%s", f.Path, len(docs), err, f.Data)
		}
		if docs[0].Policy.Key() != f.Policy.Key() {
			t.Errorf("%s is policy %s, File.Policy %s", f.Path, docs[0].Policy.Key(), f.Policy.Key())
		}
		for _, line := range strings.Split(strings.TrimSuffix(string(f.Data), "\n"), "\n") {
			if strings.HasPrefix(line, "#") && !printable(line) {
				t.Errorf("%s: a comment line that is not printable text: %q", f.Path, line)
			}
		}
		for _, r := range riskyIn(docs[0].Policy) {
			riskyLines = append(riskyLines, "  - `"+r+"`: ")
		}
	}
	var got []string
	for _, line := range strings.Split(string(res.Summary), "\n") {
		if strings.HasPrefix(line, "  - `") {
			got = append(got, line[:strings.Index(line, ": ")+2])
		}
		if !printable(line) {
			t.Errorf("summary: a line that is not printable text: %q", line)
		}
	}
	if !slices.Equal(got, riskyLines) {
		t.Errorf("summary's risky calls %q, the files' %q\n%s", got, riskyLines, res.Summary)
	}
}

// printable reports whether s is valid UTF-8 of printable runes only.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// checkNoEvil fails when text from a hostile report shows outside a
// comment of a file, or at the start of a summary line.
func checkNoEvil(t *testing.T, res *Result) {
	t.Helper()
	for _, f := range res.Files {
		for _, line := range strings.Split(strings.TrimSuffix(string(f.Data), "\n"), "\n") {
			if !strings.HasPrefix(line, "#") && (strings.Contains(line, "evil") || strings.HasPrefix(line, "---") || strings.HasPrefix(line, "{")) {
				t.Errorf("%s: input outside a comment: %q\n%s", f.Path, line, f.Data)
			}
		}
	}
	for _, line := range strings.Split(string(res.Summary), "\n") {
		if strings.HasPrefix(line, "---") || strings.HasPrefix(line, "{") || strings.HasPrefix(line, "#.json") {
			t.Errorf("summary: a line from the input: %q", line)
		}
	}
}

// TestHostileText: text in a report — its file name, node, an owner's kind
// and name, a runtime — that would end a YAML comment or a Markdown line is
// escaped: every file is one policy, the hidden one is nowhere, and the
// summary's risky calls are those the files allow (ptrace in one of them).
func TestHostileText(t *testing.T) {
	hostile := []string{evil, "n1\nx: y", "a\rkind: x", "a\u2028b", "| cell | `code` |", "\x1b[31mred"}
	for _, h := range hostile {
		src := reportOf("node", pod("shop", "web-1", "nginx", map[string]string{"app": "web"}, &report.Owner{Kind: h, Name: h}, "read", "write"),
			report.Workload{Identity: report.Identity{Kind: report.KindContainer, ContainerID: "dbg", Runtime: h}, Syscalls: map[string][]string{"x86_64": {"read", "ptrace"}}})
		src.Name, src.Report.Node = h, h
		res, err := Recommend([]report.Source{src}, Options{Portable: true})
		if err != nil {
			t.Fatalf("%q: %v", h, err)
		}
		if len(res.Files) != 2 {
			t.Fatalf("%q: files %v", h, paths(res))
		}
		checkFiles(t, res)
		checkNoEvil(t, res)
	}
}

// TestParseBack: bytes that are not exactly the policy they were made for
// are an internal error, never written.
func TestParseBack(t *testing.T) {
	res, err := Recommend([]report.Source{reportOf("a", pod("ns", "p", "c", map[string]string{"app": "x"}, nil, "read"))}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := res.Files[0]
	if _, err := parseBack(f.Path, f.Data, f.Policy); err != nil {
		t.Fatalf("the real file: %v", err)
	}
	hidden := append(append([]byte{}, f.Data...), "---\n{kind: KubeArmorSeccompPolicy, name: evil, namespace: ns, app: x, syscalls: [ptrace], action: Allow}\n"...)
	other := bytes.Replace(f.Data, []byte("- read"), []byte("- ptrace"), 1)
	broken := append(append([]byte{}, f.Data...), "x: y\n"...)
	for name, data := range map[string][]byte{"a second policy": hidden, "another allow-list": other, "not a policy": broken} {
		if _, err := parseBack(f.Path, data, f.Policy); err == nil || !strings.Contains(err.Error(), "internal error") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
