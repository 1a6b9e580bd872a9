package discover

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/kubearmor/kscmp/api/report"
)

var (
	hex64       = `([0-9a-f]{64})`
	scopeID     = regexp.MustCompile(`^(cri-containerd|crio|docker|libpod)-` + hex64 + `\.scope$`)
	bareID      = regexp.MustCompile(`^` + hex64 + `$`)
	podSlice    = regexp.MustCompile(`pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(\.slice)?$`)
	scopeOrUnit = regexp.MustCompile(`^[^/]+\.(service|scope)$`)
)

// runtimeOfPrefix maps a cgroup scope prefix to the runtime.
var runtimeOfPrefix = map[string]string{
	"cri-containerd": "containerd",
	"crio":           "cri-o",
	"docker":         "docker",
	"libpod":         "podman",
}

// IdentityResolver turns a cgroup path (and executable) into the identity of
// a report's workload.
// The zero value knows the default state directories of runc and crun.
type IdentityResolver struct {
	// StateDirs maps runtime names to their state roots, where a directory
	// per container id exists while it runs; default {"runc": /run/runc,
	// "crun": /run/crun}.
	StateDirs map[string][]string
}

// FromCgroup resolves what a cgroup v2 path (as in /proc/PID/cgroup, e.g.
// "/kubepods.slice/…/cri-containerd-<id>.scope" or
// "/system.slice/nginx.service") and the process's executable say. ownNS
// tells that the process has a mount namespace of its own: then a cgroup
// named like neither a unit nor a slice is a container's (runc and crun put
// a container in "/<id>" by default), even when the runtime's state is
// already gone, as it is for a container that lived a few milliseconds.
func (r *IdentityResolver) FromCgroup(cgroup, exe string, ownNS bool) report.Identity {
	id := report.Identity{Kind: report.KindProcess, Exe: exe, Cgroup: cgroup}
	parts := strings.Split(strings.Trim(cgroup, "/"), "/")
	for _, p := range parts {
		if m := podSlice.FindStringSubmatch(p); m != nil {
			id.PodUID = strings.ReplaceAll(m[1], "_", "-")
		}
	}
	// The container is the innermost element that names one.
	for i := len(parts) - 1; i >= 0; i-- {
		p := parts[i]
		if m := scopeID.FindStringSubmatch(p); m != nil {
			id.Kind, id.ContainerID, id.Runtime = report.KindContainer, m[2], runtimeOfPrefix[m[1]]
			break
		}
		if m := bareID.FindStringSubmatch(p); m != nil {
			id.Kind, id.ContainerID = report.KindContainer, m[1]
			if i > 0 && parts[i-1] == "docker" {
				id.Runtime = "docker"
			}
			break
		}
		if rt := r.stateRuntime(p); rt != "" {
			id.Kind, id.ContainerID, id.Runtime = report.KindContainer, p, rt
			break
		}
		if strings.HasPrefix(p, "runc-") && strings.HasSuffix(p, ".scope") {
			id.Kind, id.ContainerID, id.Runtime = report.KindContainer, strings.TrimSuffix(strings.TrimPrefix(p, "runc-"), ".scope"), "runc"
			break
		}
		if i == len(parts)-1 && ownNS && p != "" && !strings.Contains(p, ".") {
			id.Kind, id.ContainerID = report.KindContainer, p
			break
		}
	}
	if id.PodUID != "" && id.Kind == report.KindContainer {
		id.Kind = report.KindPod
	}
	if id.Kind == report.KindProcess {
		// The innermost systemd unit: a service, or a scope (user sessions).
		for i := len(parts) - 1; i >= 0; i-- {
			if scopeOrUnit.MatchString(parts[i]) {
				id.Unit = parts[i]
				if strings.HasSuffix(parts[i], ".service") {
					id.Kind = report.KindSystemd
				}
				break
			}
		}
	}
	return id
}

// stateRuntime returns the runtime whose state directory holds a container
// named id, or "".
func (r *IdentityResolver) stateRuntime(id string) string {
	if id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return ""
	}
	dirs := r.StateDirs
	if dirs == nil {
		dirs = map[string][]string{"runc": {"/run/runc"}, "crun": {"/run/crun"}}
	}
	for _, rt := range []string{"runc", "crun"} {
		for _, d := range dirs[rt] {
			if st, err := os.Stat(filepath.Join(d, id)); err == nil && st.IsDir() {
				return rt
			}
		}
	}
	return ""
}
