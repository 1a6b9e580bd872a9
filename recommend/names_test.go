package recommend

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kubearmor/kscmp/api/report"
)

func hostContainer(id string, calls ...string) report.Workload {
	return report.Workload{Identity: report.Identity{Kind: report.KindContainer, ContainerID: id}, Syscalls: map[string][]string{"x86_64": calls}}
}

// TestPolicyName: every string gets a valid policy name; a valid name is
// kept; one that had to change gets a hash of the original, so names that
// sanitise alike stay apart.
func TestPolicyName(t *testing.T) {
	for in, want := range map[string]string{"web": "web", "nginx": "nginx", "web.1": "web.1", "a-b.c": "a-b.c"} {
		if got := policyName(in); got != want {
			t.Errorf("policyName(%q) = %q, want %q", in, got, want)
		}
	}
	inputs := []string{"web..1", "web.1.", ".web.1", "Web.1", "web_1", "web-1-", "-", "", "...", "ä", "a/../b",
		"foo@bar", "foo-bar-", strings.Repeat("x", 300), strings.Repeat("x", 300) + "y", strings.Repeat("a.", 150)}
	seen := map[string]string{}
	for _, in := range inputs {
		got := policyName(in)
		if msgs := validation.IsDNS1123Subdomain(got); len(msgs) > 0 || len(got) > maxNameLen {
			t.Errorf("policyName(%q) = %q: invalid: %v", in, got, msgs)
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("policyName(%q) = policyName(%q) = %q", in, prev, got)
		}
		seen[got] = in
		if got != policyName(in) {
			t.Errorf("policyName(%q) is not stable", in)
		}
	}
	if got := policyName("web..1"); !strings.HasPrefix(got, "web.1-") || len(got) != len("web.1-")+8 {
		t.Errorf("policyName(web..1) = %q, want web.1-<hash>", got)
	}
}

// TestOddWorkloads: a workload whose id is valid but not a policy name
// (web..1) gets a sanitised name of its own; workloads that no valid policy
// can select, or with nothing observed, are skipped with the reason, and
// every other workload still gets its policy (#12 item 8). Before the fix
// web..1 failed the whole run.
func TestOddWorkloads(t *testing.T) {
	src := reportOf("n",
		hostContainer("web..1", "read"), hostContainer("web.1", "write"), hostContainer("db", "read"),
		hostContainer("bad/../name", "read"), hostContainer("quiet"),
		pod("Bad_NS", "p-1", "c", map[string]string{"app": "x"}, nil, "read"),
		pod("shop", "p-1", "c", map[string]string{"app": "ok"}, nil, "read"),
	)
	res, err := Recommend([]report.Source{src}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := paths(res)
	if len(got) != 4 || got[0] != "_host/db.yaml" || got[2] != "_host/web.1.yaml" || !strings.HasPrefix(got[1], "_host/web.1-") || got[3] != "shop/ok.yaml" {
		t.Errorf("files %v", got)
	}
	checkFiles(t, res)
	for _, want := range []string{"host container bad/../name: no valid policy can select it: ", "host container quiet: no system calls observed", "pods Bad_NS/x: no valid policy can select it: "} {
		found := false
		for _, s := range res.Skipped {
			found = found || strings.HasPrefix(s, want)
		}
		if !found {
			t.Errorf("skipped %q, want %q", res.Skipped, want)
		}
	}
	for _, name := range []string{"- host container bad/../name: ", "- host container quiet: ", "- pods Bad\\_NS/x: "} {
		if !strings.Contains(string(res.Summary), name) {
			t.Errorf("the summary does not list %q:\n%s", name, res.Summary)
		}
	}
	// web..1's name is its own: the same when it is recorded alone.
	alone, err := Recommend([]report.Source{reportOf("n", hostContainer("web..1", "read"))}, Options{})
	if err != nil || len(alone.Files) != 1 || alone.Files[0].Path != got[1] {
		t.Errorf("web..1 alone: %v %v, want %s", paths(alone), err, got[1])
	}
}

// TestHostKindsApart: a container and a systemd unit of the same name are
// two workloads with a policy each; before, they were one group, and the
// second's calls went into the first's policy, under its selector.
func TestHostKindsApart(t *testing.T) {
	unit := report.Workload{Identity: report.Identity{Kind: report.KindSystemd, Unit: "nginx.service"}, Syscalls: map[string][]string{"x86_64": {"write"}}}
	res, err := Recommend([]report.Source{reportOf("n", hostContainer("nginx", "read"), unit)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(paths(res), " "); got != "_host/nginx-2.yaml _host/nginx.yaml" {
		t.Fatalf("files %s", got)
	}
	for _, f := range res.Files {
		sel, calls := f.Policy.Spec.Selector, strings.Join(f.Policy.Spec.Seccomp.Syscalls, ",")
		if !(len(sel.ContainerNames) == 1 && calls == "read" || len(sel.SystemdUnits) == 1 && calls == "write") {
			t.Errorf("%s: selector %+v allows %s", f.Path, sel, calls)
		}
	}
}
