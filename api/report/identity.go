package report

import "fmt"

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

// Kinds lists the identity kinds a report may hold.
var Kinds = [...]string{KindPod, KindContainer, KindSystemd, KindProcess}

// String names the workload for people, in progress lines and messages, by
// the most specific thing known about it: "pod shop/web-1/nginx",
// "container 0123456789ab (containerd)", "unit nginx.service",
// "process /bin/sh", else "workload in cgroup /…". A 64-digit container id is
// shortened to its first 12 digits, as docker and crictl show it.
func (id Identity) String() string {
	switch {
	case id.Pod != "":
		s := fmt.Sprintf("pod %s/%s", id.Namespace, id.Pod)
		if id.Container != "" {
			s += "/" + id.Container
		}
		return s
	case id.ContainerID != "":
		s := "container " + id.ContainerID
		if len(id.ContainerID) == 64 {
			s = "container " + id.ContainerID[:12]
		}
		if id.Runtime != "" {
			s += " (" + id.Runtime + ")"
		}
		return s
	case id.Unit != "":
		return "unit " + id.Unit
	case id.Exe != "":
		return "process " + id.Exe
	}
	return "workload in cgroup " + id.Cgroup
}
