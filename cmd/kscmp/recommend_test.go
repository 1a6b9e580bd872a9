package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sampleReport = `{"apiVersion":"kscmp/v1","kind":"ObservationReport","node":"n1","kernel":"6.18","arch":"x86_64",
"start":"2026-11-27T08:00:00Z","end":"2026-11-27T08:10:00Z",
"workloads":[{"identity":{"kind":"pod","namespace":"shop","pod":"web-1","container":"nginx","labels":{"app":"web","pod-template-hash":"h"}},
"syscalls":{"x86_64":["accept4","read","write","open"]},"firstSeen":"2026-11-27T08:00:01Z","lastSeen":"2026-11-27T08:05:00Z"}],
"lost":{"mapFull":0,"ringBufFull":0,"outOfRange":0,"unattributed":0}}`

func TestRecommendCLI(t *testing.T) {
	dir := t.TempDir()
	reports := filepath.Join(dir, "reports")
	os.MkdirAll(reports, 0o755)
	os.WriteFile(filepath.Join(reports, "n1.json"), []byte(sampleReport), 0o644)
	out := filepath.Join(dir, "policies")
	summary := filepath.Join(dir, "pr.md")

	code, _, errs := runCLI(t, "recommend", "--from", filepath.Join(reports, "*.json"), "-o", out, "--summary", summary)
	if code != 0 || !strings.Contains(errs, "1 policies in "+out+" (1 changed)") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	policy, err := os.ReadFile(filepath.Join(out, "shop", "web.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# Observed: " + filepath.Join(reports, "n1.json") + " on n1, 2026-11-27T08:00:00Z to 2026-11-27T08:10:00Z", "app: web", "- openat", "- aarch64"} {
		if !strings.Contains(string(policy), want) {
			t.Errorf("policy lacks %q:\n%s", want, policy)
		}
	}
	if strings.Contains(string(policy), "pod-template-hash") {
		t.Error("pod-template-hash in the selector")
	}
	// What recommend writes, validate and merge read.
	if code, _, errs := runCLI(t, "validate", out); code != 0 {
		t.Fatalf("validate: %s", errs)
	}
	if code, prof, errs := runCLI(t, "merge", "-f", out, "-n", "shop", "-l", "app=web,pod-template-hash=x"); code != 0 || !strings.Contains(prof, `"accept4"`) {
		t.Fatalf("merge: %d %s", code, errs)
	}
	// A re-run on the same input changes nothing.
	code, _, errs = runCLI(t, "recommend", "--from", reports, "-o", out, "--summary", summary)
	if code != 0 || !strings.Contains(errs, "(0 changed)") {
		t.Errorf("re-run: exit %d: %s", code, errs)
	}
	// A bad report is refused with its name, and nothing is written.
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"apiVersion":"kscmp/v9"}`), 0o644)
	code, _, errs = runCLI(t, "recommend", "--from", bad, "-o", filepath.Join(dir, "other"))
	if code != exitInvalid || !strings.Contains(errs, bad+": apiVersion \"kscmp/v9\"") {
		t.Errorf("bad report: exit %d: %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "other")); err == nil {
		t.Error("output written despite a bad report")
	}
	if code, _, _ := runCLI(t, "recommend", "--from", filepath.Join(dir, "none-*.json"), "-o", out); code != exitInvalid {
		t.Errorf("no report matched: exit %d", code)
	}
}

// TestRecommendComplain: --complain writes new policies in complain mode,
// the summary says so, and the merged profile logs instead of refusing.
func TestRecommendComplain(t *testing.T) {
	dir := t.TempDir()
	rep := filepath.Join(dir, "n1.json")
	os.WriteFile(rep, []byte(sampleReport), 0o644)
	out, summary := filepath.Join(dir, "policies"), filepath.Join(dir, "pr.md")
	if code, _, errs := runCLI(t, "recommend", "--complain", "--from", rep, "-o", out, "--summary", summary); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	policy, _ := os.ReadFile(filepath.Join(out, "shop", "web.yaml"))
	pr, _ := os.ReadFile(summary)
	if !strings.Contains(string(policy), "defaultAction: Audit") || !strings.Contains(string(pr), "**Complain mode**: 1 of 1 policies") {
		t.Fatalf("not in complain mode:\n%s\n%s", policy, pr)
	}
	if code, prof, errs := runCLI(t, "merge", "-f", out, "-n", "shop", "-l", "app=web"); code != 0 || !strings.Contains(prof, `"defaultAction": "SCMP_ACT_LOG"`) {
		t.Fatalf("merge: %d %s\n%s", code, errs, prof)
	}
}

// TestRecommendHostileReportName: a report whose file name hides a policy
// (#12 item 1). Before the fix the name was copied into a comment, ended it,
// and validate, merge and apply then saw a second policy shop/evil allowing
// ptrace, bpf and mount, while the summary said no risky call was allowed.
func TestRecommendHostileReportName(t *testing.T) {
	dir := t.TempDir()
	reports := filepath.Join(dir, "reports")
	os.MkdirAll(reports, 0o755)
	name := "r.json\n---\n{kind: KubeArmorSeccompPolicy, name: evil, namespace: shop, app: web, syscalls: [ptrace, bpf, mount], action: Allow}\n---\n#.json"
	hostileNode := strings.Replace(sampleReport, `"node":"n1"`, `"node":"n1\nx: y"`, 1)
	if err := os.WriteFile(filepath.Join(reports, name), []byte(hostileNode), 0o644); err != nil {
		t.Fatal(err)
	}
	out, summary := filepath.Join(dir, "out"), filepath.Join(dir, "S.md")
	if code, _, errs := runCLI(t, "recommend", "--from", reports+"/", "-o", out, "--summary", summary); code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	code, list, errs := runCLI(t, "validate", out)
	if code != exitOK || strings.TrimSpace(list) != "valid: shop/web ("+filepath.Join(out, "shop", "web.yaml")+" document 1)" {
		t.Errorf("validate: exit %d, want exactly shop/web:\n%s%s", code, list, errs)
	}
	if _, explain, _ := runCLI(t, "merge", "-f", out, "-n", "shop", "-l", "app=web", "--explain"); strings.Contains(explain, "ptrace") || strings.Contains(explain, "evil") {
		t.Errorf("merge --explain shows the hidden policy:\n%s", explain)
	}
	s, err := os.ReadFile(summary)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(s), "\n") {
		if strings.HasPrefix(line, "---") || strings.HasPrefix(line, "{kind") || strings.HasPrefix(line, "x: y") {
			t.Errorf("summary line from the input: %q\n%s", line, s)
		}
	}
}

// TestRecommendOddWorkload: a container id that is valid but not a policy
// name (web..1) gets a policy of its own, one that no policy can select is
// reported and skipped, and the rest are written with exit 0 (#12 item 8;
// before, web..1 made the run exit 2 and nothing was written).
func TestRecommendOddWorkload(t *testing.T) {
	dir := t.TempDir()
	rep := filepath.Join(dir, "r.json")
	odd := strings.Replace(sampleReport, `"workloads":[`, `"workloads":[{"identity":{"kind":"container","containerID":"web..1"},"syscalls":{"x86_64":["read"]}},
{"identity":{"kind":"container","containerID":"x/../y"},"syscalls":{"x86_64":["read"]}},`, 1)
	os.WriteFile(rep, []byte(odd), 0o644)
	out := filepath.Join(dir, "out")
	code, summary, errs := runCLI(t, "recommend", "--from", rep, "-o", out)
	if code != exitOK || !strings.Contains(errs, "kscmp: 2 policies in "+out) || !strings.Contains(errs, "kscmp: not recommended: host container x/../y: no valid policy can select it: ") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(summary, "## Not recommended\n\n- host container x/../y: ") {
		t.Errorf("summary:\n%s", summary)
	}
	if code, list, errs := runCLI(t, "validate", out); code != exitOK || strings.Count(list, "valid: ") != 2 || !strings.Contains(list, "valid: kscmp-host/web.1-") {
		t.Errorf("validate: %d %s %s", code, list, errs)
	}
}

// TestRecommendSummaryCheckedFirst: a --summary that cannot be written fails
// the run before any policy is written.
func TestRecommendSummaryCheckedFirst(t *testing.T) {
	dir := t.TempDir()
	rep, file := filepath.Join(dir, "r.json"), filepath.Join(dir, "file")
	os.WriteFile(rep, []byte(sampleReport), 0o644)
	os.WriteFile(file, nil, 0o644)
	out := filepath.Join(dir, "policies")
	code, _, errs := runCLI(t, "recommend", "--from", rep, "-o", out, "--summary", filepath.Join(file, "pr.md"))
	if code != exitIO || !strings.Contains(errs, "--summary: write "+filepath.Join(file, "pr.md")) {
		t.Errorf("exit %d: %s", code, errs)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("policies were written although the summary cannot be")
	}
}
