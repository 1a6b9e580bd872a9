package host

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/internal/ocitest"
	"github.com/kubearmor/kscmp/merge"
)

func TestDirApplyRemove(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	d := &Dir{Root: root}
	policies := []*api.KubeArmorSeccompPolicy{
		hostPolicy("web", nil, []string{"web", "api"}, api.ActionBlock, "mkdir"),
		hostPolicy("web-allow", nil, []string{"web"}, api.ActionAllow, "read", "write"),
	}
	// Removing what is not there touches nothing, not even the directory.
	if changes, err := d.Remove(ctx, []string{"web"}, Options{}); err != nil || actions(changes) != "web:absent" {
		t.Errorf("remove before apply: %s %v", actions(changes), err)
	}
	if _, err := os.Stat(filepath.Join(root, DefaultDir)); !os.IsNotExist(err) {
		t.Errorf("remove created the directory: %v", err)
	}
	// The directory is created at first use.
	changes, err := d.Apply(ctx, policies, Options{})
	if err != nil || actions(changes) != "api:created web:created" {
		t.Fatalf("apply: %s %v", actions(changes), err)
	}
	if want := filepath.Join(root, DefaultDir, "web.json"); d.File("web") != want {
		t.Errorf("File = %s, want %s", d.File("web"), want)
	}
	got, _ := os.ReadFile(d.File("web"))
	rs, _ := merge.Merge(policies, merge.Target{ContainerName: "web"})
	want, _ := rs.MarshalOCI()
	if string(got) != string(want) {
		t.Errorf("web.json:\n%s\nwant:\n%s", got, want)
	}
	id1 := fileID(t, d.File("web"))
	if changes, err = d.Apply(ctx, policies, Options{}); err != nil || actions(changes) != "api:unchanged web:unchanged" {
		t.Errorf("second apply: %s %v", actions(changes), err)
	}
	if fileID(t, d.File("web")) != id1 {
		t.Error("an unchanged profile was rewritten")
	}

	// A profile kscmp did not write is neither overwritten nor removed,
	// and the refusal changes nothing.
	foreign := d.File("db")
	os.WriteFile(foreign, []byte(`{"defaultAction":"SCMP_ACT_ALLOW"}`), 0o644)
	before := snapshot(t, root)
	more := append(policies, hostPolicy("db", nil, []string{"db"}, api.ActionBlock, "ptrace"))
	more[0] = hostPolicy("web", nil, []string{"web", "api"}, api.ActionBlock, "mkdir", "chmod")
	if _, err := d.Apply(ctx, more, Options{}); err == nil || !strings.Contains(err.Error(), "not written by kscmp") {
		t.Errorf("foreign profile: %v", err)
	}
	if _, err := d.Remove(ctx, []string{"db"}, Options{}); err == nil || !strings.Contains(err.Error(), "not written by kscmp") {
		t.Errorf("remove of a foreign profile: %v", err)
	}
	sameTree(t, "after refusal", before, snapshot(t, root))

	// Prune removes kscmp's profile of a name no policy selects; the
	// foreign file stays.
	policies[0] = hostPolicy("web", nil, []string{"web"}, api.ActionBlock, "mkdir")
	if changes, err = d.Apply(ctx, policies, Options{Prune: true}); err != nil || actions(changes) != "web:unchanged api:removed" {
		t.Errorf("prune: %s %v", actions(changes), err)
	}
	if managed, _ := d.Managed(); strings.Join(managed, ",") != "web" {
		t.Errorf("managed after prune: %v", managed)
	}
	if changes, err = d.Remove(ctx, []string{"web", "api"}, Options{}); err != nil || actions(changes) != "web:removed api:absent" {
		t.Errorf("remove: %s %v", actions(changes), err)
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Errorf("foreign profile gone: %v", err)
	}
}

// TestDirProfileRunsContainer starts busybox under the runtimes with the
// profile files Dir writes, as `docker run --security-opt seccomp=FILE` or
// runc's config.json would use them: the container works, and a call the
// policies block fails with EPERM.
func TestDirProfileRunsContainer(t *testing.T) {
	for _, rt := range []merge.Runtime{merge.RuntimeRunc, merge.RuntimeCrun} {
		t.Run(string(rt), func(t *testing.T) {
			bin := ocitest.Require(t, string(rt))
			rootfs := ocitest.BusyboxRootfs(t)
			d := &Dir{Root: t.TempDir(), Runtime: rt}
			// What busybox's mkdir applet calls (strace), with mkdir left
			// out and blocked explicitly.
			policies := []*api.KubeArmorSeccompPolicy{
				hostPolicy("bb", nil, []string{"bb"}, api.ActionAllow, "arch_prctl", "brk", "execve", "exit_group", "getrandom",
					"getuid", "mmap", "mprotect", "prctl", "prlimit64", "readlink", "rseq", "set_robust_list", "set_tid_address", "write", "umask", "newfstatat", "stat"),
				hostPolicy("no-mkdir", nil, []string{"bb"}, api.ActionBlock, "mkdir", "mkdirat"),
			}
			if _, err := d.Apply(context.Background(), policies, Options{}); err != nil {
				t.Fatal(err)
			}
			prof, err := os.ReadFile(d.File("bb"))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			// The control differs from the mkdir run only in the profile:
			// without it the same mkdir works, so the EPERM is the policy's.
			for _, tc := range []struct {
				args    []string
				seccomp []byte
				code    int
				out     string
			}{
				{[]string{"echo", "works"}, prof, 0, "works"},
				{[]string{"mkdir", "/tmp/x"}, prof, 1, "Operation not permitted"},
				{[]string{"mkdir", "/tmp/x"}, nil, 0, ""},
			} {
				res, err := ocitest.Run(ctx, t, ocitest.Container{Runtime: bin, Rootfs: rootfs, Args: tc.args, Seccomp: tc.seccomp})
				if err != nil {
					t.Fatal(err)
				}
				if res.ExitCode != tc.code || !strings.Contains(res.Stdout+res.Stderr, tc.out) {
					t.Errorf("%v under %s with profile %v: exit %d, output %q %q, runtime log %q; want exit %d and %q",
						tc.args, rt, tc.seccomp != nil, res.ExitCode, res.Stdout, res.Stderr, res.RuntimeLog, tc.code, tc.out)
				}
			}
		})
	}
}
