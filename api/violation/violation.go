// Package violation is the violation report: what seccomp enforcement
// refused (Block, Kill) or logged (Audit) on a node or host, per workload,
// system call, ABI and action, with counts. `kscmp violations` writes it and
// `kscmp recommend --from` reads it to widen reviewed policies.
//
// Like package report, it imports no eBPF or netlink code: a reader of
// violation reports (the recommender) does not link the monitor.
package violation

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/internal/fsutil"
)

// The report's version and kind.
const (
	APIVersion = "kscmp/v1"
	Kind       = "ViolationReport"
)

// The actions a violation can have: the policy's names for what seccomp did.
// Block is SECCOMP_RET_ERRNO, Kill SECCOMP_RET_KILL_PROCESS or _THREAD,
// Audit SECCOMP_RET_LOG. Trap and Trace are never written by kscmp's
// profiles, but other profiles may use them and the kernel logs them.
const (
	ActionAudit = "Audit"
	ActionBlock = "Block"
	ActionKill  = "Kill"
	ActionTrap  = "Trap"
	ActionTrace = "Trace"
	// ActionNotify is SECCOMP_RET_USER_NOTIF: a supervisor decides.
	ActionNotify = "Notify"
)

// Actions lists the valid actions.
var Actions = [...]string{ActionAudit, ActionBlock, ActionKill, ActionTrap, ActionTrace, ActionNotify}

// Report is what `kscmp violations` writes.
type Report struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Node is the host name; Kernel its release; Arch its machine name.
	Node   string `json:"node"`
	Kernel string `json:"kernel"`
	Arch   string `json:"arch"`
	// Source names where the records came from ("audit": the audit
	// netlink multicast group).
	Source string `json:"source,omitempty"`
	// Start and End bound the monitoring.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Violations are sorted by identity, ABI, system call and action.
	Violations []Violation `json:"violations"`
	// Lost counts what the monitor could not record; all zero means the
	// report is complete.
	Lost Lost `json:"lost"`
	// Nodes is set in a report collected from a cluster's agents (kscmp
	// violations --cluster): one entry per agent asked, sorted by node,
	// saying whether its report is in this one. Node is then empty and
	// Lost the sum of the collected nodes'.
	Nodes []Node `json:"nodes,omitempty"`
}

// Node is one agent's part of a report collected from a cluster.
type Node struct {
	// Name is the node's name; Agent the agent pod asked.
	Name  string `json:"name"`
	Agent string `json:"agent"`
	// Collected is true when the agent's report is in this one; else Error
	// says why not.
	Collected bool   `json:"collected"`
	Error     string `json:"error,omitempty"`
	// Start is when the agent began watching: its counts cover Start to
	// the report's End.
	Start time.Time `json:"start,omitzero"`
	// Violations is the number of entries it gave; Lost its counters.
	Violations int  `json:"violations"`
	Lost       Lost `json:"lost"`
}

// Violation is one (workload, system call, ABI, action) and how often
// enforcement decided it.
type Violation struct {
	Identity report.Identity `json:"identity"`
	// Syscall is the name from ABI's table; "" when the table has no name
	// for Number.
	Syscall string `json:"syscall,omitempty"`
	// Number is the system call number in ABI's table.
	Number int `json:"number"`
	// ABI is the table's name (x86_64, i386, x32, aarch64, arm).
	ABI string `json:"abi"`
	// Action is what seccomp did (see Actions).
	Action string `json:"action"`
	// Count is how many records of it were read. (The kernel's record
	// carries the action, not its data: a Block's errno is not known here;
	// kscmp's profiles always return EPERM.)
	Count uint64 `json:"count"`
	// FirstSeen and LastSeen are the first and last record's times.
	FirstSeen time.Time `json:"firstSeen"`
	LastSeen  time.Time `json:"lastSeen"`
	// Profile is the profile that decided it when known: the pod's
	// seccompProfile, a systemd unit's drop-in, a profile file.
	Profile string `json:"profile,omitempty"`
}

// Lost counts what a monitoring could not record.
type Lost struct {
	// Audit counts times the monitor's socket buffer overflowed (ENOBUFS):
	// the kernel dropped at least one record each time.
	Audit uint64 `json:"audit"`
	// Kernel is how much the kernel's own audit "lost" counter grew while
	// the monitor ran (its backlog or rate limit overflowed): records of
	// every type, seccomp's among them.
	Kernel uint64 `json:"kernel"`
	// Overflow counts records not kept because the monitor already held
	// as many distinct entries as it may (their count is not in any
	// entry).
	Overflow uint64 `json:"overflow"`
	// Unparsed counts seccomp records the monitor could not read.
	Unparsed uint64 `json:"unparsed"`
	// Unattributed counts records whose process was gone before it could
	// be named; they are reported under a process identity with the
	// record's executable.
	Unattributed uint64 `json:"unattributed"`
}

// Total sums the counters that mean a violation may be missing.
func (l Lost) Total() uint64 { return l.Audit + l.Kernel + l.Overflow + l.Unparsed }

// Plus returns the counters of l and o summed.
func (l Lost) Plus(o Lost) Lost {
	return Lost{Audit: l.Audit + o.Audit, Kernel: l.Kernel + o.Kernel, Overflow: l.Overflow + o.Overflow,
		Unparsed: l.Unparsed + o.Unparsed, Unattributed: l.Unattributed + o.Unattributed}
}

// New returns an empty report of this version and kind.
func New() *Report {
	return &Report{APIVersion: APIVersion, Kind: Kind, Violations: []Violation{}}
}

// Key groups violations: equal keys are one entry.
func (v *Violation) Key() string {
	return strings.Join([]string{v.Identity.Key(), v.ABI, fmt.Sprintf("%08d", v.Number), v.Action}, "\x00")
}

// Merge adds v, an entry with the same key, into e: the counts summed, the
// time span widened, e's profile kept when it has one.
func (e *Violation) Merge(v Violation) {
	e.Count += v.Count
	if !v.FirstSeen.IsZero() && (e.FirstSeen.IsZero() || v.FirstSeen.Before(e.FirstSeen)) {
		e.FirstSeen = v.FirstSeen
	}
	if v.LastSeen.After(e.LastSeen) {
		e.LastSeen = v.LastSeen
	}
	e.Profile = cmp.Or(e.Profile, v.Profile)
}

// Add merges v into the report: an entry with the same key gets the sum of
// the counts and the widest time span.
func (r *Report) Add(v Violation) {
	k := v.Key()
	for i := range r.Violations {
		e := &r.Violations[i]
		if e.Key() != k {
			continue
		}
		e.Merge(v)
		return
	}
	r.Violations = append(r.Violations, v)
}

// Union merges reports (each valid) into one: entries with equal keys
// summed as Add does, the lost counters summed, Start the earliest and End
// the latest. It takes time linear in the entries, where Add, one at a
// time, is quadratic. Node, Kernel, Arch and Source are kept when every
// report agrees, else left empty; Nodes is left to the caller.
func Union(reports ...*Report) *Report {
	out := New()
	index := map[string]int{}
	for i, r := range reports {
		if i == 0 {
			out.Node, out.Kernel, out.Arch, out.Source = r.Node, r.Kernel, r.Arch, r.Source
		}
		out.Node, out.Kernel = agree(out.Node, r.Node), agree(out.Kernel, r.Kernel)
		out.Arch, out.Source = agree(out.Arch, r.Arch), agree(out.Source, r.Source)
		if !r.Start.IsZero() && (out.Start.IsZero() || r.Start.Before(out.Start)) {
			out.Start = r.Start
		}
		if r.End.After(out.End) {
			out.End = r.End
		}
		out.Lost = out.Lost.Plus(r.Lost)
		for _, v := range r.Violations {
			k := v.Key()
			j, ok := index[k]
			if !ok {
				index[k] = len(out.Violations)
				out.Violations = append(out.Violations, v)
				continue
			}
			out.Violations[j].Merge(v)
		}
	}
	out.Sort()
	return out
}

// agree is a when b is equal to it, else "".
func agree(a, b string) string {
	if a == b {
		return a
	}
	return ""
}

// Sort orders the violations, for deterministic output.
func (r *Report) Sort() {
	// Each key built once, not twice per comparison: a cluster's union
	// sorts 100,000 entries.
	type keyed struct {
		key string
		v   Violation
	}
	ks := make([]keyed, len(r.Violations))
	for i, v := range r.Violations {
		ks[i] = keyed{v.Key(), v}
	}
	slices.SortFunc(ks, func(a, b keyed) int { return cmp.Compare(a.key, b.key) })
	for i := range ks {
		r.Violations[i] = ks[i].v
	}
}

// Marshal returns the report as indented JSON, violations sorted, with a
// trailing newline: equal reports are equal bytes.
func (r *Report) Marshal() ([]byte, error) {
	r.Sort()
	if r.Violations == nil {
		r.Violations = []Violation{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, fmt.Errorf("encode violation report: %w", err)
	}
	return buf.Bytes(), nil
}

// WriteFile writes the report (as Marshal makes it) to path: atomically, and
// not at all when path already holds these bytes. It reports whether the
// file changed.
func (r *Report) WriteFile(path string) (changed bool, err error) {
	data, err := r.Marshal()
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return fsutil.WriteFile(path, data, 0o644)
}
