package main

import (
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

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/api/violation"
	"github.com/kubearmor/kscmp/deploy/agent"
	"github.com/kubearmor/kscmp/discover"
	"github.com/kubearmor/kscmp/discover/violations"
	"github.com/kubearmor/kscmp/internal/escape"
	"github.com/kubearmor/kscmp/internal/fsutil"
)

// violationsFlags are the flags of kscmp violations.
type violationsFlags struct {
	duration            time.Duration
	follow, durationSet bool
	namespace, selector string
	container, unit     string
	cgroup              string
	maxEntries          int
	exitErrors          bool
	attributeExited     bool
	runtimeRoots        []string
	kubeconfig, node    string
	output              string
	// --cluster: the agents' reports instead of this node's audit records.
	cluster, allowPartial         bool
	agentNamespace, agentSelector string
	since                         time.Duration
}

// violationsLocalOnly are the flags of a watch on this node, which --cluster (the
// agents' reports) does not take.
var violationsLocalOnly = []string{"duration", "follow", "systemd-unit", "cgroup", "max-entries", "exit-errors", "runtime-root", "attribute-exited", "node"}

const violationsLong = `Violations reports what seccomp enforcement refused (Block, Kill) or logged
(Audit) on this node or host: per workload (named like discover names them:
pod, container, systemd unit, process), system call, ABI and action, with a
count, first and last seen, and the profile that decided it when known.

It reads the kernel's seccomp audit records (type 1326) from the audit netlink
multicast group, beside auditd if one runs, without its rate limit. A record
names its process by pid and reaches user space a moment after the call, when
a short-lived process (a command a shell forked, one a Kill action ended) is
often gone: --attribute-exited (on by default) loads an eBPF program on
process exit (sched_process_exit: once per exit of a process under seccomp,
nothing on any system call) that keeps where such a process was, so that its
records still name its workload; with --attribute-exited=false they are
counted as unattributed. The kernel logs
Kill and Audit (SCMP_ACT_LOG) always, and Block (SCMP_ACT_ERRNO) only when the
profile carries SECCOMP_FILTER_FLAG_LOG: kscmp merge --runtime crun writes it;
runc 1.1.5 refuses it, so Block refusals under runc are not seen by audit.

--exit-errors sees them: it attaches an eBPF program to sys_exit that counts
a call returning EPERM in a runc container whose profile (the bundle's
config.json, found from --runtime-root) refuses that call with EPERM whatever
its arguments; a genuine EPERM of a call the profile allows is not counted.
Off by default: the program runs on every system call of the node (one
compare on calls that do not fail with EPERM; BENCHMARKS.md). Containers are
watched from the next second on: a refusal in a container's first second may
be missed.

JSON (kind ViolationReport) to -o FILE or a pipe, a table on a terminal.
--follow rewrites -o every second (a table: prints new entries) until Ctrl-C.
Any non-zero lost counter means the report may be incomplete.

Needs root (CAP_AUDIT_READ, CAP_AUDIT_CONTROL; CAP_BPF and CAP_PERFMON for
--attribute-exited and --exit-errors): exit code 4 when audit netlink (or the
process-exit or sys_exit program) is not available.

--cluster reads no audit record here: it asks every kscmp agent (the
DaemonSet, which watches its node the same way) for what it has seen since it
started, through the API server's pod proxy, and writes their union, one
report with a "nodes" list saying which agents answered; --namespace,
--selector and --container filter it, --since keeps what was last seen
within that time. Needs list on pods and get on pods/proxy in the agents'
namespace (the manifests' kscmp-violations role). A node whose agent did not
answer is named on stderr and the exit code is 6, unless --allow-partial.`

// attributeExitedUsage is the --attribute-exited flag's help, the same for
// kscmp violations and kscmp agent.
const attributeExitedUsage = "name the workload of a process gone before its record is read (eBPF on process exit, nothing on system calls; needs CAP_BPF, CAP_PERFMON); false: such records count as unattributed"

func newViolationsCmd() *cobra.Command {
	var fl violationsFlags
	cmd := &cobra.Command{
		Use:   "violations [--duration D | --follow] [-o FILE]",
		Short: "Report the system calls seccomp profiles refused or logged (audit), per workload",
		Long:  violationsLong,
		Example: `  kscmp violations --duration 10m -o violations.json
  kscmp violations --duration 10m --exit-errors -o violations.json
  kscmp violations --follow --namespace shop --selector app=web
  kscmp violations --cluster --namespace shop --since 24h -o violations.json
  kscmp recommend --from violations.json --existing policies/ -o policies/`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return fl.run(cmd) },
	}
	fl.register(cmd.Flags())
	return cmd
}

func (fl *violationsFlags) register(f *pflag.FlagSet) {
	f.DurationVarP(&fl.duration, "duration", "d", time.Minute, "how long to watch; 0 watches until Ctrl-C")
	f.BoolVarP(&fl.follow, "follow", "f", false, "watch until Ctrl-C, showing entries as they come (rewrites -o every second)")
	f.StringVarP(&fl.namespace, "namespace", "n", "", "only pods in this Kubernetes namespace")
	f.StringVarP(&fl.selector, "selector", "l", "", "only pods with these labels, k=v[,k=v]")
	f.StringVarP(&fl.container, "container", "c", "", "only this container (name in a pod, or container id prefix)")
	f.StringVar(&fl.unit, "systemd-unit", "", "only this systemd unit")
	f.StringVar(&fl.cgroup, "cgroup", "", "only workloads in this cgroup v2 path or below it")
	f.IntVar(&fl.maxEntries, "max-entries", violations.DefaultMaxEntries, "distinct (workload, call, action) entries kept; more are counted as lost")
	f.BoolVar(&fl.exitErrors, "exit-errors", false, "also count EPERM refusals of runc containers at system call exit (eBPF on sys_exit; runc cannot log them)")
	f.StringSliceVar(&fl.runtimeRoots, "runtime-root", violations.DefaultRuntimeRoots, "with --exit-errors: runc state directories (globs) to find containers and their profiles in")
	f.BoolVar(&fl.attributeExited, "attribute-exited", true, attributeExitedUsage)
	f.StringVar(&fl.kubeconfig, "kubeconfig", "", "kubeconfig to resolve pods with; default in-cluster, $KUBECONFIG, ~/.kube/config, else pods are not resolved")
	f.StringVar(&fl.node, "node", "", "this node's name in Kubernetes; default $NODE_NAME, else the host name")
	f.StringVarP(&fl.output, "output", "o", "-", "report file (JSON), - for stdout (a table on a terminal)")
	f.BoolVar(&fl.cluster, "cluster", false, "the union of every kscmp agent's report (through the API server) instead of watching this node")
	f.StringVar(&fl.agentNamespace, "agent-namespace", "kscmp-system", "with --cluster: the agents' namespace")
	f.StringVar(&fl.agentSelector, "agent-selector", "app.kubernetes.io/name=kscmp-agent", "with --cluster: the agent pods' labels")
	f.DurationVar(&fl.since, "since", 0, "with --cluster: only entries last seen within this time; 0 keeps all since each agent started")
	f.BoolVar(&fl.allowPartial, "allow-partial", false, "with --cluster: exit 0 although some agent did not answer")
}

// run watches with the options the flags give and writes the report.
func (fl *violationsFlags) run(cmd *cobra.Command) error {
	fl.durationSet = cmd.Flags().Changed("duration")
	if fl.cluster {
		return fl.runCluster(cmd)
	}
	for _, name := range []string{"agent-namespace", "agent-selector", "since", "allow-partial"} {
		if cmd.Flags().Changed(name) {
			return usageErr("--%s is for --cluster", name)
		}
	}
	opts, err := fl.options()
	if err != nil {
		return err
	}
	toFile := fl.output != "-" && fl.output != ""
	if toFile {
		if err := fsutil.CheckWritable(fl.output); err != nil {
			return fmt.Errorf("-o: %w", err)
		}
	}
	if opts.Pods, err = podLookup(cmd.Context(), fl.kubeconfig, fl.node); err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	table := !toFile && isTerminal(out)
	if fl.follow {
		opts.Update = fl.follower(out, toFile, table)
	}
	rep, err := violations.Monitor(cmd.Context(), opts)
	if errors.Is(err, violations.ErrUnsupported) {
		return &exitError{exitUnsupported, fmt.Errorf("%w (violations needs root: CAP_AUDIT_READ and CAP_AUDIT_CONTROL, and a kernel with audit; CAP_BPF, CAP_PERFMON and kernel BTF for --attribute-exited, on by default, and --exit-errors)", err)}
	}
	if err != nil {
		return err
	}
	return fl.write(cmd, rep, !(table && fl.follow))
}

// write writes rep to -o (JSON), or to stdout: a table (with its header
// when header) on a terminal, else JSON.
func (fl *violationsFlags) write(cmd *cobra.Command, rep *violation.Report, header bool) error {
	out := cmd.OutOrStdout()
	switch {
	case fl.output != "-" && fl.output != "":
		if _, err := rep.WriteFile(fl.output); err != nil {
			return err
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "kscmp: %d violations in %s (lost: %d)\n", len(rep.Violations), fl.output, rep.Lost.Total())
		return nil
	case isTerminal(out):
		return writeViolationTable(out, rep, nil, header)
	}
	data, err := rep.Marshal()
	if err != nil {
		return err
	}
	_, err = out.Write(data)
	return err
}

// runCluster is --cluster: every agent's report through the API server,
// united, filtered, written; a node whose agent did not answer is named
// and makes the exit code exitPartial unless --allow-partial.
func (fl *violationsFlags) runCluster(cmd *cobra.Command) error {
	for _, name := range violationsLocalOnly {
		if cmd.Flags().Changed(name) {
			return usageErr("--%s watches this node; --cluster reads the agents' reports (filter them with --namespace, --selector, --container, --since)", name)
		}
	}
	if fl.since < 0 {
		return usageErr("--since %v: must not be negative", fl.since)
	}
	sel, err := api.ParseLabels(fl.selector)
	if err != nil {
		return usageErr("--selector: %w", err)
	}
	if fl.output != "-" && fl.output != "" {
		if err := fsutil.CheckWritable(fl.output); err != nil {
			return fmt.Errorf("-o: %w", err)
		}
	}
	cfg, err := restConfig(fl.kubeconfig)
	if err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	var since time.Time
	if fl.since > 0 {
		since = time.Now().Add(-fl.since)
	}
	// The agents filter what they send; the union is filtered again, so
	// that the output holds nothing else whatever an agent sent.
	rep, err := agent.CollectViolations(cmd.Context(), kube, agent.CollectOptions{Namespace: fl.agentNamespace, Selector: fl.agentSelector,
		Filter: agent.ReportFilter{Namespace: fl.namespace, Selector: fl.selector, Container: fl.container, Since: since}})
	if err != nil {
		return err
	}
	filter := discover.Filter{Namespace: fl.namespace, Selector: sel, Container: fl.container}
	rep.Violations = slices.DeleteFunc(rep.Violations, func(v violation.Violation) bool {
		return !filter.Match(0, v.Identity) || v.LastSeen.Before(since)
	})
	if err := fl.write(cmd, rep, true); err != nil {
		return err
	}
	var bad []string
	for _, n := range rep.Nodes {
		if !n.Collected {
			bad = append(bad, n.Name)
			fmt.Fprintf(cmd.ErrOrStderr(), "kscmp: node %s: agent %s not collected: %s\n", escape.Line(orDash(n.Name)), n.Agent, escape.Line(n.Error))
		}
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "kscmp: the reports of %d of %d agents\n", len(rep.Nodes)-len(bad), len(rep.Nodes))
	if len(bad) > 0 && !fl.allowPartial {
		return &exitError{exitPartial, fmt.Errorf("violations of %d of %d nodes not collected: %s (--allow-partial accepts it)", len(bad), len(rep.Nodes), strings.Join(bad, ", "))}
	}
	return nil
}

// options turns the flags into violations.Options; a problem names its
// flag.
func (fl *violationsFlags) options() (violations.Options, error) {
	if fl.duration < 0 {
		return violations.Options{}, usageErr("--duration %v: must not be negative (0 watches until Ctrl-C)", fl.duration)
	}
	if fl.follow && fl.durationSet {
		return violations.Options{}, usageErr("--follow and --duration: give one (--follow watches until Ctrl-C)")
	}
	sel, err := api.ParseLabels(fl.selector)
	if err != nil {
		return violations.Options{}, usageErr("--selector: %w", err)
	}
	if fl.maxEntries < 1 {
		return violations.Options{}, usageErr("--max-entries %d: must be at least 1", fl.maxEntries)
	}
	opts := violations.Options{Duration: fl.duration, MaxEntries: fl.maxEntries, AttributeExited: fl.attributeExited,
		Filter: discover.Filter{Namespace: fl.namespace, Selector: sel, Container: fl.container, Unit: fl.unit, Cgroup: fl.cgroup}}
	if fl.follow {
		opts.Duration = 0
	}
	if fl.exitErrors {
		opts.ExitErrors = violations.RuntimeWatches(fl.runtimeRoots)
	}
	return opts, nil
}

// follower returns the Update of --follow: the file rewritten (atomic,
// skipped when unchanged), or on a terminal the entries not shown yet.
func (fl *violationsFlags) follower(out io.Writer, toFile, table bool) func(*violation.Report) {
	shown := map[string]uint64{}
	return func(r *violation.Report) {
		switch {
		case toFile:
			_, _ = r.WriteFile(fl.output)
		case table:
			_ = writeViolationTable(out, r, shown, len(shown) == 0)
		}
	}
}

// writeViolationTable writes the entries as a table for people; with
// shown, only the entries new or grown since, and it records them.
func writeViolationTable(w io.Writer, r *violation.Report, shown map[string]uint64, header bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if header {
		fmt.Fprintln(tw, "WORKLOAD\tSYSCALL\tABI\tACTION\tCOUNT\tLAST SEEN\tPROFILE")
	}
	for _, v := range r.Violations {
		k := v.Key()
		if shown != nil {
			if shown[k] == v.Count {
				continue
			}
			shown[k] = v.Count
		}
		name := v.Syscall
		if name == "" {
			name = fmt.Sprintf("#%d", v.Number)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", escape.Line(v.Identity.String()), name, v.ABI, v.Action,
			v.Count, v.LastSeen.Local().Format(time.TimeOnly), escape.Line(orDash(v.Profile)))
	}
	if shown == nil && r.Lost.Total()+r.Lost.Unattributed > 0 {
		fmt.Fprintf(tw, "lost: audit %d, kernel %d, overflow %d, unparsed %d; unattributed %d\n",
			r.Lost.Audit, r.Lost.Kernel, r.Lost.Overflow, r.Lost.Unparsed, r.Lost.Unattributed)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}
