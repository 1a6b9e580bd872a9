package discover

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Identity says who a recorded workload is. Absent fields are unknown. It is
// the "identity" object of the observation report.
type Identity struct {
	// Kind is "pod", "container", "systemd" or "process".
	Kind        string            `json:"kind"`
	Namespace   string            `json:"namespace,omitempty"`
	Pod         string            `json:"pod,omitempty"`
	PodUID      string            `json:"podUID,omitempty"`
	Container   string            `json:"container,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Owner       *Owner            `json:"owner,omitempty"`
	ContainerID string            `json:"containerID,omitempty"`
	// Runtime is what runs the container: containerd, cri-o, docker,
	// podman, runc or crun.
	Runtime string `json:"runtime,omitempty"`
	Unit    string `json:"unit,omitempty"`
	Exe     string `json:"exe,omitempty"`
	// Cgroup is the cgroup path the identity was read from.
	Cgroup string `json:"cgroup,omitempty"`
}

// Owner is the controller that owns a pod (for a ReplicaSet, the Deployment
// that owns it).
type Owner struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// The identity kinds.
const (
	KindPod       = "pod"
	KindContainer = "container"
	KindSystemd   = "systemd"
	KindProcess   = "process"
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

// IdentityResolver turns a cgroup path (and executable) into an Identity.
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
func (r *IdentityResolver) FromCgroup(cgroup, exe string, ownNS bool) Identity {
	id := Identity{Kind: KindProcess, Exe: exe, Cgroup: cgroup}
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
			id.Kind, id.ContainerID, id.Runtime = KindContainer, m[2], runtimeOfPrefix[m[1]]
			break
		}
		if m := bareID.FindStringSubmatch(p); m != nil {
			id.Kind, id.ContainerID = KindContainer, m[1]
			if i > 0 && parts[i-1] == "docker" {
				id.Runtime = "docker"
			}
			break
		}
		if rt := r.stateRuntime(p); rt != "" {
			id.Kind, id.ContainerID, id.Runtime = KindContainer, p, rt
			break
		}
		if strings.HasPrefix(p, "runc-") && strings.HasSuffix(p, ".scope") {
			id.Kind, id.ContainerID, id.Runtime = KindContainer, strings.TrimSuffix(strings.TrimPrefix(p, "runc-"), ".scope"), "runc"
			break
		}
		if i == len(parts)-1 && ownNS && p != "" && !strings.Contains(p, ".") {
			id.Kind, id.ContainerID = KindContainer, p
			break
		}
	}
	if id.PodUID != "" && id.Kind == KindContainer {
		id.Kind = KindPod
	}
	if id.Kind == KindProcess {
		// The innermost systemd unit: a service, or a scope (user sessions).
		for i := len(parts) - 1; i >= 0; i-- {
			if scopeOrUnit.MatchString(parts[i]) {
				id.Unit = parts[i]
				if strings.HasSuffix(parts[i], ".service") {
					id.Kind = KindSystemd
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
