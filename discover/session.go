package discover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kubearmor/kscmp/api/report"
)

// Filter keeps the workloads a discovery is about. Empty fields match
// everything; all given fields must match.
type Filter struct {
	Namespace string            // Kubernetes namespace
	Selector  map[string]string // pod labels that must all be present
	Container string            // container name (pods) or container id prefix
	Unit      string            // systemd unit, e.g. nginx.service
	Keys      []Key             // recorder keys (from --pid, --cgroup)
	Cgroup    string            // cgroup path prefix
}

// Match reports whether a workload with identity id (recorded under key)
// passes the filter.
func (f *Filter) Match(key Key, id report.Identity) bool {
	if len(f.Keys) > 0 {
		found := false
		for _, k := range f.Keys {
			found = found || k == key
		}
		if !found {
			return false
		}
	}
	if f.Namespace != "" && id.Namespace != f.Namespace {
		return false
	}
	for k, v := range f.Selector {
		if got, ok := id.Labels[k]; !ok || got != v {
			return false
		}
	}
	if f.Container != "" && id.Container != f.Container && (id.ContainerID == "" || !strings.HasPrefix(id.ContainerID, f.Container)) {
		return false
	}
	if f.Unit != "" && id.Unit != f.Unit && id.Unit != f.Unit+".service" {
		return false
	}
	if f.Cgroup != "" {
		cg := strings.TrimSuffix(f.Cgroup, "/")
		if id.Cgroup != cg && !strings.HasPrefix(id.Cgroup, cg+"/") {
			return false
		}
	}
	return true
}

// PodLookup completes the identity of a container that runs in a Kubernetes
// pod: namespace, pod name, container name, labels, owner.
type PodLookup interface {
	// Complete fills id from the pod with id.PodUID that runs the
	// container id.ContainerID and says what id is in that pod.
	Complete(id *report.Identity) PodMatch
}

// PodMatch is what PodLookup.Complete found for an identity.
type PodMatch int

const (
	// PodUnknown: no pod is known for the identity.
	PodUnknown PodMatch = iota
	// PodContainer: a container of the pod (its name may still be
	// unknown while the kubelet has not published its id).
	PodContainer
	// PodSandbox: the pod's sandbox, the pause process the runtime starts
	// before the pod's containers. Like runc's init it is the runtime's,
	// not the workload's, and discover leaves it out of the report.
	PodSandbox
)

// Progress is what a running discovery has seen so far.
type Progress struct {
	Elapsed, Remaining time.Duration // Remaining is 0 without a duration
	Workloads          int           // distinct workloads that passed the filter
	Syscalls           map[string]int
	Lost               report.Lost
}

// Options configures Discover.
type Options struct {
	// Duration bounds the recording; 0 records until ctx is done. Either
	// way what was recorded is reported.
	Duration time.Duration
	// Recorder configures the kernel side.
	Recorder RecorderOptions
	// Filter selects the workloads to report.
	Filter Filter
	// Resolver turns cgroup paths into identities; the zero value if nil.
	Resolver *IdentityResolver
	// Pods, when set, completes the identities of containers in pods.
	Pods PodLookup
	// PodsOnly reports only the containers Pods matches to a pod (of this
	// node, for a PodWatcher): host processes, sandboxes and containers of
	// other nodes' pods on a shared kernel are left out, counted in a debug
	// log and not in Lost (they were recorded, just not wanted). The node
	// recorder of `kscmp discover --cluster` sets it.
	PodsOnly bool
	// SkipPod, "namespace/name", is a pod left out of the report: the
	// recorder's own.
	SkipPod string
	// Interval between snapshots (for LastSeen and Progress); 1s if 0.
	Interval time.Duration
	// Progress, when set, is called after every snapshot.
	Progress func(Progress)
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// keyState is what the session knows of one recorder key.
type keyState struct {
	id        report.Identity
	known     bool // a new-key event was read
	firstSeen time.Time
	lastSeen  time.Time
	count     int
	pod       PodMatch // what Pods said of id at its new-key event
}

// session is one discovery: the recorder, what is known of each of its keys,
// and the goroutine that reads the recorder's new-key events. Discover runs
// it in steps: record (snapshot and progress at every tick), settle (the
// last snapshot, and time for the events of its new keys), finish (the
// report).
type session struct {
	opts  Options
	rec   *Recorder
	start time.Time

	// stopEvents ends the event reader; events says how it ended.
	stopEvents context.CancelFunc
	events     chan error

	mu     sync.Mutex        // guards states and sets
	states map[Key]*keyState // every key seen, by an event or a snapshot
	sets   []KeySet          // the last snapshot
}

// Discover records until the duration passes or ctx is done, then returns
// the report of what the filtered workloads did. The recorder is detached
// before Discover returns.
func Discover(ctx context.Context, opts Options) (*report.Report, error) {
	opts = opts.withDefaults()
	if k := opts.Recorder.MaxKeys; k < 0 || k > MaxKeysLimit {
		return nil, fmt.Errorf("discover: Recorder.MaxKeys %d out of range 1..%d", k, MaxKeysLimit)
	}
	// A recorder the kernel refuses wraps ErrUnsupported (see NewRecorder).
	rec, err := NewRecorder(opts.Recorder)
	if err != nil {
		return nil, err
	}
	defer rec.Close()
	s := &session{opts: opts, rec: rec, start: time.Now(), states: map[Key]*keyState{}}
	s.readEvents()
	defer s.stopEvents()
	if err := s.record(ctx); err != nil {
		return nil, fmt.Errorf("discover: %w", err)
	}
	if err := s.settle(); err != nil {
		return nil, fmt.Errorf("discover: %w", err)
	}
	rep, err := s.finish()
	if err != nil {
		return nil, fmt.Errorf("discover: %w", err)
	}
	return rep, nil
}

// withDefaults fills what the caller left zero, so the steps need not ask.
func (o Options) withDefaults() Options {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Resolver == nil {
		o.Resolver = &IdentityResolver{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Recorder.Logger == nil {
		o.Recorder.Logger = o.Logger
	}
	return o
}

// readEvents starts the goroutine that turns the recorder's new-key events
// into identities. It runs apart from the ticks because an identity must be
// read from /proc while the key's first process still lives: a tick later
// it may be gone.
func (s *session) readEvents() {
	ctx, cancel := context.WithCancel(context.Background())
	s.stopEvents, s.events = cancel, make(chan error, 1)
	go func() { s.events <- s.rec.Run(ctx, s.newKey) }()
}

// newKey resolves the identity of a key the recorder just saw: from the
// cgroup and executable its event carries, completed from the pod when the
// workload runs in one.
func (s *session) newKey(ev NewKey) {
	id := s.opts.Resolver.FromCgroup(ev.Cgroup(), ev.Exe(), ev.Key.Kind() == KeyMountNS)
	match := PodUnknown
	if s.opts.Pods != nil && (id.Kind == report.KindPod || id.Kind == report.KindContainer) {
		match = s.opts.Pods.Complete(&id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state(ev.Key, time.Now())
	st.id, st.known, st.pod = id, true, match
}

// wanted says whether a resolved key belongs in the report: it passes the
// filter and, with PodsOnly, is a container of a pod Pods knows (match),
// other than SkipPod.
func (s *session) wanted(key Key, id report.Identity, match PodMatch) bool {
	if s.opts.PodsOnly && (match != PodContainer || id.Namespace+"/"+id.Pod == s.opts.SkipPod) {
		return false
	}
	return s.opts.Filter.Match(key, id)
}

// state returns the state of key, new (first seen now) if there is none.
// The caller holds mu.
func (s *session) state(key Key, now time.Time) *keyState {
	st := s.states[key]
	if st == nil {
		st = &keyState{firstSeen: now}
		s.states[key] = st
	}
	return st
}

// record takes a snapshot and shows progress at every tick until the
// duration passes or ctx is done. It returns early only when the recorder
// fails: what was recorded until then cannot be trusted to be complete.
func (s *session) record(ctx context.Context) error {
	var deadline <-chan time.Time
	if s.opts.Duration > 0 {
		t := time.NewTimer(s.opts.Duration)
		defer t.Stop()
		deadline = t.C
	}
	tick := time.NewTicker(s.opts.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-deadline:
			return nil
		case err := <-s.events:
			return fmt.Errorf("event reader stopped: %w", err)
		case <-tick.C:
			if err := s.snapshot(); err != nil {
				return err
			}
			if err := s.progress(); err != nil {
				return err
			}
		}
	}
}

// snapshot reads the kernel's sets. A key whose set grew since the last
// snapshot was seen now: that is LastSeen, the recording's only clock for
// a workload's activity.
func (s *session) snapshot() error {
	sets, err := s.rec.Snapshot()
	if err != nil {
		return err
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sets = sets
	for _, ks := range sets {
		st := s.state(ks.Key, now)
		n := 0
		for _, set := range ks.Sets {
			n += len(set.Numbers)
		}
		if n > st.count {
			st.count, st.lastSeen = n, now
		}
	}
	return nil
}

// progress tells the caller what the filtered workloads did so far, named
// for people; keys not yet resolved are not counted, since the filter cannot
// tell yet whether they are wanted.
func (s *session) progress() error {
	if s.opts.Progress == nil {
		return nil
	}
	lost, err := s.rec.Lost()
	if err != nil {
		return err
	}
	p := Progress{Elapsed: time.Since(s.start), Syscalls: map[string]int{}, Lost: lostOf(lost)}
	if s.opts.Duration > 0 {
		p.Remaining = max(0, s.opts.Duration-p.Elapsed)
	}
	seen := map[string]bool{}
	s.mu.Lock()
	for _, ks := range s.sets {
		st := s.states[ks.Key]
		if st == nil || !st.known || !s.wanted(ks.Key, st.id, st.pod) {
			continue
		}
		name := st.id.String()
		seen[st.id.Key()] = true
		p.Syscalls[name] = max(p.Syscalls[name], st.count)
	}
	s.mu.Unlock()
	p.Workloads = len(seen)
	s.opts.Progress(p)
	return nil
}

// settle takes the last snapshot and gives the event reader up to half a
// second to resolve the keys in it that have no identity yet (their event
// may still be in the ring buffer), then stops the reader.
func (s *session) settle() error {
	if err := s.snapshot(); err != nil {
		return err
	}
	for waitUntil := time.Now().Add(500 * time.Millisecond); time.Now().Before(waitUntil) && s.unresolved() > 0; {
		time.Sleep(20 * time.Millisecond)
	}
	s.stopEvents()
	if err := <-s.events; err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("event reader: %w", err)
	}
	return nil
}

// unresolved counts the keys of the last snapshot without an identity.
func (s *session) unresolved() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, ks := range s.sets {
		if st := s.states[ks.Key]; st == nil || !st.known {
			n++
		}
	}
	return n
}

// finish makes the report: every key of the last snapshot that passes the
// filter, merged by identity (a container's several mount namespaces, a
// pod's restarts), and what was lost. A key without identity cannot pass a
// filter and cannot be named: it is counted as Unattributed.
func (s *session) finish() (*report.Report, error) {
	lost, err := s.rec.Lost()
	if err != nil {
		return nil, err
	}
	rep := newReport(s.rec)
	rep.Start, rep.End = s.start.UTC(), time.Now().UTC()
	rep.Lost = lostOf(lost)
	s.mu.Lock()
	defer s.mu.Unlock()
	notPods := 0
	for _, ks := range s.sets {
		st := s.states[ks.Key]
		if !st.known {
			rep.Lost.Unattributed++
			s.opts.Logger.Warn("discover: workload without identity (its process was gone before it was resolved)", "key", ks.Key)
			continue
		}
		switch s.placeOf(ks.Key, st) {
		case inReport:
			rep.Add(workloadOf(st, ks))
		case notOfPod:
			notPods++
		}
	}
	if notPods > 0 {
		s.opts.Logger.Debug("discover: left out workloads of no pod of this node", "count", notPods)
	}
	rep.Sort()
	return rep, nil
}

// placement is where finish puts a resolved key.
type placement int

const (
	inReport placement = iota // the report
	filtered                  // left out: the filter, a sandbox, SkipPod
	notOfPod                  // left out by PodsOnly: no pod of this node
)

// placeOf resolves a pod identity once more and says where the key goes.
// The kubelet may publish a container's id in the pod status after the
// container's first call, and a container named by the pod's only container
// before the kubelet published any id may turn out to be the pod's sandbox:
// the new-key event's answer is not final, this one is.
func (s *session) placeOf(key Key, st *keyState) placement {
	match := PodUnknown
	if s.opts.Pods != nil && (st.id.Kind == report.KindPod || st.id.Kind == report.KindContainer) {
		if match = s.opts.Pods.Complete(&st.id); match == PodSandbox {
			s.opts.Logger.Debug("discover: leaving out a pod's sandbox", "pod", st.id.Namespace+"/"+st.id.Pod, "containerID", st.id.ContainerID)
			return filtered
		}
	}
	if s.opts.PodsOnly && match != PodContainer {
		s.opts.Logger.Debug("discover: leaving out a workload of no pod of this node", "workload", st.id.String(), "cgroup", st.id.Cgroup)
		return notOfPod
	}
	if s.wanted(key, st.id, match) {
		return inReport
	}
	return filtered
}

// workloadOf is the report's form of one key's sets, named by ABI.
func workloadOf(st *keyState, ks KeySet) report.Workload {
	w := report.Workload{Identity: st.id, Syscalls: map[string][]string{}, FirstSeen: st.firstSeen.UTC(), LastSeen: st.lastSeen.UTC()}
	for _, set := range ks.Sets {
		abi := set.Arch
		if abi == "" {
			abi = set.ABI.String()
		}
		w.Syscalls[abi] = append(w.Syscalls[abi], set.Names...)
		if set.Args != nil {
			if w.Args == nil {
				w.Args = map[string]map[string]report.CallArgs{}
			}
			w.Args[abi] = set.Args
		}
		if len(set.Unknown) > 0 {
			if w.Unknown == nil {
				w.Unknown = map[string][]int{}
			}
			w.Unknown[abi] = append(w.Unknown[abi], set.Unknown...)
		}
	}
	return w
}

// newReport is an empty report that says where and how it was recorded.
func newReport(rec *Recorder) *report.Report {
	r := report.New()
	r.Hook = rec.Hook().String()
	r.Node, _ = os.Hostname()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		r.Kernel = unix.ByteSliceToString(u.Release[:])
		r.Arch = unix.ByteSliceToString(u.Machine[:])
	}
	return r
}

// lostOf is the report's form of the recorder's counters.
func lostOf(c LostCounters) report.Lost {
	return report.Lost{MapFull: c.MapFull, RingBufFull: c.RingBufFull, OutOfRange: c.OutOfRange, StaleMemo: c.StaleMemo}
}
