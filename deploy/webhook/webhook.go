// Package webhook binds pods to their merged profiles: a mutating admission
// webhook that sets securityContext.seccompProfile {type: Localhost,
// localhostProfile: kubearmor/<namespace>/<profile>.json} on every container
// that policies select, with the same profile names the agent writes. It
// never overwrites a profile the user set; it says so in a warning.
package webhook

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/deploy/agent"
	"github.com/kubearmor/kscmp/merge"
)

// PolicySource gives the valid pod policies of a namespace.
type PolicySource interface {
	Policies(namespace string) []*api.KubeArmorSeccompPolicy
}

// Versioned is a PolicySource that can tell whether its policies changed
// (agent.PolicyCache): the Handler then indexes a namespace's policies once
// per change, not once per pod.
type Versioned interface {
	Changes() uint64
}

// Handler serves /mutate-pods (AdmissionReview v1) and /readyz.
type Handler struct {
	Policies PolicySource
	Logger   *slog.Logger

	mu   sync.Mutex
	sets map[string]cachedSet // namespace → its indexed policies
}

type cachedSet struct {
	version uint64
	set     *merge.Set
}

// set is the namespace's policies, indexed. With 1,000 policies in a
// namespace, converting and indexing them is most of an admission's time;
// a Set is read-only, so one serves every request until a policy changes.
func (h *Handler) set(ns string) *merge.Set {
	v, ok := h.Policies.(Versioned)
	if !ok {
		return merge.NewSet(h.Policies.Policies(ns))
	}
	before := v.Changes()
	h.mu.Lock()
	c, hit := h.sets[ns]
	h.mu.Unlock()
	if hit && c.version == before {
		return c.set
	}
	set := merge.NewSet(h.Policies.Policies(ns))
	h.mu.Lock()
	if h.sets == nil {
		h.sets = map[string]cachedSet{}
	}
	// Kept under the version read before the policies were: a change
	// meanwhile makes the next request index again.
	h.sets[ns] = cachedSet{version: before, set: set}
	h.mu.Unlock()
	return set
}

type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Mutate answers one admission request for a pod.
func (h *Handler) Mutate(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create {
		return resp
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		// Never block a pod because of the webhook: allow, and say why.
		resp.Warnings = []string{"kscmp: pod not decoded, no seccomp profile set: " + err.Error()}
		return resp
	}
	ns := req.Namespace
	set := h.set(ns)
	var ops []patchOp
	var warnings []string
	podLevel := pod.Spec.SecurityContext != nil && pod.Spec.SecurityContext.SeccompProfile != nil
	for _, group := range []struct {
		field      string
		containers []corev1.Container
	}{{"initContainers", pod.Spec.InitContainers}, {"containers", pod.Spec.Containers}} {
		for i, c := range group.containers {
			rs, err := set.Merge(merge.Target{Namespace: ns, Labels: pod.Labels, Container: c.Name})
			if err != nil || rs.Empty() {
				continue
			}
			path := agent.ProfilePath(ns, agent.ProfileName(rs.Policies))
			if podLevel || (c.SecurityContext != nil && c.SecurityContext.SeccompProfile != nil) {
				warnings = append(warnings, fmt.Sprintf("kscmp: container %s has a seccomp profile set explicitly; left as it is (policies would give %s)", c.Name, path))
				continue
			}
			profile := &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: &path}
			base := fmt.Sprintf("/spec/%s/%d/securityContext", group.field, i)
			if c.SecurityContext == nil {
				ops = append(ops, patchOp{Op: "add", Path: base, Value: corev1.SecurityContext{SeccompProfile: profile}})
			} else {
				ops = append(ops, patchOp{Op: "add", Path: base + "/seccompProfile", Value: profile})
			}
		}
	}
	resp.Warnings = warnings
	if len(ops) > 0 {
		patch, err := json.Marshal(ops)
		if err != nil {
			resp.Warnings = append(resp.Warnings, "kscmp: "+err.Error())
			return resp
		}
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = patch, &pt
	}
	return resp
}

// ServeHTTP handles AdmissionReview requests on /mutate-pods and readiness
// on /readyz.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/readyz":
		w.WriteHeader(http.StatusOK)
		return
	case "/mutate-pods":
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
		return
	}
	out := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Response: h.Mutate(review.Request),
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(out); err != nil && h.Logger != nil {
		h.Logger.Warn("webhook: write response", "error", err)
	}
}
