package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"

	"github.com/kubearmor/kscmp/discover"
	"github.com/kubearmor/kscmp/discover/cluster"
	"github.com/kubearmor/kscmp/internal/fsutil"
)

// exitPartial is discover --cluster's exit code when a planned node's
// coverage is incomplete (without --allow-partial); the report is written.
const exitPartial = 6

// clusterFlags are the flags of kscmp discover --cluster.
type clusterFlags struct {
	on, allowPartial, listRuns, force bool
	image, recorderNS, kubeletRoot    string
	collect                           string
	keep                              time.Duration
	createQPS                         float64
}

const clusterLong = `

With --cluster, discover runs on a workstation with a kubeconfig (no root, no
eBPF there): it creates one short-lived recorder Job per node that runs a
selected pod (every Ready node when nothing is selected; --node restricts),
follows them, reads each node's report back through the API server (the
recorder pods' logs) and writes ONE report: per workload the union over its
replicas and nodes. The Jobs are deleted at the end, on Ctrl-C (after the
recorders wrote what they had), and by their deadline and TTL (--keep) when
kscmp is gone; 'discover --cluster --collect RUN' reads a run that ended while
kscmp was away, --list-runs shows the runs still there. Exit code 6 when a
node's coverage is incomplete (the report is still written and names it),
unless --allow-partial; 130 after Ctrl-C only when nothing was collected.`

func (c *clusterFlags) register(f *pflag.FlagSet) {
	f.BoolVar(&c.on, "cluster", false, "record on the cluster's nodes from here, through recorder Jobs (see above)")
	f.StringVar(&c.image, "image", cluster.DefaultImage, "with --cluster: the recorders' image")
	f.StringVar(&c.recorderNS, "recorder-namespace", cluster.DefaultRecorderNamespace, "with --cluster: the recorders' namespace (deploy/manifests/recorder)")
	f.StringVar(&c.kubeletRoot, "kubelet-root", cluster.DefaultKubeletRoot, "with --cluster: the kubelet's root directory on the nodes (its seccomp/ holds the recorder's profile)")
	f.DurationVar(&c.keep, "keep", cluster.DefaultKeep, "with --cluster: how long a finished run's Jobs stay for --collect when kscmp is gone")
	f.BoolVar(&c.allowPartial, "allow-partial", false, "with --cluster: exit 0 even when a node's coverage is incomplete")
	f.StringVar(&c.collect, "collect", "", "collect the run RUN started earlier (implies --cluster)")
	f.BoolVar(&c.listRuns, "list-runs", false, "list the runs whose Jobs are still in the cluster (implies --cluster)")
	f.BoolVar(&c.force, "force", false, "with --cluster: start even when another run is active")
	f.Float64Var(&c.createQPS, "create-qps", 20, "with --cluster: Jobs created (and deleted, pods annotated) per second: 5,000 nodes take 250 s at 20")
}

func (c *clusterFlags) any() bool { return c.on || c.collect != "" || c.listRuns }

// localOnly are the flags of the node-local discover that --cluster has no
// use for.
var localOnly = []string{"container", "systemd-unit", "pid", "machine-pid", "cgroup", "all", "include-runtime", "max-keys"}

// recorderProfileName names the recorder's seccomp profile relative to the
// kubelet's seccomp directory; tests replace it.
var recorderProfileName = discover.RecorderProfileName

// clusterLogs is the recorders' log source; tests on an API server without
// kubelets replace it.
var clusterLogs = func(client kubernetes.Interface) cluster.LogSource { return cluster.PodLogs{Client: client} }

// clusterOptions turns the flags into cluster.Options; a problem names its
// flag.
func (fl *discoverFlags) clusterOptions(cmd *cobra.Command, client kubernetes.Interface) (*cluster.Options, error) {
	for _, name := range localOnly {
		if cmd.Flags().Changed(name) {
			return nil, usageErr("--%s: not with --cluster (the recorders record pods only)", name)
		}
	}
	if !cmd.Flags().Changed("interval") {
		fl.interval = cluster.DefaultInterval
	}
	o := &cluster.Options{Namespace: fl.namespace, Selector: fl.selector, Nodes: fl.nodes,
		Duration: fl.duration, Interval: fl.interval, Image: fl.cluster.image,
		RecorderNamespace: fl.cluster.recorderNS, KubeletRoot: fl.cluster.kubeletRoot,
		Keep: fl.cluster.keep, Force: fl.cluster.force, CreateQPS: fl.cluster.createQPS, ProfileName: recorderProfileName(), Caps: discover.RecorderCapabilities(),
		Logs: clusterLogs(client)}
	if err := o.Defaults(client); err != nil {
		return nil, usageErr("--cluster: %w", err)
	}
	return o, nil
}

// runCluster is discover --cluster, --collect and --list-runs.
func (fl *discoverFlags) runCluster(cmd *cobra.Command) error {
	if fl.output != "-" && fl.output != "" && !fl.cluster.listRuns {
		if err := fsutil.CheckWritable(fl.output); err != nil {
			return fmt.Errorf("-o: %w", err)
		}
	}
	client, err := kubeClient(fl.kubeconfig)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	if fl.cluster.listRuns {
		return listRuns(ctx, cmd.OutOrStdout(), client, fl.cluster.recorderNS)
	}
	o, err := fl.clusterOptions(cmd, client)
	if err != nil {
		return err
	}
	stderr := cmd.ErrOrStderr()
	o.Progress = clusterProgress(stderr, isTerminal(stderr))
	// After Ctrl-C the recorders are stopped, read and deleted: more than
	// the usual grace.
	longerGrace.Store(int64(o.StopGrace + 2*time.Minute))
	var res *cluster.Result
	if fl.cluster.collect != "" {
		res, err = cluster.Collect(ctx, client, o, fl.cluster.collect)
	} else {
		res, err = fl.startRun(ctx, client, o, stderr)
	}
	if err != nil && res == nil {
		return clusterErr(err)
	}
	if werr := fl.writeClusterReport(cmd, res); werr != nil {
		return errors.Join(werr, err)
	}
	if err != nil {
		return err
	}
	return fl.clusterOutcome(stderr, res)
}

// startRun plans a new run and runs it.
func (fl *discoverFlags) startRun(ctx context.Context, client kubernetes.Interface, o *cluster.Options, stderr io.Writer) (*cluster.Result, error) {
	plan, err := cluster.MakePlan(ctx, client, o, cluster.NewRun(time.Now()))
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stderr, "kscmp: run %s: recording on %d nodes for %v (Jobs in namespace %s; 'kscmp discover --collect %s' reads it if this ends)\n",
		plan.Run, len(plan.Nodes), o.Duration, o.RecorderNamespace, plan.Run)
	return cluster.Run(ctx, client, o, plan)
}

// clusterErr gives a run's errors their exit codes: a bad option or a
// missing run is the user's (1), the rest the API server's (5).
func clusterErr(err error) error {
	switch {
	case errors.Is(err, cluster.ErrInvalid), errors.Is(err, cluster.ErrRunNotFound), errors.Is(err, cluster.ErrNoNodes), errors.Is(err, cluster.ErrRunActive):
		return usageErr("%w", err)
	case errors.Is(err, context.Canceled):
		return &exitError{130, err}
	}
	return err
}

// writeClusterReport writes the union report to -o.
func (fl *discoverFlags) writeClusterReport(cmd *cobra.Command, res *cluster.Result) error {
	if fl.output == "-" || fl.output == "" {
		return writeReport(cmd.OutOrStdout(), res.Report)
	}
	_, err := res.Report.WriteFile(fl.output)
	return err
}

// clusterOutcome names every node whose coverage is incomplete and picks
// the exit code: 0 complete (or --allow-partial), exitPartial, or 130 when
// a Ctrl-C left nothing collected.
func (fl *discoverFlags) clusterOutcome(stderr io.Writer, res *cluster.Result) error {
	r := res.Report
	var bad []string
	for _, n := range r.Nodes {
		if !n.Complete() {
			bad = append(bad, n.Name)
			fmt.Fprintf(stderr, "kscmp: node %s: %s: %s\n", n.Name, n.State, n.Error)
		}
	}
	where := fl.output
	if where == "" || where == "-" {
		where = "stdout"
	}
	fmt.Fprintf(stderr, "kscmp: run %s: %d workloads from %d of %d nodes in %s\n", r.Run, len(r.Workloads), len(r.Nodes)-len(bad), len(r.Nodes), where)
	switch {
	case res.Stopped && res.Collected() == 0:
		return &exitError{130, fmt.Errorf("run %s: interrupted before any node's report could be collected", r.Run)}
	case len(bad) > 0 && !fl.cluster.allowPartial:
		return &exitError{exitPartial, fmt.Errorf("run %s: coverage incomplete on %d of %d nodes: %s (--allow-partial accepts it)", r.Run, len(bad), len(r.Nodes), strings.Join(bad, ", "))}
	}
	return nil
}

// listRuns prints the runs whose Jobs are still there.
func listRuns(ctx context.Context, w io.Writer, client kubernetes.Interface, ns string) error {
	runs, err := cluster.ListRuns(ctx, client, ns)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tNODES\tACTIVE\tCREATED")
	for _, r := range runs {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", r.Name, r.Nodes, r.Active, r.Created.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

// clusterProgress shows a run's progress: on a terminal a status block
// rewritten in place (a summary line and a line per node, the first 10),
// else a log line every 10 seconds.
func clusterProgress(w io.Writer, tty bool) func(cluster.Status) {
	var (
		lastLog time.Time
		lines   int
	)
	return func(s cluster.Status) {
		line := statusLine(s)
		if !tty {
			if time.Since(lastLog) >= 10*time.Second {
				lastLog = time.Now()
				fmt.Fprintln(w, line)
			}
			return
		}
		block := []string{line}
		for i, n := range s.Nodes {
			if i == 10 {
				block = append(block, fmt.Sprintf("  … and %d more nodes", len(s.Nodes)-10))
				break
			}
			block = append(block, nodeLine(n))
		}
		if lines > 0 {
			fmt.Fprintf(w, "\033[%dA", lines)
		}
		fmt.Fprint(w, "\r\033[J"+strings.Join(block, "\n")+"\n")
		lines = len(block)
	}
}

// statusLine is the summary: nodes per phase, workloads, calls, time left.
func statusLine(s cluster.Status) string {
	var parts []string
	for _, p := range slices.Sorted(func(yield func(string) bool) {
		for k := range s.Phases {
			if !yield(k) {
				return
			}
		}
	}) {
		parts = append(parts, fmt.Sprintf("%d %s", s.Phases[p], p))
	}
	left := s.Left.Round(time.Second).String() + " left"
	if s.Nodes == nil {
		left = "collecting"
	} else if s.Stopping {
		left = "stopping"
	}
	return fmt.Sprintf("discover --cluster %s: %s; %d workloads, %d calls; %s", s.Run, strings.Join(parts, ", "), s.Workloads, s.Calls, left)
}

func nodeLine(n cluster.NodeStatus) string {
	s := fmt.Sprintf("  %-30s %-10s", n.Node, n.Phase)
	if n.Progress != nil {
		s += fmt.Sprintf(" %d workloads, %d calls, lost %d", n.Progress.Workloads, n.Progress.Calls, n.Progress.Lost)
	}
	if n.Error != "" {
		s += "  " + n.Error
	}
	return s
}
