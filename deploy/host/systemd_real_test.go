package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/deploy"
	"github.com/kubearmor/kscmp/internal/nspawntest"
	"github.com/kubearmor/kscmp/internal/testenv"
)

// inMachineEnv makes this test binary, run inside the machine by
// TestSystemdPostWriteCheckRealSystemd, carry out one Apply there: its value
// is the directory with the policies to apply and for the result.
const inMachineEnv = "KSCMP_HOST_TEST_IN_MACHINE"

// inMachineResult is what one Apply in the machine gave.
type inMachineResult struct {
	Changes  []Change `json:"changes"`
	Error    string   `json:"error"`
	Rejected bool     `json:"rejected"` // errors.Is(err, ErrRejected): the pre-write check refused it
}

// realUnit is the service the drop-ins are for; the test keeps it running,
// as the services kscmp confines are, so systemd holds it in memory: an
// inactive unit nothing refers to is unloaded and read again from disk on
// the next query, which would hide a roll-back that forgets to reload.
// badUnit is a unit the running systemd refuses to load (a relative
// ExecStart= path: LoadState=bad-setting).
const (
	realUnit = "[Unit]\nDescription=kscmp post-write check\n\n[Service]\nExecStart=/bin/sleep infinity\n"
	badUnit  = "[Unit]\nDescription=a unit systemd refuses\n\n[Service]\nType=oneshot\nExecStart=bin/true\n"
)

// overrideConf is what `systemctl edit demo.service` leaves when an admin
// hardens the service: override.conf sorts after kscmp's
// 50-kscmp-seccomp.conf, so systemd applies it last and its "~" line takes
// the privileged calls out of kscmp's allow-list.
const overrideConf = "[Service]\nSystemCallFilter=~@privileged\n"

// TestSystemdPostWriteCheckRealSystemd drives Systemd.Apply on the running
// systemd 252 of a systemd-nspawn machine (Debian bookworm), with the
// pre-write check (deploy.VerifySystemdDropIn, the machine's own
// systemd-analyze) and the real manager (Systemctl), for drop-ins that pass
// the pre-write check but that the running systemd does not load as
// written:
//
//   - demo.service, running, has the override.conf an admin's `systemctl
//     edit` leaves (SystemCallFilter=~@privileged): the drop-in loads, but
//     the unit's filter does not allow setuid, which the policy allows
//     ("does not allow"), both for a new drop-in and for an update of
//     kscmp's own;
//   - bad.service has a setting this systemd refuses (LoadState=bad-setting)
//     and ghost.service is not installed (LoadState=not-found): systemd
//     loads no drop-in for them ("did not load").
//
// Each time Apply must fail without ErrRejected (the pre-write check passed)
// and roll back: /etc/systemd/system byte for byte as before (entries,
// modes, contents, link targets), and systemd's view of the unit
// (`systemctl cat`, its drop-ins and filter, NeedDaemonReload) as before.
//
// No system call name is among these cases: every name libseccomp 2.5.4
// knows comes back from this systemd's SystemCallFilter property as written
// (the 368 of the x86-64 table, checked in the machine); the 12 newer names
// it does not know are refused by the pre-write check, which
// TestSystemdBadInputChangesNothing and TestHostSystemdLoop cover.
//
// The test binary itself does the Apply in the machine (through nsenter,
// with inMachineEnv set), so that the Systemd under test runs with the root
// and manager it has in production.
func TestSystemdPostWriteCheckRealSystemd(t *testing.T) {
	if dir := os.Getenv(inMachineEnv); dir != "" {
		applyInMachine(t, dir)
		return
	}
	tree := nspawntest.Tree(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	work := t.TempDir()
	m, err := nspawntest.Start(ctx, t, nspawntest.Options{
		Tree: tree,
		Binds: []nspawntest.Bind{{Host: filepath.Dir(exe), Guest: "/kscmp-test", ReadOnly: true},
			{Host: work, Guest: "/work"}},
		Units:   map[string]string{"demo.service": realUnit, "bad.service": badUnit},
		Timeout: 3 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	unitDir := filepath.Join(m.Root(), UnitDir)
	if err := os.MkdirAll(filepath.Join(unitDir, "demo.service.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(unitDir, "demo.service.d", "override.conf"), []byte(overrideConf), 0o644); err != nil {
		t.Fatal(err)
	}
	systemctl := func(args ...string) string {
		t.Helper()
		out, err := m.Command(ctx, "systemctl", args...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("systemctl %s in the machine: %v", strings.Join(args, " "), err)
		}
		return fmt.Sprintf("exit %d\n%s", code, out)
	}
	systemctl("daemon-reload")
	if out := systemctl("start", "demo.service"); !strings.HasPrefix(out, "exit 0\n") {
		t.Fatalf("systemctl start demo.service: %s", out)
	}
	// view is systemd's view of a unit: its files, load and active state,
	// drop-ins and filter, and whether its files changed since systemd
	// loaded them (NeedDaemonReload).
	view := func(unit string) string {
		return systemctl("cat", unit) + systemctl("show", "-p", "LoadState,ActiveState,NeedDaemonReload,DropInPaths,SystemCallFilter", unit)
	}
	if v := view("bad.service"); !strings.Contains(v, "LoadState=bad-setting") {
		t.Fatalf("bad.service is not refused by this systemd:\n%s", v)
	}
	if v := view("demo.service"); !strings.Contains(v, "override.conf") || !strings.Contains(v, "ActiveState=active") {
		t.Fatalf("demo.service not running with the admin's override:\n%s", v)
	}

	n := 0
	apply := func(policies ...*api.KubeArmorSeccompPolicy) inMachineResult {
		t.Helper()
		n++
		dir := filepath.Join(work, fmt.Sprint(n))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		data, err := json.Marshal(policies)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "policies.json"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := m.Command(ctx, "/kscmp-test/"+filepath.Base(exe), "-test.run=^TestSystemdPostWriteCheckRealSystemd$", "-test.count=1", "-test.v")
		cmd.Env = append(cmd.Env, inMachineEnv+"=/work/"+fmt.Sprint(n))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("the Apply in the machine: %v\n%s", err, out)
		}
		data, err = os.ReadFile(filepath.Join(dir, "result.json"))
		if err != nil {
			t.Fatal(err)
		}
		var res inMachineResult
		if err := json.Unmarshal(data, &res); err != nil {
			t.Fatal(err)
		}
		return res
	}
	// refused applies the policies, which must fail with want after
	// passing the pre-write check, and then finds the unit directory and
	// systemd's view of unit exactly as before.
	refused := func(name, unit, want string, policies ...*api.KubeArmorSeccompPolicy) {
		t.Helper()
		treeBefore, viewBefore := testenv.Tree(t, unitDir), view(unit)
		res := apply(policies...)
		t.Logf("%s: %+v", name, res)
		switch {
		case res.Error == "":
			t.Errorf("%s: Apply succeeded, want it to fail with %q", name, want)
		case res.Rejected:
			t.Errorf("%s: refused by the pre-write check (%s): the post-write check is not reached", name, res.Error)
		case !strings.Contains(res.Error, want):
			t.Errorf("%s: Apply failed with %q, want %q", name, res.Error, want)
		}
		if diff := testenv.TreeDiff(treeBefore, testenv.Tree(t, unitDir)); diff != "" {
			t.Errorf("%s: after the roll-back %s differs:\n%s", name, UnitDir, diff)
		}
		if after := view(unit); after != viewBefore {
			t.Errorf("%s: after the roll-back systemd's view of %s is\n%s\nwant\n%s", name, unit, after, viewBefore)
		}
	}

	refused("new drop-in under an override", "demo.service", "does not allow setuid",
		realPolicy("demo", "demo.service", "read", "write", "setuid"))

	// kscmp's drop-in is there; an update the override defeats restores it.
	if res := apply(realPolicy("demo", "demo.service", "read", "write", "getpid")); res.Error != "" || len(res.Changes) != 1 || res.Changes[0].Action != Created {
		t.Fatalf("a drop-in the override leaves alone: %+v", res)
	}
	installed, err := os.ReadFile(filepath.Join(unitDir, "demo.service.d", DropInName))
	if err != nil {
		t.Fatal(err)
	}
	refused("update under an override", "demo.service", "does not allow setuid",
		realPolicy("demo", "demo.service", "read", "write", "getpid", "setuid"))
	if again, err := os.ReadFile(filepath.Join(unitDir, "demo.service.d", DropInName)); err != nil || string(again) != string(installed) {
		t.Errorf("kscmp's drop-in after the roll-back: %q (%v), want\n%s", again, err, installed)
	}

	refused("unit systemd refuses", "bad.service", "did not load", realPolicy("bad", "bad.service", "read", "write"))
	refused("unit not installed", "ghost.service", "did not load", realPolicy("ghost", "ghost.service", "read", "write"))
}

// applyInMachine is the test binary's part inside the machine: it applies
// dir/policies.json with the pre-write check and the running systemd, as
// `kscmp apply --systemd` does, and writes dir/result.json.
func applyInMachine(t *testing.T, dir string) {
	data, err := os.ReadFile(filepath.Join(dir, "policies.json"))
	if err != nil {
		t.Fatal(err)
	}
	var policies []*api.KubeArmorSeccompPolicy
	if err := json.Unmarshal(data, &policies); err != nil {
		t.Fatal(err)
	}
	s := &Systemd{Verify: deploy.VerifySystemdDropIn, Manager: Systemctl{}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	changes, err := s.Apply(ctx, policies, Options{})
	res := inMachineResult{Changes: changes}
	if err != nil {
		res.Error, res.Rejected = err.Error(), errors.Is(err, ErrRejected)
	}
	out, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "result.json"), out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// realPolicy allows calls for one systemd unit.
func realPolicy(name, unit string, calls ...string) *api.KubeArmorSeccompPolicy {
	return &api.KubeArmorSeccompPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: api.SchemeGroupVersion.String(), Kind: api.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: api.PolicySpec{
			Selector: api.Selector{SystemdUnits: []string{unit}},
			Seccomp:  api.SeccompSpec{Syscalls: calls, Action: api.ActionAllow},
		},
	}
}
