package agent

import (
	"bytes"
	_ "embed"
	"fmt"
	"path/filepath"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/internal/fsutil"
	"github.com/kubearmor/kscmp/merge"
)

// The agent's own profile: the DaemonSet's agent container runs under it
// (securityContext.seccompProfile {type: Localhost, localhostProfile:
// OwnProfile}), and its init container installs it first ('kscmp agent
// install-profile'), since the kubelet does not start a container whose
// profile file is missing.
const (
	OwnNamespace = "kscmp-system"
	OwnName      = "kscmp-agent"
	// OwnProfile is the path of the agent's own profile under the kubelet's
	// seccomp directory. The agent never writes it from policies, never
	// removes it, and never rolls a workload because of it; a policy whose
	// profile would be this file (OwnNamespace/OwnName) is refused.
	OwnProfile = ProfileDir + "/" + OwnNamespace + "/" + OwnName + ".json"
	// OwnBPFName and OwnBPFProfile: the agent's own profile when it
	// loads eBPF programs (`kscmp agent --attribute-exited`, the default,
	// and --exit-errors): OwnProfile plus bpf. Installed beside OwnProfile
	// and kept like it; the chart names OwnProfile instead when both
	// agent.attributeExited and agent.exitErrors are off, so that such an
	// agent cannot call bpf at all.
	OwnBPFName    = OwnName + "-bpf"
	OwnBPFProfile = ProfileDir + "/" + OwnNamespace + "/" + OwnBPFName + ".json"
)

// IsOwnProfile: path (under the kubelet's seccomp directory) is one of the
// agent's own profiles, which no policy makes and the agent never removes.
func IsOwnProfile(path string) bool {
	return path == OwnProfile || path == OwnBPFProfile
}

// bpfSyscalls are what the eBPF programs (exited, exit-errors) add to
// the agent's own calls: bpf, to load the programs and their maps, attach
// them, and read and update the maps. The rest (the BTF file, the runtime state
// directories, the cgroup tree, the memlock limit) are calls the agent
// makes already.
var bpfSyscalls = []string{"bpf"}

// ownPolicyYAML is the agent's own policy: the system calls `kscmp agent
// --mode enforce` was measured to make; its comments say how.
//
//go:embed kscmp-agent-policy.yaml
var ownPolicyYAML []byte

// OwnPolicyYAML returns the agent's own policy as it is kept in the source
// (kscmp-agent-policy.yaml, with its comments).
func OwnPolicyYAML() []byte { return bytes.Clone(ownPolicyYAML) }

// OwnPolicy returns the agent's own policy, parsed and validated.
func OwnPolicy() (*api.KubeArmorSeccompPolicy, error) {
	docs, err := api.Parse(bytes.NewReader(ownPolicyYAML), "kscmp-agent-policy.yaml")
	if err != nil {
		return nil, fmt.Errorf("the agent's own policy: %w", err)
	}
	if len(docs) != 1 || docs[0].Policy.Key() != OwnNamespace+"/"+OwnName {
		return nil, fmt.Errorf("the agent's own policy: want one policy %s/%s, got %d documents", OwnNamespace, OwnName, len(docs))
	}
	return docs[0].Policy, nil
}

// OwnProfileJSON compiles the agent's own profile for a node of the family
// with the shared merger: the policy's allow-list, the kernel's calls and
// the start-up sets of every runtime kscmp knows (merge.RuntimeAny), since
// the profile is installed before anything on the node could say which
// runtime starts the container. The policy serves both families; the calls
// one family's ABIs do not have (arch_prctl on arm64) are left out of that
// family's profile.
func OwnProfileJSON(family api.Family) ([]byte, error) {
	p, err := OwnPolicy()
	if err != nil {
		return nil, err
	}
	return merge.ComponentProfile(p, family, "agent", "the agent")
}

// OwnBPFProfileJSON compiles the agent's own profile for an agent that
// loads eBPF programs (OwnBPFProfile): OwnProfileJSON's policy with bpf
// allowed too.
func OwnBPFProfileJSON(family api.Family) ([]byte, error) {
	p, err := OwnPolicy()
	if err != nil {
		return nil, err
	}
	p.Name = OwnBPFName
	p.Spec.Seccomp.Rules = append(p.Spec.Seccomp.Rules, api.Rule{Syscalls: bpfSyscalls, Action: api.ActionAllow})
	return merge.ComponentProfile(p, family, "agent", "the agent (with eBPF)")
}

// InstallOwnProfile writes the agent's own profiles to
// seccompDir/OwnProfile and seccompDir/OwnBPFProfile: atomically,
// and not at all when they are already there. It returns the first file's
// path and whether any was written.
func InstallOwnProfile(seccompDir string, family api.Family) (path string, changed bool, err error) {
	for _, f := range []struct {
		rel     string
		compile func(api.Family) ([]byte, error)
	}{{OwnProfile, OwnProfileJSON}, {OwnBPFProfile, OwnBPFProfileJSON}} {
		data, err := f.compile(family)
		if err != nil {
			return "", false, err
		}
		full := filepath.Join(seccompDir, filepath.FromSlash(f.rel))
		c, err := fsutil.WriteManaged(full, data, 0o644)
		if err != nil {
			return "", false, err
		}
		changed = changed || c
		if path == "" {
			path = full
		}
	}
	return path, changed, nil
}
