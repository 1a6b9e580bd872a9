package discover

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/kubearmor/kscmp/api/report"
)

// DefaultTerminationLog is where the kubelet reads a container's
// termination message from.
const DefaultTerminationLog = "/dev/termination-log"

// ErrNodeRecorderConfig is wrapped by RecordNode's error when its
// configuration is incomplete.
var ErrNodeRecorderConfig = errors.New("node recorder: incomplete configuration")

// NodeRecorder is the recorder pod's part of `kscmp discover --cluster`
// (`kscmp discover --node-recorder`): it records the containers of this
// node's pods only, writes progress lines and, at the end, its report as one
// stream block (api/report's stream) to Out, which the collector reads back
// through the pod log.
type NodeRecorder struct {
	// Run names the cluster recording; the report carries it.
	Run string
	// Node is this node's name (NODE_NAME); the report carries it and only
	// the pods scheduled to it are recorded.
	Node string
	// Pod and PodNamespace are the recorder's own pod (POD_NAME,
	// POD_NAMESPACE): it is left out of the report, and its StopAnnotation
	// ends the recording early.
	Pod, PodNamespace string
	// Client reaches the API server (in-cluster).
	Client kubernetes.Interface
	// Options are Duration, Interval (also of the progress lines), Filter
	// (namespace, selector) and Recorder; RecordNode sets Pods, PodsOnly,
	// SkipPod and Progress.
	Options Options
	// Out receives the stream (the container's standard output).
	Out io.Writer
	// TerminationLog receives the reason of a failure;
	// DefaultTerminationLog if "". It is written only when it exists (the
	// kubelet mounts it), so a run outside a pod never creates it.
	TerminationLog string
	// SyncTimeout bounds the first list of the node's pods; 30s if 0.
	SyncTimeout time.Duration
}

// RecordNode records until the duration passes, ctx is done (SIGTERM) or
// the recorder's pod gets StopAnnotation, then writes the node's report as a
// stream block to Out. On a failure it writes the reason to the
// termination log and returns it.
func RecordNode(ctx context.Context, nr NodeRecorder) error {
	err := nr.record(ctx)
	if err != nil {
		nr.terminationMessage(err)
	}
	return err
}

// record is RecordNode's steps: check, watch the node's pods, record,
// write the stream.
func (nr *NodeRecorder) record(ctx context.Context) error {
	if err := nr.check(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pods, err := nr.watchPods(ctx, cancel)
	if err != nil {
		return err
	}
	opts := nr.Options
	opts.Pods, opts.PodsOnly, opts.SkipPod = pods, true, nr.PodNamespace+"/"+nr.Pod
	opts.Progress = nr.progressWriter(opts.withDefaults().Logger)
	rep, err := Discover(ctx, opts)
	if err != nil {
		return fmt.Errorf("node recorder on %s: %w", nr.Node, err)
	}
	rep.Run, rep.Node = nr.Run, nr.Node
	if err := report.WriteStream(nr.Out, rep); err != nil {
		return fmt.Errorf("node recorder on %s: writing the report stream: %w", nr.Node, err)
	}
	return nil
}

// check names the first missing field: the recorder pod gets them from
// flags and the downward API, and a Job with one missing must fail at
// once, not after its whole duration.
func (nr *NodeRecorder) check() error {
	for _, f := range []struct{ name, value string }{
		{"Run (--run)", nr.Run}, {"Node (NODE_NAME)", nr.Node},
		{"Pod (POD_NAME)", nr.Pod}, {"PodNamespace (POD_NAMESPACE)", nr.PodNamespace},
	} {
		if f.value == "" {
			return fmt.Errorf("%w: %s is empty", ErrNodeRecorderConfig, f.name)
		}
	}
	if nr.Client == nil || nr.Out == nil {
		return fmt.Errorf("%w: no API client or no output", ErrNodeRecorderConfig)
	}
	return nil
}

// watchPods starts the watch of this node's pods, whose informer also
// tells when the recorder's own pod gets StopAnnotation: then stop is
// called.
func (nr *NodeRecorder) watchPods(ctx context.Context, stop context.CancelFunc) (*PodWatcher, error) {
	pods, err := NewPodWatcher(nr.Client, nr.Node)
	if err != nil {
		return nil, err
	}
	set, err := pods.AnnotationSet(nr.PodNamespace, nr.Pod, StopAnnotation)
	if err != nil {
		return nil, err
	}
	timeout := nr.SyncTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	if err := pods.Start(ctx, timeout); err != nil {
		return nil, err
	}
	log := nr.Options.withDefaults().Logger
	go func() {
		select {
		case <-set:
			log.Info("node recorder: stop requested", "pod", nr.PodNamespace+"/"+nr.Pod, "annotation", StopAnnotation)
			stop()
		case <-ctx.Done():
		}
	}()
	return pods, nil
}

// progressWriter writes a report.Progress line to Out at every snapshot. A
// line that cannot be written is logged once: the final report may still
// get through, and the collector treats a missing line as no news.
func (nr *NodeRecorder) progressWriter(log *slog.Logger) func(Progress) {
	warned := false
	return func(p Progress) {
		calls := 0
		for _, n := range p.Syscalls {
			calls += n
		}
		err := report.WriteProgress(nr.Out, report.Progress{Node: nr.Node, ElapsedSeconds: int64(p.Elapsed / time.Second),
			Workloads: p.Workloads, Calls: calls, Lost: p.Lost.Total()})
		if err != nil && !warned {
			warned = true
			log.Warn("node recorder: progress line not written", "err", err)
		}
	}
}

// terminationMessage writes err to the termination log, where the kubelet
// puts it in the pod's status for the collector to report. The file is the
// kubelet's bind mount: written in place (an atomic rename onto a mount
// point fails), and only when it exists.
func (nr *NodeRecorder) terminationMessage(err error) {
	path := nr.TerminationLog
	if path == "" {
		path = DefaultTerminationLog
	}
	f, ferr := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if errors.Is(ferr, fs.ErrNotExist) {
		return
	}
	if ferr == nil {
		_, ferr = f.WriteString(err.Error() + "\n")
		ferr = errors.Join(ferr, f.Close())
	}
	if ferr != nil {
		nr.Options.withDefaults().Logger.Warn("node recorder: termination message not written", "path", path, "err", ferr)
	}
}
