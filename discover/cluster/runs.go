package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/flowcontrol"
)

// RunInfo is a run whose Jobs are still in the cluster.
type RunInfo struct {
	Name string
	// Nodes counts its Jobs; Active those not finished.
	Nodes, Active int
	// Created is its first Job's creation time.
	Created time.Time
}

// ListRuns lists the runs with Jobs in ns, oldest first.
func ListRuns(ctx context.Context, client kubernetes.Interface, ns string) ([]RunInfo, error) {
	jobs, err := runJobs(ctx, client, ns, "")
	if err != nil {
		return nil, err
	}
	byName := map[string]*RunInfo{}
	for i := range jobs {
		j := &jobs[i]
		name := j.Labels[LabelRun]
		r := byName[name]
		if r == nil {
			r = &RunInfo{Name: name, Created: j.CreationTimestamp.Time}
			byName[name] = r
		}
		r.Nodes++
		if !finished(j) {
			r.Active++
		}
		if j.CreationTimestamp.Time.Before(r.Created) {
			r.Created = j.CreationTimestamp.Time
		}
	}
	out := make([]RunInfo, 0, len(byName))
	for _, r := range byName {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b RunInfo) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

// runJobs lists the recorder Jobs of run ("": of every run) in ns.
func runJobs(ctx context.Context, client kubernetes.Interface, ns, run string) ([]batchv1.Job, error) {
	sel := LabelApp + "=" + AppName
	if run != "" {
		sel += "," + LabelRun + "=" + run
	}
	opts := metav1.ListOptions{LabelSelector: sel, Limit: pageSize}
	var out []batchv1.Job
	for {
		l, err := client.BatchV1().Jobs(ns).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list recorder jobs in namespace %s (selector %s): %w", ns, sel, err)
		}
		out = append(out, l.Items...)
		if opts.Continue = l.Continue; opts.Continue == "" {
			return out, nil
		}
	}
}

// Start creates the plan's Jobs, paced by limiter (one request each; nil:
// Options.CreateQPS). A
// Job that already exists for this run (a retried start) is kept.
func Start(ctx context.Context, client kubernetes.Interface, o *Options, plan *Plan, limiter flowcontrol.RateLimiter) error {
	if limiter == nil {
		limiter = newLimiter(o.CreateQPS)
	}
	for _, node := range plan.Nodes {
		if err := limiter.Wait(ctx); err != nil {
			return fmt.Errorf("create recorder job for node %s: %w", node, err)
		}
		j := JobFor(o, plan.Run, node)
		_, err := client.BatchV1().Jobs(o.RecorderNamespace).Create(ctx, j, metav1.CreateOptions{FieldManager: "kscmp"})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create job %s/%s for node %s: %w", o.RecorderNamespace, j.Name, node, err)
		}
	}
	return nil
}

// Cleanup deletes the run's Jobs (their pods go with them: propagation
// Background), paced by limiter. Jobs already gone are fine. It uses
// ctx only for its requests, so call it with a context that is not the
// one Ctrl-C cancelled.
func Cleanup(ctx context.Context, client kubernetes.Interface, ns, run string, limiter flowcontrol.RateLimiter) error {
	if limiter == nil {
		limiter = newLimiter(20)
	}
	jobs, err := runJobs(ctx, client, ns, run)
	if err != nil {
		return err
	}
	var errs []error
	bg := metav1.DeletePropagationBackground
	for _, j := range jobs {
		if err := limiter.Wait(ctx); err != nil {
			return fmt.Errorf("delete job %s/%s: %w", ns, j.Name, err)
		}
		err := client.BatchV1().Jobs(ns).Delete(ctx, j.Name, metav1.DeleteOptions{PropagationPolicy: &bg})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete job %s/%s: %w", ns, j.Name, err))
		}
	}
	return errors.Join(errs...)
}

// newLimiter is a token bucket of qps requests a second, with a burst of
// one second's worth (at least 1).
func newLimiter(qps float64) flowcontrol.RateLimiter {
	return flowcontrol.NewTokenBucketRateLimiter(float32(qps), max(1, int(qps)))
}
