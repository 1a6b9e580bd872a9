package host

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/deploy"
	"github.com/kubearmor/kscmp/internal/testenv"
	"github.com/kubearmor/kscmp/merge"
)

func hostPolicy(name string, units, containers []string, action api.Action, syscalls ...string) *api.KubeArmorSeccompPolicy {
	return &api.KubeArmorSeccompPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: api.SchemeGroupVersion.String(), Kind: "KubeArmorSeccompPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: api.PolicySpec{
			Selector: api.Selector{SystemdUnits: units, ContainerNames: containers},
			Seccomp:  api.SeccompSpec{Syscalls: syscalls, Action: action},
		},
	}
}

// snapshot is testenv.Tree: every entry below root with its mode, link
// target or content.
func snapshot(t *testing.T, root string) map[string]string { return testenv.Tree(t, root) }

// fileIdentity is what rewriting a file changes: an atomic write makes a new
// inode, an in-place write or a chmod a new ctime. Unlike comparing mtimes
// after a sleep, it depends on no clock granularity.
type fileIdentity struct {
	ino   uint64
	ctime syscall.Timespec
}

func fileID(t *testing.T, path string) fileIdentity {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	return fileIdentity{sys.Ino, sys.Ctim}
}

func sameTree(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	if diff := testenv.TreeDiff(before, after); diff != "" {
		t.Errorf("%s:\n%s", what, diff)
	}
}

func actions(changes []Change) string {
	var s []string
	for _, c := range changes {
		s = append(s, c.Target+":"+string(c.Action))
	}
	return strings.Join(s, " ")
}

// writeTree makes a small /etc/systemd/system: a unit with a vendor
// drop-in of its own and a unit without any.
func writeTree(t *testing.T) string {
	root := t.TempDir()
	files := map[string]string{
		"etc/systemd/system/web.service":                  "[Service]\nExecStart=/bin/true\n",
		"etc/systemd/system/web.service.d/10-vendor.conf": "[Service]\nEnvironment=A=1\n",
		"etc/systemd/system/db.service":                   "[Service]\nExecStart=/bin/true\n",
	}
	for p, c := range files {
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestSystemdApplyRemove(t *testing.T) {
	ctx := context.Background()
	root := writeTree(t)
	before := snapshot(t, root)
	policies := []*api.KubeArmorSeccompPolicy{
		hostPolicy("web-allow", []string{"web"}, nil, api.ActionAllow, "read", "write", "openat", "close"),
		hostPolicy("web-deny", []string{"web.service"}, nil, api.ActionBlock, "write"),
		hostPolicy("db-deny", []string{"db.service"}, nil, api.ActionBlock, "mkdir", "ptrace"),
	}
	s := &Systemd{Root: root}
	changes, err := s.Apply(ctx, policies, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := actions(changes), "db.service:created web.service:created"; got != want {
		t.Errorf("first apply: %s, want %s", got, want)
	}
	for _, unit := range []string{"db.service", "web.service"} {
		rs, err := merge.Merge(policies, merge.Target{Unit: unit})
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(s.Path(unit))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(rs.Systemd()) {
			t.Errorf("%s drop-in:\n%s\nwant:\n%s", unit, got, rs.Systemd())
		}
	}
	web, _ := os.ReadFile(s.Path("web.service"))
	for _, want := range []string{"SystemCallFilter=\n", "SystemCallFilter=close openat read restart_syscall rt_sigreturn\n", "SystemCallFilter=~write\n", "SystemCallArchitectures=native\n", "SystemCallErrorNumber=EPERM\n"} {
		if !strings.Contains(string(web), want) {
			t.Errorf("web drop-in lacks %q:\n%s", want, web)
		}
	}
	if db, _ := os.ReadFile(s.Path("db.service")); strings.Contains(string(db), "SystemCallFilter=\n") {
		t.Errorf("a deny-list must add to the unit's own filter, not reset it:\n%s", db)
	}
	if units, err := s.Managed(); err != nil || !slices.Equal(units, []string{"db.service", "web.service"}) {
		t.Errorf("Managed = %v, %v", units, err)
	}

	// Again: nothing to do, nothing written.
	id1 := fileID(t, s.Path("web.service"))
	changes, err = s.Apply(ctx, policies, Options{})
	if err != nil || actions(changes) != "db.service:unchanged web.service:unchanged" {
		t.Errorf("second apply: %s %v", actions(changes), err)
	}
	if fileID(t, s.Path("web.service")) != id1 {
		t.Error("an unchanged drop-in was rewritten")
	}

	// Only one unit, by its short name.
	changes, err = s.Apply(ctx, policies, Options{Targets: []string{"db"}})
	if err != nil || actions(changes) != "db.service:unchanged" {
		t.Errorf("apply --unit db: %s %v", actions(changes), err)
	}
	var np *NoPolicyError
	if _, err := s.Apply(ctx, policies, Options{Targets: []string{"cron"}}); !errors.As(err, &np) {
		t.Errorf("apply --unit cron: %v, want NoPolicyError", err)
	}

	// Removal restores the tree exactly: the vendor drop-in stays, the
	// directory kscmp created goes.
	changes, err = s.Remove(ctx, []string{"web", "db.service", "cron.service"}, Options{})
	if err != nil || actions(changes) != "web.service:removed db.service:removed cron.service:absent" {
		t.Errorf("remove: %s %v", actions(changes), err)
	}
	sameTree(t, "after remove", before, snapshot(t, root))
}

func TestSystemdBadInputChangesNothing(t *testing.T) {
	ctx := context.Background()
	root := writeTree(t)
	s := &Systemd{Root: root, Verify: deploy.VerifySystemdDropIn}
	good := []*api.KubeArmorSeccompPolicy{hostPolicy("web", []string{"web"}, nil, api.ActionAllow, "read", "write")}
	if _, err := s.Apply(ctx, good, Options{}); errors.Is(err, deploy.ErrNoSystemdAnalyze) {
		testenv.Missing(t, err.Error())
	} else if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, root)

	// A system call this systemd does not know (systemd would drop it from
	// the filter with only a debug message), next to a good change: nothing
	// is written.
	bad := []*api.KubeArmorSeccompPolicy{
		hostPolicy("web", []string{"web"}, nil, api.ActionAllow, "read", "write", "close"),
		hostPolicy("db", []string{"db"}, nil, api.ActionAllow, "read", "mseal"),
	}
	_, err := s.Apply(ctx, bad, Options{})
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "mseal") || !strings.Contains(err.Error(), "db.service") {
		t.Errorf("unknown name: %v", err)
	}
	sameTree(t, "after rejected apply", before, snapshot(t, root))

	// A drop-in at kscmp's path that kscmp did not write.
	foreign := filepath.Join(root, "etc/systemd/system/db.service.d", DropInName)
	os.MkdirAll(filepath.Dir(foreign), 0o755)
	os.WriteFile(foreign, []byte("[Service]\nUser=db\n"), 0o644)
	before = snapshot(t, root)
	bad[1] = hostPolicy("db", []string{"db"}, nil, api.ActionAllow, "read")
	if _, err := s.Apply(ctx, bad, Options{}); err == nil || !strings.Contains(err.Error(), "not written by kscmp") {
		t.Errorf("foreign drop-in: %v", err)
	}
	if _, err := s.Remove(ctx, []string{"db"}, Options{}); err == nil || !strings.Contains(err.Error(), "not written by kscmp") {
		t.Errorf("remove of a foreign drop-in: %v", err)
	}
	sameTree(t, "after refused apply", before, snapshot(t, root))

	// A dry run checks and writes nothing.
	changes, err := s.Apply(ctx, good, Options{DryRun: true, Prune: true})
	if err != nil || actions(changes) != "web.service:unchanged" {
		t.Errorf("dry run: %s %v", actions(changes), err)
	}
	sameTree(t, "after dry run", before, snapshot(t, root))
}

func TestSystemdPrune(t *testing.T) {
	ctx := context.Background()
	root := writeTree(t)
	s := &Systemd{Root: root}
	both := []*api.KubeArmorSeccompPolicy{
		hostPolicy("web", []string{"web"}, nil, api.ActionBlock, "mkdir"),
		hostPolicy("db", []string{"db"}, nil, api.ActionBlock, "mkdir"),
	}
	if _, err := s.Apply(ctx, both, Options{}); err != nil {
		t.Fatal(err)
	}
	// Without --prune a deleted policy's drop-in stays; with it, it goes.
	changes, err := s.Apply(ctx, both[:1], Options{})
	if err != nil || actions(changes) != "web.service:unchanged" {
		t.Errorf("apply without prune: %s %v", actions(changes), err)
	}
	changes, err = s.Apply(ctx, both[:1], Options{Prune: true})
	if err != nil || actions(changes) != "web.service:unchanged db.service:removed" {
		t.Errorf("apply --prune: %s %v", actions(changes), err)
	}
	if _, err := os.Stat(filepath.Dir(s.Path("db.service"))); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("db.service.d left behind: %v", err)
	}
}

// fakeManager records what a live Systemd asks of systemd, and answers
// DropInPaths and SystemCallFilter from the files as a systemd would, unless
// told to lose names.
type fakeManager struct {
	root     string
	calls    []string
	drop     string // a system call name "systemd" does not know
	noLoad   bool   // "systemd" loads no drop-in
	failUnit string // Restart fails for this unit
}

func (f *fakeManager) DaemonReload(context.Context) error {
	f.calls = append(f.calls, "daemon-reload")
	return nil
}

func (f *fakeManager) Restart(_ context.Context, unit string) error {
	f.calls = append(f.calls, "restart "+unit)
	if unit == f.failUnit {
		return errors.New("unit failed")
	}
	return nil
}

func (f *fakeManager) Property(_ context.Context, unit, name string) (string, error) {
	path := filepath.Join(f.root, UnitDir, unit+".d", DropInName)
	b, err := os.ReadFile(path)
	if err != nil || f.noLoad {
		return "", nil
	}
	switch name {
	case "DropInPaths":
		return path, nil
	case "SystemCallFilter":
		var names []string
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "SystemCallFilter="); ok && !strings.HasPrefix(v, "~") {
				for _, n := range strings.Fields(v) {
					if n != f.drop {
						names = append(names, n)
					}
				}
			}
		}
		return strings.Join(names, " "), nil
	}
	return "", nil
}

func TestSystemdLive(t *testing.T) {
	ctx := context.Background()
	root := writeTree(t)
	m := &fakeManager{root: root}
	live := &Systemd{Root: root, Manager: m}
	policies := []*api.KubeArmorSeccompPolicy{
		hostPolicy("web", []string{"web"}, nil, api.ActionAllow, "read", "write"),
		hostPolicy("db", []string{"db"}, nil, api.ActionBlock, "mkdir"),
	}
	changes, err := live.Apply(ctx, policies, Options{Restart: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(m.calls, ","); got != "daemon-reload,restart db.service,restart web.service" {
		t.Errorf("systemctl calls: %s", got)
	}
	if !changes[0].Restarted || !changes[1].Restarted {
		t.Errorf("changes: %+v", changes)
	}
	// Unchanged: no reload, no restart.
	m.calls = nil
	if _, err := live.Apply(ctx, policies, Options{Restart: true}); err != nil || len(m.calls) != 0 {
		t.Errorf("unchanged apply called systemctl: %v %v", m.calls, err)
	}

	// systemd does not know one name: every change is rolled back.
	before := snapshot(t, root)
	m.calls, m.drop = nil, "close"
	policies[0] = hostPolicy("web", []string{"web"}, nil, api.ActionAllow, "read", "write", "close")
	policies[1] = hostPolicy("db", []string{"db"}, nil, api.ActionBlock, "mkdir", "ptrace")
	_, err = live.Apply(ctx, policies, Options{Restart: true})
	if err == nil || !strings.Contains(err.Error(), "does not allow close") {
		t.Errorf("unknown name: %v", err)
	}
	if got := strings.Join(m.calls, ","); got != "daemon-reload,daemon-reload" {
		t.Errorf("systemctl calls on rollback: %s", got)
	}
	sameTree(t, "after rollback", before, snapshot(t, root))

	// systemd loads no drop-in (for example a unit directory it does not
	// read): rolled back too.
	m.calls, m.drop, m.noLoad = nil, "", true
	if _, err := live.Apply(ctx, policies, Options{}); err == nil || !strings.Contains(err.Error(), "did not load") {
		t.Errorf("not loaded: %v", err)
	}
	sameTree(t, "after rollback", before, snapshot(t, root))
	m.noLoad = false

	// Remove reloads and restarts.
	m.calls = nil
	if _, err := live.Remove(ctx, []string{"web"}, Options{Restart: true}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(m.calls, ","); got != "daemon-reload,restart web.service" {
		t.Errorf("systemctl calls on remove: %s", got)
	}
}
