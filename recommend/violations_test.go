package recommend

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/api/violation"
)

const reviewedWeb = `apiVersion: security.kubearmor.com/v1
kind: KubeArmorSeccompPolicy
metadata:
  name: web
  namespace: shop
spec:
  selector:
    matchLabels:
      app: web
  seccomp:
    arch: [x86_64]
    rules:
    - syscalls: [read, write]
      action: Allow
    - syscalls: [ptrace]
      action: Block
`

func violationsOf(vs ...violation.Violation) report.Source {
	vr := violation.New()
	vr.Node, vr.Start, vr.End = "node-a", t0, t0.Add(time.Minute)
	for _, v := range vs {
		vr.Add(v)
	}
	return ViolationSource("v.json", vr)
}

func webPod(pod string) report.Identity {
	return report.Identity{Kind: report.KindPod, Namespace: "shop", Pod: pod, Container: "nginx", Labels: map[string]string{"app": "web"}}
}

// TestWidenByViolations: a violation report widens the reviewed policy of
// its workload by the refused calls, lists each as refused in production
// (with the risky-call warning), keeps the reviewed Block rule (and says
// so), and makes no policy for a workload without a reviewed one.
func TestWidenByViolations(t *testing.T) {
	docs, err := api.Parse(strings.NewReader(reviewedWeb), "web.yaml")
	if err != nil {
		t.Fatal(err)
	}
	other := report.Identity{Kind: report.KindPod, Namespace: "shop", Pod: "db-0", Container: "db", Labels: map[string]string{"app": "db"}}
	src := violationsOf(
		violation.Violation{Identity: webPod("web-1"), Syscall: "mkdir", Number: 83, ABI: "x86_64", Action: "Block", Count: 7, FirstSeen: t0, LastSeen: t0},
		violation.Violation{Identity: webPod("web-2"), Syscall: "unshare", Number: 272, ABI: "x86_64", Action: "Audit", Count: 1, FirstSeen: t0, LastSeen: t0},
		violation.Violation{Identity: webPod("web-2"), Syscall: "ptrace", Number: 101, ABI: "x86_64", Action: "Block", Count: 1, FirstSeen: t0, LastSeen: t0},
		violation.Violation{Identity: other, Syscall: "mkdir", Number: 83, ABI: "x86_64", Action: "Kill", Count: 1, FirstSeen: t0, LastSeen: t0},
	)
	res, err := Recommend(nil, Options{Existing: docs, Violations: []report.Source{src}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Files) != 1 {
		t.Fatalf("files %v, want only shop/web.yaml", paths(res))
	}
	f := fileAt(t, res, "shop/web.yaml")
	var allowed []string
	for _, r := range f.Policy.Spec.Seccomp.AllRules() {
		if r.Action == api.ActionAllow {
			allowed = append(allowed, r.Syscalls...)
		}
	}
	if strings.Join(allowed, " ") != "mkdir read unshare write" || strings.Join(f.Refused, " ") != "mkdir unshare" || strings.Join(f.StillRefused, " ") != "ptrace" {
		t.Errorf("allowed %v, refused %v, still refused %v", allowed, f.Refused, f.StillRefused)
	}
	if !slices.ContainsFunc(f.Policy.Spec.Seccomp.AllRules(), func(r api.Rule) bool { return r.Action == api.ActionBlock && slices.Contains(r.Syscalls, "ptrace") }) {
		t.Errorf("the reviewed Block rule is gone: %+v", f.Policy.Spec.Seccomp)
	}
	sum := string(res.Summary)
	for _, want := range []string{"`mkdir`: refused in production.", "`unshare`: refused in production. Risky: creates namespaces", "still refused by the reviewed policy's own Block or Kill rule (change that rule to allow them): `ptrace`", "no reviewed policy shop/db to widen", "violations `v.json`"} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary without %q:\n%s", want, sum)
		}
	}
	if strings.Contains(sum, "Not observed this time") || !bytes.Contains(f.Data, []byte("# Widened by calls refused in production: mkdir, unshare")) {
		t.Errorf("file or summary:\n%s\n%s", f.Data, sum)
	}
	if _, err := Recommend(nil, Options{Existing: docs, Violations: []report.Source{src}, Prune: true}); err == nil {
		t.Error("Prune with violation reports was taken")
	}
	// Without a reviewed policy nothing is written at all.
	res, err = Recommend(nil, Options{Violations: []report.Source{src}})
	if err != nil || len(res.Files) != 0 || len(res.Skipped) != 2 {
		t.Errorf("without reviewed policies: files %v, skipped %v, %v", paths(res), res.Skipped, err)
	}
}
