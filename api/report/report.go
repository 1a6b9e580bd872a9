// Package report is the observation report: the contract between the stages
// that record what workloads do (kscmp discover on a node today; a cluster
// collector and a violations monitor later) and the stages that read it
// (kscmp recommend). It holds the format (Report, Workload, Identity), its
// one reader and validator, its writer, how an identity is named for people
// and how the report's ABI names map to policy architectures.
//
// The package imports no eBPF code, so a reader of reports (the recommender)
// does not link the kernel loader: like cilium/ebpf keeps its btf and asm
// packages apart from the loader.
package report

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The report's version and kind.
const (
	APIVersion = "kscmp/v1"
	Kind       = "ObservationReport"
)

// Report is what `kscmp discover` writes: per workload, the system calls it
// made, per ABI, with names from that ABI's own table.
type Report struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Node is the host name; Kernel its kernel release; Arch the kernel's
	// machine name (x86_64, aarch64).
	Node   string `json:"node"`
	Kernel string `json:"kernel"`
	Arch   string `json:"arch"`
	// Hook is the kernel hook the recorder used (tp_btf or raw_tp).
	Hook string `json:"hook,omitempty"`
	// Start and End bound the recording.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Workloads are sorted by identity.
	Workloads []Workload `json:"workloads"`
	// Lost counts what the recorder could not record; all zero means the
	// recording is complete.
	Lost Lost `json:"lost"`

	// Run names the cluster recording (kscmp discover --cluster) this
	// report is the result of; empty for a node's own report.
	Run string `json:"run,omitempty"`
	// Nodes says, for a cluster recording, what each node contributed: a
	// node that failed, never started or lost calls is named here, so
	// partial coverage is never silent. Sorted by name.
	Nodes []NodeCoverage `json:"nodes,omitempty"`
}

// NodeCoverage is one node's part in a cluster recording.
type NodeCoverage struct {
	Name string `json:"name"`
	// State is one of the Node* states.
	State string `json:"state"`
	// Pod is the recorder pod that recorded the node.
	Pod string `json:"pod,omitempty"`
	// Workloads is the number of workloads the node's report held.
	Workloads int `json:"workloads"`
	// Lost is what the node's recorder could not record.
	Lost Lost `json:"lost"`
	// Error says why the node's coverage is incomplete.
	Error string `json:"error,omitempty"`
}

// The states of a node in a cluster recording. Only NodeCollected is
// complete coverage, and only with Lost all zero.
const (
	NodeCollected  = "collected"
	NodeFailed     = "failed"
	NodeNotStarted = "not-started"
	NodeIncomplete = "incomplete"
)

// Complete reports whether the node's coverage is complete.
func (n NodeCoverage) Complete() bool {
	return n.State == NodeCollected && n.Lost.Total() == 0
}

// New returns an empty report of this version and kind.
func New() *Report {
	return &Report{APIVersion: APIVersion, Kind: Kind, Workloads: []Workload{}}
}

// Workload is one workload's observations.
type Workload struct {
	Identity Identity `json:"identity"`
	// Syscalls maps an ABI's table name ("x86_64", "i386", "x32",
	// "aarch64", "arm": see ABIName) to the sorted names of the calls made
	// with it.
	Syscalls map[string][]string `json:"syscalls"`
	// Unknown maps an ABI to call numbers its table has no name for.
	Unknown map[string][]int `json:"unknown,omitempty"`
	// Args maps an ABI to the recorded arguments of its calls that open
	// doors (ArgCalls), by call name: see CallArgs. A recorder fills it for
	// the kernel's native ABI only.
	Args map[string]map[string]CallArgs `json:"args,omitempty"`
	// FirstSeen is when its first call was recorded; LastSeen when its set
	// last grew.
	FirstSeen time.Time `json:"firstSeen"`
	LastSeen  time.Time `json:"lastSeen"`

	// Nodes and Pods, in a cluster recording, are the nodes and the pods
	// (names in Identity.Namespace) whose observations this workload's
	// are the union of, sorted. A node's own report leaves them empty.
	Nodes []string `json:"nodes,omitempty"`
	Pods  []string `json:"pods,omitempty"`
}

// Lost counts what a recording could not record.
type Lost struct {
	MapFull     uint64 `json:"mapFull"`
	RingBufFull uint64 `json:"ringBufFull"`
	OutOfRange  uint64 `json:"outOfRange"`
	// StaleMemo counts times the recorder found its per-CPU memo of a
	// task's workload stale (never expected; then calls before it may have
	// been recorded under the task's previous workload).
	StaleMemo uint64 `json:"staleMemo,omitempty"`
	// Unattributed counts workloads whose identity could not be read
	// (their process was gone before its new-key event was read).
	Unattributed uint64 `json:"unattributed"`
}

// Total sums the counters.
func (l Lost) Total() uint64 {
	return l.MapFull + l.RingBufFull + l.OutOfRange + l.StaleMemo + l.Unattributed
}

// Count returns the number of distinct system calls over all ABIs.
func (w *Workload) Count() int {
	n := 0
	for _, names := range w.Syscalls {
		n += len(names)
	}
	return n
}

// Key orders and groups workloads: identities with equal keys are one
// workload. Plain processes are told apart by executable and cgroup;
// containers and units are not (their processes run many executables).
func (id Identity) Key() string {
	exe := ""
	if id.Kind == KindProcess {
		exe = id.Exe + "\x00" + id.Cgroup
	}
	parts := []string{id.Kind, id.Namespace, id.Pod, id.Container, id.ContainerID, id.Unit, exe}
	// A cluster recording's union of a controller's replicas has no pod
	// name: its owner tells it apart from another controller's.
	if id.Pod == "" && id.Owner != nil {
		parts = append(parts, id.Owner.Kind, id.Owner.Name)
	}
	return strings.Join(parts, "\x00")
}

// Add merges w into the report: a workload with the same identity gets the
// union of the calls and the widest time span.
func (r *Report) Add(w Workload) {
	k := w.Identity.Key()
	for i := range r.Workloads {
		if r.Workloads[i].Identity.Key() == k {
			r.Workloads[i].merge(w)
			return
		}
	}
	w.normalize()
	r.Workloads = append(r.Workloads, w)
}

func (w *Workload) merge(o Workload) {
	if w.Syscalls == nil {
		w.Syscalls = map[string][]string{}
	}
	w.mergeArgs(o)
	for abi, names := range o.Syscalls {
		w.Syscalls[abi] = append(w.Syscalls[abi], names...)
	}
	for abi, nrs := range o.Unknown {
		if w.Unknown == nil {
			w.Unknown = map[string][]int{}
		}
		w.Unknown[abi] = append(w.Unknown[abi], nrs...)
	}
	if !o.FirstSeen.IsZero() && (w.FirstSeen.IsZero() || o.FirstSeen.Before(w.FirstSeen)) {
		w.FirstSeen = o.FirstSeen
	}
	if o.LastSeen.After(w.LastSeen) {
		w.LastSeen = o.LastSeen
	}
	if len(w.Identity.Labels) == 0 {
		w.Identity.Labels = o.Identity.Labels
	}
	w.Nodes = append(w.Nodes, o.Nodes...)
	w.Pods = append(w.Pods, o.Pods...)
	w.normalize()
}

// normalize sorts and deduplicates the names and numbers, so equal
// observations are equal bytes.
func (w *Workload) normalize() {
	if w.Syscalls == nil {
		w.Syscalls = map[string][]string{}
	}
	for abi, names := range w.Syscalls {
		slices.Sort(names)
		w.Syscalls[abi] = slices.Compact(names)
	}
	for abi, nrs := range w.Unknown {
		slices.Sort(nrs)
		w.Unknown[abi] = slices.Compact(nrs)
	}
	w.normalizeArgs()
	slices.Sort(w.Nodes)
	w.Nodes = slices.Compact(w.Nodes)
	slices.Sort(w.Pods)
	w.Pods = slices.Compact(w.Pods)
}

// Sort orders the workloads by identity, for deterministic output.
func (r *Report) Sort() {
	slices.SortFunc(r.Nodes, func(a, b NodeCoverage) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(r.Workloads, func(a, b Workload) int {
		return cmp.Compare(a.Identity.Key(), b.Identity.Key())
	})
}

// Marshal returns the report as indented JSON with sorted names and
// workloads and a trailing newline.
func (r *Report) Marshal() ([]byte, error) {
	for i := range r.Workloads {
		r.Workloads[i].normalize()
	}
	r.Sort()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, fmt.Errorf("encode report: %w", err)
	}
	return buf.Bytes(), nil
}
