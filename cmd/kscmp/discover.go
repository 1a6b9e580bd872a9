package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/discover"
	"github.com/kubearmor/kscmp/internal/fsutil"
)

// discoverFlags are the flags of kscmp discover.
type discoverFlags struct {
	duration, interval       time.Duration
	namespace, selector      string
	container, unit, cgroup  string
	pids                     []int
	machine, maxKeys         int
	all, withRuntime         bool
	kubeconfig, node, output string
	nodes                    []string
	cluster                  clusterFlags
	// The recorder pod of `kscmp discover --cluster` (hidden flags).
	nodeRecorder bool
	runName      string
	// The recorder pod's init container (hidden flags).
	recorderProfile  string
	printProfileName bool
}

const discoverLong = `Discover attaches kscmp's eBPF recorder to the kernel's system call entry and
records, inside the kernel, which system calls each container, pod, systemd
service or process makes, per ABI (x86_64, i386, x32; aarch64, arm). It runs for
--duration, or until Ctrl-C, then writes the observation report (JSON) that
'kscmp recommend' reads, and detaches: nothing stays in the kernel.

Containers are told apart by mount namespace; processes in the host's mount
namespace (systemd services, plain processes) only with --all, --systemd-unit,
--pid or --cgroup, by cgroup. The container runtime's own start-up calls
(runc init, crun) are not the workload's and are left out; 'kscmp merge' adds
them back as the runtime's start-up set.

Record workloads without a seccomp profile (or with a logging one): the kernel
runs seccomp before the hook, so calls a profile refuses are never seen.

Needs root (CAP_BPF and CAP_PERFMON) and a kernel with BTF: exit code 4 when
the recorder cannot be loaded.`

func newDiscoverCmd() *cobra.Command {
	var fl discoverFlags
	cmd := &cobra.Command{
		Use:   "discover [--duration 10m] [-o report.json]",
		Short: "Record which system calls each workload makes (eBPF), and write an observation report",
		Long:  discoverLong + clusterLong,
		Example: `  kscmp discover --duration 10m -o report.json
  kscmp discover --duration 2m --namespace shop --selector app=web
  kscmp discover --systemd-unit nginx.service --duration 5m -o nginx.json
  kscmp discover --machine-pid "$(machinectl show -p Leader --value web1)" --systemd-unit nginx.service
  kscmp discover --cluster --duration 10m -n shop -o report.json
  kscmp discover --collect 20261201-061800-a1b2 -o report.json`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return fl.run(cmd) },
	}
	fl.register(cmd.Flags())
	return cmd
}

func (fl *discoverFlags) register(f *pflag.FlagSet) {
	f.DurationVarP(&fl.duration, "duration", "d", 10*time.Minute, "how long to record; 0 records until Ctrl-C")
	f.StringVarP(&fl.namespace, "namespace", "n", "", "only pods in this Kubernetes namespace")
	f.StringVarP(&fl.selector, "selector", "l", "", "only pods with these labels, k=v[,k=v]")
	f.StringVarP(&fl.container, "container", "c", "", "only this container (name in a pod, or container id prefix)")
	f.StringVar(&fl.unit, "systemd-unit", "", "only this systemd unit (records the host too)")
	f.IntSliceVar(&fl.pids, "pid", nil, "only the workload of these processes (their container, or their cgroup on the host)")
	f.IntVar(&fl.machine, "machine-pid", 0, "record the systemd machine that PID is in (a systemd-nspawn container, e.g. PID from 'machinectl show -p Leader --value NAME') as the host: its services are told apart by cgroup (the real host's processes then count as one container)")
	f.StringVar(&fl.cgroup, "cgroup", "", "only workloads in this cgroup v2 path or below it (records the host too)")
	f.BoolVar(&fl.all, "all", false, "also record processes in the host's mount namespace, by cgroup")
	f.BoolVar(&fl.withRuntime, "include-runtime", false, "also record the calls runc, crun and systemd make while they set up a container or service, before it runs (to find a runtime's start-up set)")
	f.StringVarP(&fl.output, "output", "o", "-", "report file (JSON), - for stdout")
	f.StringVar(&fl.kubeconfig, "kubeconfig", "", "kubeconfig to resolve pods with; default in-cluster, $KUBECONFIG, ~/.kube/config, else pods are not resolved")
	f.StringArrayVar(&fl.nodes, "node", nil, "this node's name in Kubernetes; default $NODE_NAME, else the host name (with --cluster: record only on these nodes, repeatable)")
	f.IntVar(&fl.maxKeys, "max-keys", discover.DefaultMaxKeys, "workloads the kernel map holds; more are counted as lost")
	f.DurationVar(&fl.interval, "interval", time.Second, "how often to read the kernel's sets and show progress (10s with --node-recorder)")
	f.BoolVar(&fl.nodeRecorder, "node-recorder", false, "run as the recorder pod of 'discover --cluster': record this node's pods only, write the report stream to stdout")
	f.StringVar(&fl.runName, "run", "", "the cluster recording's name (with --node-recorder)")
	f.StringVar(&fl.recorderProfile, "recorder-profile", "", "write the node recorder's own seccomp profile under this directory (the kubelet's seccomp directory) and print its relative path")
	f.BoolVar(&fl.printProfileName, "print-recorder-profile-name", false, "print the relative path of the node recorder's own seccomp profile")
	for _, name := range []string{"node-recorder", "run", "recorder-profile", "print-recorder-profile-name"} {
		_ = f.MarkHidden(name)
	}
	fl.cluster.register(f)
}

// run records with the options the flags give and writes the report.
func (fl *discoverFlags) run(cmd *cobra.Command) error {
	switch {
	case fl.printProfileName:
		_, err := fmt.Fprintln(cmd.OutOrStdout(), discover.RecorderProfileName())
		return err
	case fl.recorderProfile != "":
		path, changed, err := discover.WriteRecorderProfile(fl.recorderProfile)
		if err != nil {
			return fmt.Errorf("--recorder-profile %s: %w", fl.recorderProfile, err)
		}
		slog.Debug("discover: the recorder's own profile", "path", path, "written", changed)
		_, err = fmt.Fprintln(cmd.OutOrStdout(), discover.RecorderProfileName())
		return err
	case fl.cluster.any():
		return fl.runCluster(cmd)
	}
	if len(fl.nodes) > 1 {
		return usageErr("--node %v: one node without --cluster", fl.nodes)
	}
	if len(fl.nodes) == 1 {
		fl.node = fl.nodes[0]
	}
	opts, err := fl.options()
	if err != nil {
		return err
	}
	if fl.nodeRecorder {
		return fl.runNodeRecorder(cmd, opts)
	}
	// The report is written only at the end: an output that cannot be
	// written must fail now, not after the whole recording.
	if fl.output != "" {
		if err := fsutil.CheckWritable(fl.output); err != nil {
			return fmt.Errorf("-o: %w", err)
		}
	}
	if opts.Pods, err = podLookup(cmd.Context(), fl.kubeconfig, fl.node); err != nil {
		return err
	}
	stderr := cmd.ErrOrStderr()
	opts.Progress = progressPrinter(stderr, isTerminal(stderr), fl.duration)
	rep, err := discover.Discover(cmd.Context(), opts)
	endProgress(stderr)
	if errors.Is(err, discover.ErrUnsupported) {
		return &exitError{exitUnsupported, fmt.Errorf("%w (discover needs root, or CAP_BPF and CAP_PERFMON, and a kernel with BTF)", err)}
	}
	if err != nil {
		return err
	}
	if fl.output == "-" || fl.output == "" {
		return writeReport(cmd.OutOrStdout(), rep)
	}
	if _, err := rep.WriteFile(fl.output); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "kscmp: %d workloads in %s (lost: %d)\n", len(rep.Workloads), fl.output, rep.Lost.Total())
	return nil
}

// runNodeRecorder is the recorder pod's command: the node, its pod and
// namespace from the downward API's environment, the API server in-cluster
// (or --kubeconfig); discover.RecordNode does the rest. SIGTERM ends it
// early through the command's context (main).
func (fl *discoverFlags) runNodeRecorder(cmd *cobra.Command, opts discover.Options) error {
	if opts.Recorder.IncludeHost || len(opts.Filter.Keys) > 0 || fl.container != "" {
		return usageErr("--node-recorder records the containers of this node's pods: --all, --systemd-unit, --cgroup, --pid, --machine-pid and --container do not apply")
	}
	if !cmd.Flags().Changed("interval") {
		opts.Interval = 10 * time.Second
	}
	client, err := kubeClient(fl.kubeconfig)
	if err != nil {
		return usageErr("--node-recorder: %w", err)
	}
	// Not nodeName's host name fallback: a pod's host name is the pod's.
	node := fl.node
	if node == "" {
		node = os.Getenv("NODE_NAME")
	}
	err = discover.RecordNode(cmd.Context(), discover.NodeRecorder{Run: fl.runName, Node: node,
		Pod: os.Getenv("POD_NAME"), PodNamespace: os.Getenv("POD_NAMESPACE"), Client: client,
		Options: opts, Out: cmd.OutOrStdout()})
	if errors.Is(err, discover.ErrUnsupported) {
		return &exitError{exitUnsupported, fmt.Errorf("%w (the recorder pod needs CAP_BPF and CAP_PERFMON, and a kernel with BTF)", err)}
	}
	if errors.Is(err, discover.ErrNodeRecorderConfig) {
		return usageErr("%w", err)
	}
	return err
}

// options turns the flags into discover.Options; a problem names its flag.
func (fl *discoverFlags) options() (discover.Options, error) {
	if fl.duration < 0 {
		return discover.Options{}, usageErr("--duration %v: must not be negative (0 records until Ctrl-C)", fl.duration)
	}
	if fl.interval < 0 {
		return discover.Options{}, usageErr("--interval %v: must not be negative", fl.interval)
	}
	sel, err := api.ParseLabels(fl.selector)
	if err != nil {
		return discover.Options{}, usageErr("--selector: %w", err)
	}
	if fl.maxKeys < 1 || fl.maxKeys > discover.MaxKeysLimit {
		return discover.Options{}, usageErr("--max-keys %d: out of range 1..%d", fl.maxKeys, discover.MaxKeysLimit)
	}
	opts := discover.Options{
		Duration: fl.duration,
		Interval: fl.interval,
		Recorder: discover.RecorderOptions{MaxKeys: fl.maxKeys, IncludeHost: fl.all || fl.unit != "" || fl.cgroup != "", IncludeRuntime: fl.withRuntime},
		Filter: discover.Filter{Namespace: fl.namespace, Selector: sel, Container: fl.container,
			Unit: fl.unit, Cgroup: fl.cgroup},
	}
	if fl.machine != 0 {
		ns, err := discover.MountNSOf(fmt.Sprintf("/proc/%d", fl.machine))
		if err != nil {
			return opts, usageErr("--machine-pid %d: %w", fl.machine, err)
		}
		opts.Recorder.HostMountNS, opts.Recorder.IncludeHost = ns, true
	}
	for _, pid := range fl.pids {
		key, host, err := discover.PIDKey(pid, opts.Recorder.HostMountNS)
		if err != nil {
			return opts, usageErr("--pid %d: %w", pid, err)
		}
		opts.Recorder.IncludeHost = opts.Recorder.IncludeHost || host
		opts.Filter.Keys = append(opts.Filter.Keys, key)
	}
	return opts, nil
}

// podLookup watches this node's pods when a cluster is configured, so the
// report names pods; without one, containers are named by id.
func podLookup(ctx context.Context, kubeconfig, node string) (discover.PodLookup, error) {
	client, err := kubeClient(kubeconfig)
	switch {
	case errors.Is(err, errNoCluster):
		slog.Debug("discover: pods are not resolved", "reason", err)
		return nil, nil
	case err != nil:
		return nil, usageErr("%w", err)
	}
	w, err := discover.NewPodWatcher(client, nodeName(node))
	if err != nil {
		return nil, err
	}
	if err := w.Start(ctx, 30*time.Second); err != nil {
		return nil, err
	}
	return w, nil
}

// writeReport writes the report to a stream (stdout).
func writeReport(w io.Writer, rep *report.Report) error {
	data, err := rep.Marshal()
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progressPrinter shows progress: on a terminal a status line rewritten in
// place, otherwise a log line every 10 seconds.
func progressPrinter(w io.Writer, tty bool, total time.Duration) func(discover.Progress) {
	var lastLog time.Time
	return func(p discover.Progress) {
		names := make([]string, 0, len(p.Syscalls))
		for n := range p.Syscalls {
			names = append(names, n)
		}
		slices.Sort(names)
		var top []string
		for _, n := range names {
			top = append(top, fmt.Sprintf("%s:%d", n, p.Syscalls[n]))
		}
		remaining := "until Ctrl-C"
		if total > 0 {
			remaining = p.Remaining.Round(time.Second).String() + " left"
		}
		line := fmt.Sprintf("discover: %s elapsed, %s, %d workloads, lost %d", p.Elapsed.Round(time.Second), remaining, p.Workloads, p.Lost.Total())
		if tty {
			detail := strings.Join(top, " ")
			if len(detail) > 100 {
				detail = detail[:97] + "..."
			}
			fmt.Fprintf(w, "\r\033[K%s  %s", line, detail)
			return
		}
		if time.Since(lastLog) >= 10*time.Second {
			lastLog = time.Now()
			fmt.Fprintf(w, "%s [%s]\n", line, strings.Join(top, " "))
		}
	}
}

func endProgress(w io.Writer) {
	if isTerminal(w) {
		fmt.Fprint(w, "\r\033[K")
	}
}
