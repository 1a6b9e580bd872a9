package cluster

import (
	"maps"
	"slices"
	"strings"

	"github.com/kubearmor/kscmp/api/report"
)

// Union merges nodes' reports into one, as they arrive: per workload the
// union over its replicas and nodes. Pods of one namespace with the same
// owner and container are one workload (Identity.Pod empty, Workload.Pods
// and Workload.Nodes the contributors); a pod without an owner stays one
// workload of its own; anything that is not a pod (never expected from a
// recorder) is merged by its identity's key, as Report.Add does. It is indexed by key, so adding a report costs
// its size, and it holds one entry per distinct workload: its memory does
// not grow with the number of nodes, only with the contributors' names.
type Union struct {
	run     string
	idx     map[string]*entry
	headers map[string]map[string]bool // kernel, arch, hook → values seen
	rep     report.Report              // Start, End, Lost
	calls   int
}

type entry struct {
	w           report.Workload
	nodes, pods map[string]bool
}

// NewUnion returns an empty union for run.
func NewUnion(run string) *Union {
	return &Union{run: run, idx: map[string]*entry{},
		headers: map[string]map[string]bool{"kernel": {}, "arch": {}, "hook": {}}}
}

// Len is the number of distinct workloads; Calls the number of distinct
// (workload, ABI, system call).
func (u *Union) Len() int   { return len(u.idx) }
func (u *Union) Calls() int { return u.calls }

// Add merges node's report. The report is not kept (its slices may be).
func (u *Union) Add(node string, r *report.Report) {
	u.headers["kernel"][r.Kernel] = true
	u.headers["arch"][r.Arch] = true
	u.headers["hook"][r.Hook] = true
	if !r.Start.IsZero() && (u.rep.Start.IsZero() || r.Start.Before(u.rep.Start)) {
		u.rep.Start = r.Start
	}
	if r.End.After(u.rep.End) {
		u.rep.End = r.End
	}
	addLost(&u.rep.Lost, r.Lost)
	for _, w := range r.Workloads {
		u.add(node, w)
	}
}

// add merges one workload of node's report.
func (u *Union) add(node string, w report.Workload) {
	id := w.Identity
	key, pod := unionKey(node, id)
	e := u.idx[key]
	if e == nil {
		if id.Kind == report.KindPod && id.Owner != nil {
			// The replicas' union: nothing that names one pod or
			// container instance.
			id.Pod, id.PodUID, id.ContainerID, id.Cgroup, id.Exe = "", "", "", "", ""
		}
		e = &entry{w: report.Workload{Identity: id, Syscalls: map[string][]string{}, Args: w.Args, FirstSeen: w.FirstSeen, LastSeen: w.LastSeen},
			nodes: map[string]bool{}, pods: map[string]bool{}}
		u.idx[key] = e
	} else {
		// Before the calls: a call one side made without recorded
		// arguments makes the union's "any arguments".
		e.w.MergeArgs(w)
		e.w.Identity.Labels = common(e.w.Identity.Labels, id.Labels)
		if e.w.Identity.Runtime != id.Runtime {
			e.w.Identity.Runtime = ""
		}
		if !w.FirstSeen.IsZero() && (e.w.FirstSeen.IsZero() || w.FirstSeen.Before(e.w.FirstSeen)) {
			e.w.FirstSeen = w.FirstSeen
		}
		if w.LastSeen.After(e.w.LastSeen) {
			e.w.LastSeen = w.LastSeen
		}
	}
	e.nodes[node] = true
	if pod != "" {
		e.pods[pod] = true
	}
	for abi, names := range w.Syscalls {
		before := len(e.w.Syscalls[abi])
		e.w.Syscalls[abi] = sortedUnion(e.w.Syscalls[abi], names)
		u.calls += len(e.w.Syscalls[abi]) - before
	}
	for abi, nrs := range w.Unknown {
		if e.w.Unknown == nil {
			e.w.Unknown = map[string][]int{}
		}
		e.w.Unknown[abi] = sortedUnion(e.w.Unknown[abi], nrs)
	}
}

// unionKey is the workload's key in the union, and the pod it names.
func unionKey(node string, id report.Identity) (key, pod string) {
	switch {
	case id.Kind == report.KindPod && id.Owner != nil:
		return strings.Join([]string{"owned", id.Namespace, id.Owner.Kind, id.Owner.Name, id.Container}, "\x00"), id.Pod
	case id.Kind == report.KindPod:
		return "pod\x00" + id.Key(), id.Pod
	}
	return "other\x00" + id.Key(), ""
}

// Report returns the union as a report of the run with coverage as its
// Nodes. Kernel, Arch and Hook are the nodes' when they all agree, else
// empty.
func (u *Union) Report(coverage []report.NodeCoverage) *report.Report {
	r := report.New()
	r.Run, r.Start, r.End, r.Lost = u.run, u.rep.Start, u.rep.End, u.rep.Lost
	r.Kernel, r.Arch, r.Hook = only(u.headers["kernel"]), only(u.headers["arch"]), only(u.headers["hook"])
	r.Nodes = slices.Clone(coverage)
	for _, e := range u.idx {
		w := e.w
		w.Nodes = slices.Sorted(maps.Keys(e.nodes))
		w.Pods = slices.Sorted(maps.Keys(e.pods))
		r.Workloads = append(r.Workloads, w)
	}
	r.Sort()
	return r
}

// only returns the one non-empty value of set, or "" when there are more.
func only(set map[string]bool) string {
	delete(set, "")
	if len(set) == 1 {
		for v := range set {
			return v
		}
	}
	return ""
}

// common is the labels a and b agree on: the union's labels are those of
// every replica (a rollout's pod-template-hash differs).
func common(a, b map[string]string) map[string]string {
	var out map[string]string
	for k, v := range a {
		if b[k] == v {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

// sortedUnion merges b into a, both sorted and without duplicates
// (b is sorted here first: a report's lists are, a defensive sort is
// cheap); the result reuses neither's backing array.
func sortedUnion[T string | int](a, b []T) []T {
	if !slices.IsSorted(b) {
		b = slices.Clone(b)
		slices.Sort(b)
	}
	out := make([]T, 0, max(len(a), len(b)))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		var v T
		switch {
		case j >= len(b) || (i < len(a) && a[i] < b[j]):
			v, i = a[i], i+1
		case i >= len(a) || b[j] < a[i]:
			v, j = b[j], j+1
		default:
			v, i, j = a[i], i+1, j+1
		}
		if len(out) == 0 || out[len(out)-1] != v {
			out = append(out, v)
		}
	}
	return out
}

func addLost(to *report.Lost, l report.Lost) {
	to.MapFull += l.MapFull
	to.RingBufFull += l.RingBufFull
	to.OutOfRange += l.OutOfRange
	to.StaleMemo += l.StaleMemo
	to.Unattributed += l.Unattributed
}
