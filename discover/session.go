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
	// container id.ContainerID; it reports false when it knows no such pod.
	Complete(id *report.Identity) bool
}

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
}

// Discover records until the duration passes or ctx is done, then returns
// the report of what the filtered workloads did. The recorder is detached
// before Discover returns.
func Discover(ctx context.Context, opts Options) (*report.Report, error) {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Resolver == nil {
		opts.Resolver = &IdentityResolver{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Recorder.Logger == nil {
		opts.Recorder.Logger = opts.Logger
	}
	rec, err := NewRecorder(opts.Recorder)
	if err != nil {
		return nil, err
	}
	defer rec.Close()

	rep := newReport(rec)
	var (
		mu     sync.Mutex
		states = map[Key]*keyState{}
	)
	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() {
		runDone <- rec.Run(runCtx, func(ev NewKey) {
			id := opts.Resolver.FromCgroup(ev.Cgroup(), ev.Exe(), ev.Key.Kind() == KeyMountNS)
			if opts.Pods != nil && (id.Kind == report.KindPod || id.Kind == report.KindContainer) {
				opts.Pods.Complete(&id)
			}
			mu.Lock()
			st := states[ev.Key]
			if st == nil {
				st = &keyState{firstSeen: time.Now()}
				states[ev.Key] = st
			}
			st.id, st.known = id, true
			mu.Unlock()
		})
	}()

	start := time.Now()
	rep.Start = start.UTC()
	var deadline <-chan time.Time
	if opts.Duration > 0 {
		t := time.NewTimer(opts.Duration)
		defer t.Stop()
		deadline = t.C
	}
	tick := time.NewTicker(opts.Interval)
	defer tick.Stop()

	var sets []KeySet
	snapshot := func() error {
		s, err := rec.Snapshot()
		if err != nil {
			return err
		}
		sets = s
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		for _, ks := range sets {
			st := states[ks.Key]
			if st == nil {
				st = &keyState{firstSeen: now}
				states[ks.Key] = st
			}
			n := 0
			for _, s := range ks.Sets {
				n += len(s.Numbers)
			}
			if n > st.count {
				st.count, st.lastSeen = n, now
			}
		}
		return nil
	}
	progress := func() {
		if opts.Progress == nil {
			return
		}
		lost, _ := rec.Lost()
		p := Progress{Elapsed: time.Since(start), Syscalls: map[string]int{}}
		if opts.Duration > 0 {
			p.Remaining = max(0, opts.Duration-p.Elapsed)
		}
		p.Lost = lostOf(lost)
		mu.Lock()
		seen := map[string]bool{}
		for _, ks := range sets {
			st := states[ks.Key]
			if st == nil || !st.known || !opts.Filter.Match(ks.Key, st.id) {
				continue
			}
			name := st.id.String()
			seen[st.id.Key()] = true
			p.Syscalls[name] = max(p.Syscalls[name], st.count)
		}
		mu.Unlock()
		p.Workloads = len(seen)
		opts.Progress(p)
	}

loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-deadline:
			break loop
		case err := <-runDone:
			stopRun()
			return nil, fmt.Errorf("discover: %w", err)
		case <-tick.C:
			if err := snapshot(); err != nil {
				stopRun()
				return nil, fmt.Errorf("discover: %w", err)
			}
			progress()
		}
	}

	// The final snapshot, then give the event reader a moment to resolve
	// the keys it contains that have no identity yet.
	if err := snapshot(); err != nil {
		stopRun()
		return nil, fmt.Errorf("discover: %w", err)
	}
	waitUntil := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(waitUntil) {
		mu.Lock()
		missing := 0
		for _, ks := range sets {
			if st := states[ks.Key]; st == nil || !st.known {
				missing++
			}
		}
		mu.Unlock()
		if missing == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopRun()
	if err := <-runDone; err != nil && !errors.Is(err, context.Canceled) {
		return nil, fmt.Errorf("discover: %w", err)
	}
	lost, err := rec.Lost()
	if err != nil {
		return nil, fmt.Errorf("discover: %w", err)
	}
	rep.End = time.Now().UTC()
	rep.Lost = lostOf(lost)

	mu.Lock()
	defer mu.Unlock()
	for _, ks := range sets {
		st := states[ks.Key]
		if !st.known {
			rep.Lost.Unattributed++
			opts.Logger.Warn("discover: workload without identity (its process was gone before it was resolved)", "key", ks.Key)
			continue
		}
		// The kubelet may publish a container's id in the pod status after
		// the container's first call: try again.
		if opts.Pods != nil && (st.id.Kind == report.KindPod || st.id.Kind == report.KindContainer) && (st.id.Pod == "" || st.id.Container == "") {
			opts.Pods.Complete(&st.id)
		}
		if !opts.Filter.Match(ks.Key, st.id) {
			continue
		}
		w := report.Workload{Identity: st.id, Syscalls: map[string][]string{}, FirstSeen: st.firstSeen.UTC(), LastSeen: st.lastSeen.UTC()}
		for _, s := range ks.Sets {
			abi := s.Arch
			if abi == "" {
				abi = s.ABI.String()
			}
			w.Syscalls[abi] = append(w.Syscalls[abi], s.Names...)
			if len(s.Unknown) > 0 {
				if w.Unknown == nil {
					w.Unknown = map[string][]int{}
				}
				w.Unknown[abi] = append(w.Unknown[abi], s.Unknown...)
			}
		}
		rep.Add(w)
	}
	rep.Sort()
	return rep, nil
}

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
