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
)

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

// InstallOwnProfile writes the agent's own profile to
// seccompDir/OwnProfile: atomically, and not at all when it is already
// there. It returns the file's path and whether it was written.
func InstallOwnProfile(seccompDir string, family api.Family) (path string, changed bool, err error) {
	data, err := OwnProfileJSON(family)
	if err != nil {
		return "", false, err
	}
	path = filepath.Join(seccompDir, filepath.FromSlash(OwnProfile))
	changed, err = fsutil.WriteManaged(path, data, 0o644)
	return path, changed, err
}
