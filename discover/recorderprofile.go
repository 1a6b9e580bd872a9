package discover

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"runtime"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/internal/fsutil"
	"github.com/kubearmor/kscmp/merge"
)

//go:generate go run ./internal/genrecorderprofile

// The node recorder's own seccomp profile: the recorder pod's container runs
// under it (seccompProfile Localhost RecorderProfileName()), and the pod's
// init container writes it first (`kscmp discover --recorder-profile DIR`),
// since the kubelet does not start a container whose profile file is
// missing. The policy (recorderprofile/kscmp-recorder-policy.yaml, reviewed,
// its comments say how it was measured) is compiled by `make generate` into
// one OCI profile per family (recorderprofile/<family>.json), which the
// binary embeds: the profile a node gets does not depend on the merger of
// the binary that writes it, and a review sees the exact file.
const (
	RecorderNamespace = "kscmp-system"
	RecorderName      = "kscmp-recorder"
	// RecorderContainer is the recorder's container in its pod.
	RecorderContainer = "recorder"
)

// RecorderCapabilities are the capabilities the recorder pod's container
// adds after dropping ALL, in the securityContext's form (no CAP_ prefix):
// the minimum TestRecorderInContainer proves sufficient, each one necessary
// (docs/architecture.md, "The recorder pod"). A new slice each call.
func RecorderCapabilities() []string { return []string{"BPF", "PERFMON"} }

var (
	//go:embed recorderprofile/kscmp-recorder-policy.yaml
	recorderPolicyYAML []byte
	//go:embed recorderprofile/amd64.json
	recorderProfileAMD64 []byte
	//go:embed recorderprofile/arm64.json
	recorderProfileARM64 []byte
)

// RecorderPolicy returns the recorder's own policy, parsed and validated.
func RecorderPolicy() (*api.KubeArmorSeccompPolicy, error) {
	docs, err := api.Parse(bytes.NewReader(recorderPolicyYAML), "kscmp-recorder-policy.yaml")
	if err != nil {
		return nil, fmt.Errorf("the recorder's own policy: %w", err)
	}
	if len(docs) != 1 || docs[0].Policy.Key() != RecorderNamespace+"/"+RecorderName {
		return nil, fmt.Errorf("the recorder's own policy kscmp-recorder-policy.yaml: want one policy %s/%s, got %d documents", RecorderNamespace, RecorderName, len(docs))
	}
	return docs[0].Policy, nil
}

// CompileRecorderProfile compiles the recorder's policy for a node of the
// family with the shared merger, as the agent's own profile is compiled
// (deploy/agent.OwnProfileJSON): plus the start-up sets of every runtime
// kscmp knows (merge.RuntimeAny), and without the calls the family's ABIs do
// not have. `make generate` writes its output to recorderprofile/.
func CompileRecorderProfile(family api.Family) ([]byte, error) {
	p, err := RecorderPolicy()
	if err != nil {
		return nil, err
	}
	return merge.ComponentProfile(p, family, RecorderContainer, "the recorder")
}

// RecorderProfileJSON returns the embedded profile of the family.
func RecorderProfileJSON(family api.Family) ([]byte, error) {
	switch family {
	case api.FamilyAMD64:
		return bytes.Clone(recorderProfileAMD64), nil
	case api.FamilyARM64:
		return bytes.Clone(recorderProfileARM64), nil
	}
	return nil, fmt.Errorf("the recorder's own profile: unknown architecture family %q (want amd64 or arm64)", family)
}

// RecorderProfileName is the path of the recorder's own profile under the
// kubelet's seccomp directory, the same on every node of any family:
// kscmp/recorder-<the first 12 hex digits of the sha256 of both families'
// profiles>.json. A new profile is a new name, so a recorder pod never runs
// under an older binary's profile left on the node, and a node's file is
// never rewritten under a running recorder. It needs no kernel and no eBPF:
// the collector calls it on a workstation.
func RecorderProfileName() string {
	h := sha256.New()
	h.Write(recorderProfileAMD64)
	h.Write([]byte{0})
	h.Write(recorderProfileARM64)
	return "kscmp/recorder-" + hex.EncodeToString(h.Sum(nil))[:12] + ".json"
}

// WriteRecorderProfile writes this node's family's profile (the binary's
// own architecture: the image is the node's) to dir/RecorderProfileName():
// atomically, and not at all when it is there already. It returns the
// file's path and whether it was written.
func WriteRecorderProfile(dir string) (path string, changed bool, err error) {
	data, err := RecorderProfileJSON(api.Family(runtime.GOARCH))
	if err != nil {
		return "", false, err
	}
	path = filepath.Join(dir, filepath.FromSlash(RecorderProfileName()))
	changed, err = fsutil.WriteManaged(path, data, 0o644)
	return path, changed, err
}
