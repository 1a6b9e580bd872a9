package discover

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/kubearmor/kscmp/api/report"
)

func TestIdentityFromCgroup(t *testing.T) {
	const id = "4c1f9e2d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d"
	state := t.TempDir()
	os.MkdirAll(filepath.Join(state, "runc", "demo-1"), 0o755)
	os.MkdirAll(filepath.Join(state, "crun", "demo-2"), 0o755)
	r := &IdentityResolver{StateDirs: map[string][]string{"runc": {filepath.Join(state, "runc")}, "crun": {filepath.Join(state, "crun")}}}
	cases := []struct {
		cgroup string
		want   report.Identity
	}{
		{"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1a2b3c4d_0000_1111_2222_333344445555.slice/cri-containerd-" + id + ".scope",
			report.Identity{Kind: report.KindPod, PodUID: "1a2b3c4d-0000-1111-2222-333344445555", ContainerID: id, Runtime: "containerd"}},
		{"/kubepods/burstable/pod1a2b3c4d-0000-1111-2222-333344445555/" + id,
			report.Identity{Kind: report.KindPod, PodUID: "1a2b3c4d-0000-1111-2222-333344445555", ContainerID: id}},
		{"/kubepods.slice/kubepods-pod1a2b3c4d_0000_1111_2222_333344445555.slice/crio-" + id + ".scope",
			report.Identity{Kind: report.KindPod, PodUID: "1a2b3c4d-0000-1111-2222-333344445555", ContainerID: id, Runtime: "cri-o"}},
		{"/system.slice/docker-" + id + ".scope", report.Identity{Kind: report.KindContainer, ContainerID: id, Runtime: "docker"}},
		{"/docker/" + id, report.Identity{Kind: report.KindContainer, ContainerID: id, Runtime: "docker"}},
		{"/machine.slice/libpod-" + id + ".scope", report.Identity{Kind: report.KindContainer, ContainerID: id, Runtime: "podman"}},
		{"/demo-1", report.Identity{Kind: report.KindContainer, ContainerID: "demo-1", Runtime: "runc"}},
		{"/demo-2", report.Identity{Kind: report.KindContainer, ContainerID: "demo-2", Runtime: "crun"}},
		{"/system.slice/runc-web.scope", report.Identity{Kind: report.KindContainer, ContainerID: "web", Runtime: "runc"}},
		{"/system.slice/nginx.service", report.Identity{Kind: report.KindSystemd, Unit: "nginx.service"}},
		{"/user.slice/user-0.slice/session-3.scope", report.Identity{Kind: report.KindProcess, Unit: "session-3.scope"}},
		{"/", report.Identity{Kind: report.KindProcess}},
	}
	// A container whose runtime state is gone: attributed by its cgroup when
	// the process has its own mount namespace, not otherwise.
	if got := r.FromCgroup("/gone-1", "/bin/x", true); got.Kind != report.KindContainer || got.ContainerID != "gone-1" || got.Runtime != "" {
		t.Errorf("own namespace: %+v", got)
	}
	if got := r.FromCgroup("/gone-1", "/bin/x", false); got.Kind != report.KindProcess {
		t.Errorf("host namespace: %+v", got)
	}
	if got := r.FromCgroup("/user.slice/user-0.slice/session-3.scope", "/bin/x", true); got.Kind != report.KindProcess {
		t.Errorf("a session scope is no container: %+v", got)
	}
	for _, c := range cases {
		got := r.FromCgroup(c.cgroup, "/bin/x", false)
		c.want.Exe, c.want.Cgroup = "/bin/x", c.cgroup
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.cgroup, got, c.want)
		}
	}
}
