package api

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Group, Version, Kind and the names under which the policy is served.
const (
	Group     = "security.kubearmor.com"
	Version   = "v1"
	Kind      = "KubeArmorSeccompPolicy"
	ListKind  = "KubeArmorSeccompPolicyList"
	Plural    = "kubearmorseccomppolicies"
	Singular  = "kubearmorseccomppolicy"
	ShortName = "kscmp"
)

// APIVersion is the apiVersion string of a policy in the CRD form.
const APIVersion = Group + "/" + Version

// KubeArmorSeccompPolicy selects workloads and says which system calls they
// may or may not make.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=kscmp,scope=Namespaced,categories=kubearmor
// +kubebuilder:printcolumn:name="Severity",type=integer,JSONPath=`.spec.severity`
// +kubebuilder:printcolumn:name="Action",type=string,JSONPath=`.spec.seccomp.action`
// +kubebuilder:printcolumn:name="Installed",type=integer,JSONPath=`.status.nodes`,description="nodes whose profiles use the current generation"
// +kubebuilder:printcolumn:name="Of",type=integer,JSONPath=`.status.selectedNodes`,description="nodes on which it selects a container"
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.failedNodes`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type KubeArmorSeccompPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   PolicySpec   `json:"spec"`
	Status PolicyStatus `json:"status,omitempty"`
}

// KubeArmorSeccompPolicyList is a list of policies.
//
// +kubebuilder:object:root=true
type KubeArmorSeccompPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []KubeArmorSeccompPolicy `json:"items"`
}

// PolicySpec is what a policy asks for.
type PolicySpec struct {
	// Severity ranks the policy for people and alerts, from 1 (low) to 10.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10
	// +optional
	Severity int `json:"severity,omitempty"`

	// Selector chooses the pods the policy applies to, by their labels.
	Selector Selector `json:"selector"`

	// Containers, when given, limits the policy to containers of these
	// names inside the selected pods.
	// +listType=set
	// +optional
	Containers []string `json:"containers,omitempty"`

	// Seccomp holds the architectures and the system call rules.
	Seccomp SeccompSpec `json:"seccomp"`
}

// Selector chooses the workloads a policy applies to: pods by their labels
// (MatchLabels and MatchExpressions, all of which must match), or workloads
// that run on a host without Kubernetes (SystemdUnits, ContainerNames, any
// of which may match). A selector selects pods or host workloads, not both.
//
// +kubebuilder:validation:XValidation:rule="has(self.matchLabels) || has(self.matchExpressions) || has(self.systemdUnits) || has(self.containerNames)",message="a policy must select workloads by matchLabels, matchExpressions, systemdUnits or containerNames"
// +kubebuilder:validation:XValidation:rule="!((has(self.matchLabels) || has(self.matchExpressions)) && (has(self.systemdUnits) || has(self.containerNames)))",message="a selector selects pods (matchLabels, matchExpressions) or host workloads (systemdUnits, containerNames), not both"
type Selector struct {
	// MatchLabels is a map of label keys and the values they must have.
	// +optional
	MatchLabels map[string]string `json:"matchLabels,omitempty"`

	// MatchExpressions are label selector requirements, as in a Kubernetes
	// LabelSelector.
	// +optional
	MatchExpressions []metav1.LabelSelectorRequirement `json:"matchExpressions,omitempty"`

	// SystemdUnits selects systemd services on hosts, by unit name
	// ("nginx.service"; "nginx" means "nginx.service").
	// +optional
	// +listType=set
	SystemdUnits []string `json:"systemdUnits,omitempty"`

	// ContainerNames selects containers that run without Kubernetes, by
	// name: docker's or podman's container name, runc's or crun's
	// container id.
	// +optional
	// +listType=set
	ContainerNames []string `json:"containerNames,omitempty"`
}

// Host reports whether the selector selects host workloads (systemd units,
// plain containers) rather than pods.
func (s *Selector) Host() bool { return len(s.SystemdUnits) > 0 || len(s.ContainerNames) > 0 }

// SeccompSpec holds the rules: either Syscalls with Action (one group) or
// Rules (several groups), not both.
//
// +kubebuilder:validation:XValidation:rule="(has(self.syscalls) && has(self.action) && !has(self.rules)) || (has(self.rules) && !has(self.syscalls) && !has(self.action))",message="give either syscalls with action, or rules, not both"
// +kubebuilder:validation:XValidation:rule="!has(self.defaultAction) || (has(self.action) && self.action == 'Allow') || (has(self.rules) && self.rules.exists(r, r.action == 'Allow'))",message="defaultAction needs an allow-list: an Allow rule"
type SeccompSpec struct {
	// Arch lists the system call ABIs the profile covers. When empty, the
	// node's family is used (amd64: x86_64, x86, x32; arm64: aarch64, arm).
	// +optional
	Arch []Arch `json:"arch,omitempty"`

	// Syscalls is one group of system call names sharing Action.
	// +kubebuilder:validation:MinItems=1
	// +optional
	Syscalls []string `json:"syscalls,omitempty"`

	// Action applies to Syscalls.
	// +optional
	Action Action `json:"action,omitempty"`

	// Rules are several groups of system calls, each with its action.
	// +kubebuilder:validation:MinItems=1
	// +optional
	Rules []Rule `json:"rules,omitempty"`

	// DefaultAction is what happens to the system calls the policy's
	// allow-list does not allow: Block (the default, EPERM) or Audit
	// (complain mode: the call runs and is logged). It needs an Allow rule.
	// Kill is not offered: a recording is never complete, and one missing
	// call would kill the workload with no error it could handle.
	// +kubebuilder:validation:XValidation:rule="self in ['Block', 'Deny', 'Audit']",message="defaultAction is Block or Audit (Kill is only for named system calls)"
	// +optional
	DefaultAction Action `json:"defaultAction,omitempty"`
}

// DefaultActions are the values spec.seccomp.defaultAction may take (Deny
// is Block's synonym here too).
var DefaultActions = [...]Action{ActionBlock, ActionDeny, ActionAudit}

// AllowsAny reports whether the policy has an Allow rule, i.e. is an
// allow-list.
func (s *SeccompSpec) AllowsAny() bool {
	for _, r := range s.AllRules() {
		if r.Action.Canonical() == ActionAllow {
			return true
		}
	}
	return false
}

// EffectiveDefault is what the policy does to the system calls it does not
// name: an allow-list's DefaultAction (Block when not given), a deny-list's
// Allow. The merger takes the strongest over the selecting policies.
func (s *SeccompSpec) EffectiveDefault() Action {
	if !s.AllowsAny() {
		return ActionAllow
	}
	if s.DefaultAction == "" {
		return ActionBlock
	}
	return s.DefaultAction.Canonical()
}

// Rule is one group of system calls and the action taken when they are made.
type Rule struct {
	// Syscalls are system call names.
	// +kubebuilder:validation:MinItems=1
	Syscalls []string `json:"syscalls"`
	// Action is taken when one of Syscalls is made.
	Action Action `json:"action"`
	// Args, when given, limit the rule to calls whose arguments satisfy
	// every condition (at most one per argument index). Other rules may
	// name the same calls with other conditions and actions.
	// +kubebuilder:validation:MaxItems=6
	// +listType=map
	// +listMapKey=index
	// +optional
	Args []ArgCondition `json:"args,omitempty"`
}

// PolicyStatus is written by one aggregator (leader-elected) from the
// agents' per-node objects (KubeArmorSeccompNodeStatus). Its size does not
// depend on the number of nodes: counts, and at most MaxFailures failing
// nodes. See docs/architecture.md, "Status at scale".
type PolicyStatus struct {
	// Nodes is the number of nodes whose profiles are made with the
	// policy's current generation (installed).
	// +optional
	Nodes int32 `json:"nodes,omitempty"`
	// SelectedNodes is the number of nodes on which the policy selects a
	// container: installed (Nodes), still on an older generation, or
	// failed. "Installed on Nodes of SelectedNodes."
	// +optional
	SelectedNodes int32 `json:"selectedNodes,omitempty"`
	// FailedNodes is the number of nodes whose agent failed to install the
	// policy's profiles.
	// +optional
	FailedNodes int32 `json:"failedNodes,omitempty"`
	// Failures are up to MaxFailures failing nodes, by node name, with why.
	// +optional
	// +listType=map
	// +listMapKey=node
	// +kubebuilder:validation:MaxItems=10
	Failures []NodeFailure `json:"failures,omitempty"`
	// InstalledNodes is deprecated (removed in the next release): the
	// installed nodes' names while there are at most MaxFailures of them,
	// else empty. Read Nodes.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=10
	InstalledNodes []string `json:"installedNodes,omitempty"`
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions describe the policy's state (Accepted, Installed).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Violations are the system calls that containers under the policy's
	// profiles made and that seccomp refused (Block, Kill) or logged
	// (Audit, complain mode), summed over the nodes since their agents
	// started: at most MaxViolations lines, the largest counts first
	// (then by call and action). Written at most once per violation
	// interval.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	Violations []PolicyViolation `json:"violations,omitempty"`
}

// MaxFailures bounds the lists of node names in a policy's status.
const MaxFailures = 10

// MaxViolations bounds the violation lines of a policy's status and of a
// policy's entry in a node status.
const MaxViolations = 10

// PolicyViolation is one system call and action seccomp took on it, under
// the profiles a policy is part of.
type PolicyViolation struct {
	// Syscall is the system call's name.
	Syscall string `json:"syscall"`
	// Action is what seccomp did: Block, Kill or Audit (logged and run).
	Action string `json:"action"`
	// Count is how many times, summed over the nodes.
	Count int64 `json:"count"`
	// LastSeen is the latest time one was seen, on any node.
	// +optional
	LastSeen metav1.Time `json:"lastSeen,omitempty"`
	// Nodes is the number of nodes it was seen on (absent in a node
	// status).
	// +optional
	Nodes int32 `json:"nodes,omitempty"`
}

// NodeFailure is one node on which a policy's profiles could not be
// installed.
type NodeFailure struct {
	// Node is the node's name.
	Node string `json:"node"`
	// Message says why, as the node's agent reported it.
	// +optional
	Message string `json:"message,omitempty"`
}

// Names of the per-node status resource.
const (
	NodeStatusKind     = "KubeArmorSeccompNodeStatus"
	NodeStatusListKind = "KubeArmorSeccompNodeStatusList"
	NodeStatusPlural   = "kubearmorseccompnodestatuses"
)

// KubeArmorSeccompNodeStatus is what one node's agent installed: one object
// per node, named after it, written only by that node's agent (server-side
// apply, once per reconcile that changed something). The aggregator
// summarises all of them into the policies' status; agents never watch
// them.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=kscmpnode,scope=Cluster,categories=kubearmor
// +kubebuilder:printcolumn:name="Policies",type=integer,JSONPath=`.installed`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type KubeArmorSeccompNodeStatus struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Installed is the number of entries in Policies without an error.
	// +optional
	Installed int32 `json:"installed,omitempty"`
	// Policies are the policies some profile on the node is made of.
	// +optional
	// +listType=map
	// +listMapKey=policy
	Policies []NodePolicy `json:"policies,omitempty"`
}

// NodePolicy is one policy on one node.
type NodePolicy struct {
	// Policy is "namespace/name".
	Policy string `json:"policy"`
	// Generation is the policy's generation the node's profiles are made
	// with.
	// +optional
	Generation int64 `json:"generation,omitempty"`
	// Error is why the node's profiles could not be written, if they
	// could not.
	// +optional
	Error string `json:"error,omitempty"`
	// Violations are the calls refused or logged on this node under the
	// profiles the policy is part of, since the agent started: at most
	// MaxViolations lines, the largest counts first. Updated at most once
	// per violation interval.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	Violations []PolicyViolation `json:"violations,omitempty"`
}

// KubeArmorSeccompNodeStatusList is a list of node statuses.
//
// +kubebuilder:object:root=true
type KubeArmorSeccompNodeStatusList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []KubeArmorSeccompNodeStatus `json:"items"`
}

// Action is what happens when a selected workload makes a system call.
//
// +kubebuilder:validation:Enum=Allow;Audit;Block;Deny;Kill
type Action string

// The actions, from the weakest to the strongest. Deny is a synonym of Block.
const (
	ActionAllow Action = "Allow" // the call runs (SCMP_ACT_ALLOW)
	ActionAudit Action = "Audit" // the call runs and is logged (SCMP_ACT_LOG)
	ActionBlock Action = "Block" // the call fails with EPERM (SCMP_ACT_ERRNO)
	ActionDeny  Action = "Deny"  // synonym of Block
	ActionKill  Action = "Kill"  // the process is killed (SCMP_ACT_KILL_PROCESS)
)

// Actions lists the valid actions in the order of their precedence, weakest
// first (Deny, Block's synonym, is not listed).
var Actions = [...]Action{ActionAllow, ActionAudit, ActionBlock, ActionKill}

// Canonical returns the action with synonyms resolved (Deny → Block).
func (a Action) Canonical() Action {
	if a == ActionDeny {
		return ActionBlock
	}
	return a
}

// Valid reports whether a is one of the known actions.
func (a Action) Valid() bool {
	switch a {
	case ActionAllow, ActionAudit, ActionBlock, ActionDeny, ActionKill:
		return true
	}
	return false
}

// Precedence ranks actions when several policies name one system call: the
// higher wins (Kill > Block > Audit > Allow). Unknown actions rank 0.
func (a Action) Precedence() int {
	switch a.Canonical() {
	case ActionAllow:
		return 1
	case ActionAudit:
		return 2
	case ActionBlock:
		return 3
	case ActionKill:
		return 4
	}
	return 0
}

// SeccompAction returns the OCI seccomp action of a ("SCMP_ACT_…"), or "" for
// an unknown action.
func (a Action) SeccompAction() string {
	switch a.Canonical() {
	case ActionAllow:
		return "SCMP_ACT_ALLOW"
	case ActionAudit:
		return "SCMP_ACT_LOG"
	case ActionBlock:
		return "SCMP_ACT_ERRNO"
	case ActionKill:
		return "SCMP_ACT_KILL_PROCESS"
	}
	return ""
}

// ActionFromSeccomp is the inverse of Action.SeccompAction. It reports false
// for actions kscmp does not produce.
func ActionFromSeccomp(s string) (Action, bool) {
	for _, a := range Actions {
		if a.SeccompAction() == s {
			return a, true
		}
	}
	if s == "SCMP_ACT_KILL" || s == "SCMP_ACT_KILL_THREAD" {
		return ActionKill, true
	}
	return "", false
}

// AllRules returns the policy's rules in one shape: the Syscalls/Action group
// (if any) first, then Rules. The slices are shared with the policy.
func (s *SeccompSpec) AllRules() []Rule {
	if len(s.Syscalls) == 0 && s.Action == "" {
		return s.Rules
	}
	out := make([]Rule, 0, 1+len(s.Rules))
	out = append(out, Rule{Syscalls: s.Syscalls, Action: s.Action})
	return append(out, s.Rules...)
}

// Key returns "namespace/name", the policy's identity.
func (p *KubeArmorSeccompPolicy) Key() string {
	return p.Namespace + "/" + p.Name
}
