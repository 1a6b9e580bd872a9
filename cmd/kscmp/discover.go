package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/kubearmor/kscmp/discover"
	"github.com/kubearmor/kscmp/internal/fsutil"
)

func newDiscoverCmd() *cobra.Command {
	var (
		duration  time.Duration
		namespace string
		selector  string
		container string
		unit      string
		pids      []int
		machine   int
		cgroup    string
		all       bool
		withRT    bool
		kubecfg   string
		node      string
		output    string
		maxKeys   int
		interval  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "discover [--duration 10m] [-o report.json]",
		Short: "Record which system calls each workload makes (eBPF), and write an observation report",
		Long: `Discover attaches kscmp's eBPF recorder to the kernel's system call entry and
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

Needs root (CAP_BPF and CAP_PERFMON) and a kernel with BTF. Exit code 2 when the
recorder cannot be loaded.`,
		Example: `  kscmp discover --duration 10m -o report.json
  kscmp discover --duration 2m --namespace shop --selector app=web
  kscmp discover --systemd-unit nginx.service --duration 5m -o nginx.json
  kscmp discover --machine-pid "$(machinectl show -p Leader --value web1)" --systemd-unit nginx.service`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			sel, err := parseLabels(selector)
			if err != nil {
				return err
			}
			opts := discover.Options{
				Duration: duration,
				Interval: interval,
				Recorder: discover.RecorderOptions{MaxKeys: maxKeys, IncludeHost: all || unit != "" || cgroup != "", IncludeRuntime: withRT},
				Filter: discover.Filter{Namespace: namespace, Selector: sel, Container: container,
					Unit: unit, Cgroup: cgroup},
			}
			if machine != 0 {
				ns, err := discover.MountNSOf(fmt.Sprintf("/proc/%d", machine))
				if err != nil {
					return usageErr("--machine-pid %d: %w", machine, err)
				}
				opts.Recorder.HostMountNS, opts.Recorder.IncludeHost = ns, true
			}
			for _, pid := range pids {
				key, host, err := pidKey(pid, opts.Recorder.HostMountNS)
				if err != nil {
					return usageErr("--pid %d: %w", pid, err)
				}
				if host {
					opts.Recorder.IncludeHost = true
				}
				opts.Filter.Keys = append(opts.Filter.Keys, key)
			}
			stderr := cmd.ErrOrStderr()
			client, err := kubeClient(kubecfg)
			switch {
			case errors.Is(err, errNoCluster):
				slog.Debug("discover: pods are not resolved", "reason", err)
			case err != nil:
				return usageErr("%w", err)
			default:
				w, err := discover.NewPodWatcher(client, nodeName(node))
				if err != nil {
					return err
				}
				if err := w.Start(cmd.Context(), 30*time.Second); err != nil {
					return err
				}
				opts.Pods = w
			}
			opts.Progress = progressPrinter(stderr, isTerminal(stderr), duration)
			report, err := discover.Discover(cmd.Context(), opts)
			if err != nil {
				return invalidErr(err)
			}
			endProgress(stderr)
			data, err := report.Marshal()
			if err != nil {
				return err
			}
			if output == "-" || output == "" {
				_, err = cmd.OutOrStdout().Write(data)
				return err
			}
			if _, err := fsutil.WriteFile(output, data, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "kscmp: %d workloads in %s (lost: %d)\n", len(report.Workloads), output, report.Lost.Total())
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVarP(&duration, "duration", "d", 10*time.Minute, "how long to record; 0 records until Ctrl-C")
	f.StringVarP(&namespace, "namespace", "n", "", "only pods in this Kubernetes namespace")
	f.StringVarP(&selector, "selector", "l", "", "only pods with these labels, k=v[,k=v]")
	f.StringVarP(&container, "container", "c", "", "only this container (name in a pod, or container id prefix)")
	f.StringVar(&unit, "systemd-unit", "", "only this systemd unit (records the host too)")
	f.IntSliceVar(&pids, "pid", nil, "only the workload of these processes (their container, or their cgroup on the host)")
	f.IntVar(&machine, "machine-pid", 0, "record the systemd machine that PID is in (a systemd-nspawn container, e.g. PID from 'machinectl show -p Leader --value NAME') as the host: its services are told apart by cgroup (the real host's processes then count as one container)")
	f.StringVar(&cgroup, "cgroup", "", "only workloads in this cgroup v2 path or below it (records the host too)")
	f.BoolVar(&all, "all", false, "also record processes in the host's mount namespace, by cgroup")
	f.BoolVar(&withRT, "include-runtime", false, "also record the calls runc, crun and systemd make while they set up a container or service, before it runs (to find a runtime's start-up set)")
	f.StringVarP(&output, "output", "o", "-", "report file (JSON), - for stdout")
	f.StringVar(&kubecfg, "kubeconfig", "", "kubeconfig to resolve pods with; default in-cluster, $KUBECONFIG, ~/.kube/config, else pods are not resolved")
	f.StringVar(&node, "node", "", "this node's name in Kubernetes; default $NODE_NAME, else the host name")
	f.IntVar(&maxKeys, "max-keys", discover.DefaultMaxKeys, "workloads the kernel map holds; more are counted as lost")
	f.DurationVar(&interval, "interval", time.Second, "how often to read the kernel's sets and show progress")
	return cmd
}

// pidKey returns the recorder key of a process: its mount namespace when it
// is not the host's (hostNS, or this process's when 0), else its cgroup
// (host is then true).
func pidKey(pid int, hostNS uint32) (discover.Key, bool, error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	mine := hostNS
	if mine == 0 {
		var err error
		if mine, err = discover.MountNSOf("/proc/self"); err != nil {
			return 0, false, err
		}
	}
	theirs, err := discover.MountNSOf(dir)
	if err != nil {
		return 0, false, err
	}
	if theirs != mine {
		id, err := discover.MountNSID(dir)
		return discover.MountNSKey(id), false, err
	}
	id, err := discover.CgroupIDOf(dir)
	return discover.CgroupKey(id), true, err
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
