package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/kubearmor/kscmp/api/report"
)

// progressTail is how many lines of a recorder's log a progress read asks
// for: its last progress line, with room for log lines after it.
const progressTail = 20

// logTimeout bounds one log read (a recorder's whole report).
const logTimeout = 5 * time.Minute

// Run records on the plan's nodes: Start, Watch until the recorders end
// (or ctx is cancelled: then Stop), Collect, Cleanup. A cancelled ctx is
// an early end, not a failure: what the recorders wrote is still
// collected, with a context of its own bounded by StopGrace and the log
// reads' timeouts. The Jobs are deleted in every case. The error is nil
// when a report could be made; its coverage says what is missing.
func Run(ctx context.Context, client kubernetes.Interface, o *Options, plan *Plan) (*Result, error) {
	bg := context.WithoutCancel(ctx)
	limiter := newLimiter(o.CreateQPS)
	start := o.Now()
	err := Start(ctx, client, o, plan, limiter)
	if err != nil && ctx.Err() == nil {
		return nil, errors.Join(err, Cleanup(bg, client, o.RecorderNamespace, plan.Run, limiter))
	}
	res, err := watchAndCollect(ctx, client, o, plan, start, limiter)
	if cerr := Cleanup(bg, client, o.RecorderNamespace, plan.Run, limiter); cerr != nil {
		err = errors.Join(err, fmt.Errorf("cleanup of run %s (its Jobs go by their TTL): %w", plan.Run, cerr))
	}
	return res, err
}

// Collect reads a run that was started earlier (by a CLI that is gone):
// its nodes are its Jobs', it waits for recorders still running like Run,
// then collects and deletes the Jobs.
func Collect(ctx context.Context, client kubernetes.Interface, o *Options, run string) (*Result, error) {
	if err := ValidRun(run); err != nil {
		return nil, err
	}
	jobs, err := runJobs(ctx, client, o.RecorderNamespace, run)
	if err != nil {
		return nil, err
	}
	if len(jobs) == 0 {
		return nil, fmt.Errorf("namespace %s: no recorder jobs of run %s (deleted, or gone after their TTL): %w", o.RecorderNamespace, run, ErrRunNotFound)
	}
	plan := &Plan{Run: run}
	start := jobs[0].CreationTimestamp.Time
	for _, j := range jobs {
		plan.Nodes = append(plan.Nodes, j.Annotations[AnnotationNode])
		if j.CreationTimestamp.Time.Before(start) {
			start = j.CreationTimestamp.Time
		}
		// The recording time is the run's, not this CLI's --duration.
		if d := deadlineOf(&j); d > deadlineSlack {
			o.Duration = d - deadlineSlack
		}
	}
	slices.Sort(plan.Nodes)
	limiter := newLimiter(o.CreateQPS)
	res, err := watchAndCollect(ctx, client, o, plan, start, limiter)
	if cerr := Cleanup(context.WithoutCancel(ctx), client, o.RecorderNamespace, run, limiter); cerr != nil {
		err = errors.Join(err, fmt.Errorf("cleanup of run %s (its Jobs go by their TTL): %w", run, cerr))
	}
	return res, err
}

// watchAndCollect watches the run's pods until its recorders end, stops
// them when ctx is cancelled, and collects their reports.
func watchAndCollect(ctx context.Context, client kubernetes.Interface, o *Options, plan *Plan, start time.Time, limiter flowcontrol.RateLimiter) (*Result, error) {
	bg := context.WithoutCancel(ctx)
	pw, err := startPodWatch(bg, client, o.RecorderNamespace, plan.Run)
	if err != nil {
		return nil, err
	}
	defer pw.close()
	t := newTracker(plan)
	res := &Result{}
	watchCtx, stopProgress := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { readProgress(watchCtx, o, t) })
	waitRecorders(ctx, o, t, pw, start, nil)
	stopProgress()
	wg.Wait()
	if ctx.Err() != nil {
		// Pods the Job controller creates after the first annotations
		// get theirs on a later tick.
		res.Stopped = true
		stopped := map[string]bool{}
		stop := func() { stopRecorders(bg, client, o, t, limiter, stopped) }
		stop()
		stopCtx, cancel := context.WithTimeout(bg, o.StopGrace)
		waitRecorders(stopCtx, o, t, pw, start, stop)
		cancel()
	}
	res.Report = collect(bg, o, t)
	return res, nil
}

// waitRecorders follows the pods until every node's recorder has ended;
// or, once the recording time is over (or a stop was asked), every node's
// that started; or StartTimeout after that; or ctx ends. stop, when not
// nil, is a stop in progress, called on every tick.
func waitRecorders(ctx context.Context, o *Options, t *tracker, pw *podWatch, start time.Time, stop func()) {
	stopping := stop != nil
	tick := time.NewTicker(min(o.Interval, time.Second))
	defer tick.Stop()
	end := start.Add(o.Duration)
	var last time.Time
	for {
		changed := t.update(pw.pods())
		now := o.Now()
		if o.Progress != nil && (changed || now.Sub(last) >= o.Interval) {
			s := t.status()
			s.Left, s.Stopping = max(0, end.Sub(now)), stopping
			o.Progress(s)
			last = now
		}
		running := len(t.in(PhaseRecording))
		waiting := len(t.in(PhasePending, PhaseScheduled))
		switch {
		case running == 0 && waiting == 0:
			return
		case running == 0 && (now.After(end) || stopping):
			return
		case now.After(end.Add(o.StartTimeout)):
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if stop != nil {
			stop()
		}
	}
}

// readProgress reads the last progress line of each recording node's log,
// round robin, at most LogQPS reads a second: at 5,000 nodes and 10 reads
// a second each node's counts are renewed every 500 s, and the API server
// sees 10 small log requests a second, whatever the cluster's size.
func readProgress(ctx context.Context, o *Options, t *tracker) {
	limiter := newLimiter(o.LogQPS)
	for ctx.Err() == nil {
		nodes := t.in(PhaseRecording)
		for _, n := range nodes {
			if limiter.Wait(ctx) != nil {
				return
			}
			rc, err := o.Logs.Log(ctx, o.RecorderNamespace, n.Pod, progressTail)
			if err != nil {
				continue
			}
			res, _ := report.ReadStream(rc, n.Pod, o.MaxStream)
			rc.Close()
			if res != nil && res.Progress != nil {
				t.setProgress(n.Node, res.Progress)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(o.Interval):
		}
	}
}

// stopRecorders annotates every recorder pod that has not ended, and is
// not in done, with AnnotationStop (paced like Job creation): each
// recorder then ends early and writes its report.
func stopRecorders(ctx context.Context, client kubernetes.Interface, o *Options, t *tracker, limiter flowcontrol.RateLimiter, done map[string]bool) {
	patch := []byte(`{"metadata":{"annotations":{"` + AnnotationStop + `":"` + o.Now().UTC().Format(time.RFC3339) + `"}}}`)
	for _, n := range t.in(PhaseScheduled, PhaseRecording) {
		if done[n.Pod] {
			continue
		}
		if limiter.Wait(ctx) != nil {
			return
		}
		done[n.Pod] = true
		_, err := client.CoreV1().Pods(o.RecorderNamespace).Patch(ctx, n.Pod, types.MergePatchType, patch, metaPatch)
		if err != nil && !apierrors.IsNotFound(err) {
			t.mu.Lock()
			t.nodes[n.Node].Error = fmt.Sprintf("annotate pod %s/%s %s: %v", o.RecorderNamespace, n.Pod, AnnotationStop, err)
			t.mu.Unlock()
		}
	}
}

// collect reads the log of every node whose recorder ran, Collectors at a
// time, into one Union, and returns the union report with every planned
// node's coverage.
func collect(ctx context.Context, o *Options, t *tracker) *report.Report {
	u := NewUnion(t.run)
	var (
		mu       sync.Mutex // guards u and coverage
		coverage []report.NodeCoverage
		wg       sync.WaitGroup
		sem      = make(chan struct{}, max(1, o.Collectors))
	)
	for _, n := range t.status().Nodes {
		if n.Phase == PhasePending || n.Phase == PhaseScheduled {
			c := report.NodeCoverage{Name: n.Node, State: report.NodeNotStarted, Pod: n.Pod, Error: notStarted(n)}
			// Under mu: the readers started for earlier nodes append too.
			mu.Lock()
			coverage = append(coverage, c)
			mu.Unlock()
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, rep := readNode(ctx, o, t.run, n)
			mu.Lock()
			defer mu.Unlock()
			if rep != nil {
				u.Add(n.Node, rep)
			}
			coverage = append(coverage, c)
			if o.Progress != nil {
				o.Progress(Status{Run: t.run, Phases: map[string]int{"collected": len(coverage)}, Workloads: u.Len(), Calls: u.Calls(), Nodes: nil})
			}
		})
	}
	wg.Wait()
	return u.Report(coverage)
}

// notStarted says why a node's recorder never ran.
func notStarted(n NodeStatus) string {
	if n.Pod == "" {
		return "no recorder pod was created (see the Job's events: admission, quota)"
	}
	return fmt.Sprintf("recorder pod %s never started (see its events: image, scheduling, seccomp profile)", n.Pod)
}

// readNode reads one node's stream and says what it covered.
func readNode(ctx context.Context, o *Options, run string, n NodeStatus) (report.NodeCoverage, *report.Report) {
	c := report.NodeCoverage{Name: n.Node, Pod: n.Pod}
	ctx, cancel := context.WithTimeout(ctx, logTimeout)
	defer cancel()
	var res *report.StreamResult
	rc, err := o.Logs.Log(ctx, o.RecorderNamespace, n.Pod, 0)
	if err == nil {
		res, err = report.ReadStream(rc, "node "+n.Node+" pod "+o.RecorderNamespace+"/"+n.Pod, o.MaxStream)
		rc.Close()
	}
	switch {
	case n.Phase == PhaseFailed:
		c.State, c.Error = report.NodeFailed, n.Error
	case err != nil:
		c.State, c.Error = report.NodeIncomplete, err.Error()
	default:
		c.State = report.NodeCollected
	}
	if res == nil || res.Report == nil {
		if c.Error == "" && err != nil {
			c.Error = err.Error()
		}
		return c, nil
	}
	c.Workloads, c.Lost = len(res.Report.Workloads), res.Report.Lost
	if res.Report.Run != run {
		c.State, c.Error = report.NodeIncomplete, fmt.Sprintf("the stream's report is of run %q, want %q", res.Report.Run, run)
		return c, nil
	}
	if c.State == report.NodeCollected && c.Lost.Total() > 0 {
		c.Error = fmt.Sprintf("the recorder lost %d calls or workloads", c.Lost.Total())
	}
	return c, res.Report
}

var metaPatch = metav1.PatchOptions{FieldManager: "kscmp"}
