package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/deploy"
	"github.com/kubearmor/kscmp/deploy/agent"
	"github.com/kubearmor/kscmp/discover/violations"
	"github.com/kubearmor/kscmp/merge"
)

func newAgentCmd() *cobra.Command {
	var (
		mode, node, kubeletRoot, kubecfg, rt, family string
		workers                                      int
		restartWorkloads, aggregate                  bool
		leaseNamespace                               string
		watchViolations, exitErrors, attributeExited bool
		runtimeRoots                                 []string
		violationInterval                            time.Duration
		maxEvents                                    int
		metricsAddr                                  string
	)
	cmd := &cobra.Command{
		Use:   "agent --mode enforce",
		Short: "Keep this node's seccomp profiles equal to the merge of the current policies (DaemonSet)",
		Long: `Agent watches the KubeArmorSeccompPolicies of all namespaces and the pods of
this node, and keeps <kubelet-root>/seccomp/kubearmor/<namespace>/<profile>.json
equal to the merged profile of every container: written atomically, skipped when
unchanged, removed when no policy produces it and no pod on the node was started
with it. On start it reconciles everything.

The kubelet's root directory: --kubelet-root, else the running kubelet's --root-dir,
else a known distribution's default, else /var/lib/kubelet (see README).`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if mode != "enforce" {
				return usageErr("--mode %q: only enforce is implemented", mode)
			}
			r, err := merge.ParseRuntime(rt)
			if err != nil {
				return usageErr("--runtime: %w", err)
			}
			if _, err := api.Family(family).Arches(); err != nil {
				return usageErr("--arch-family: %w", err)
			}
			root, src, err := deploy.KubeletRootDir(kubeletRoot, "/proc")
			if err != nil {
				return usageErr("%w", err)
			}
			cfg, err := restConfig(kubecfg)
			if err != nil {
				return err
			}
			// Status updates for many policies at start; watches do the rest.
			cfg.QPS, cfg.Burst = 50, 100
			kube, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return err
			}
			dyn, err := dynamic.NewForConfig(cfg)
			if err != nil {
				return err
			}
			n := nodeName(node)
			slog.Info("agent starting", "node", n, "kubelet_root", root, "found_by", src, "runtime", r)
			opts := agent.Options{Node: n, SeccompDir: filepath.Join(root, "seccomp"),
				Family: api.Family(family), Runtime: r, Workers: workers, RestartWorkloads: restartWorkloads,
				Aggregate: aggregate, LeaseNamespace: envDefault(leaseNamespace, "POD_NAMESPACE", "default")}
			if watchViolations {
				opts.Violations = &agent.ViolationOptions{Interval: violationInterval, MaxEvents: maxEvents, AttributeExited: attributeExited}
				if exitErrors {
					opts.Violations.ExitErrors = violations.RuntimeWatches(runtimeRoots)
				}
			} else if exitErrors {
				return usageErr("--exit-errors needs --violations")
			}
			if metricsAddr != "" {
				opts.Metrics = agent.NewMetrics(opts.SeccompDir, 0)
			}
			a, err := agent.New(kube, dyn, opts)
			if err != nil {
				return err
			}
			if metricsAddr != "" {
				// Metrics and the violation report are an add-on: a taken
				// port is logged, and the profiles, the agent's job, still
				// install.
				if err := serveMetrics(cmd.Context(), metricsAddr, opts.Metrics, a.ViolationsHandler()); err != nil {
					slog.Error("agent: metrics not served", "error", err)
				}
			}
			return a.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&mode, "mode", "enforce", "enforce: install the merged profiles")
	f.StringVar(&node, "node", "", "this node's name; default $NODE_NAME, else the host name")
	f.StringVar(&kubeletRoot, "kubelet-root", "", "the kubelet's root directory (profiles go to <root>/seccomp/kubearmor)")
	f.StringVar(&kubecfg, "kubeconfig", "", "kubeconfig; default in-cluster, $KUBECONFIG, ~/.kube/config")
	f.StringVar(&rt, "runtime", string(merge.RuntimeRunc), "the node's OCI runtime, whose start-up set allow-lists get: runc, crun, any (both) or none")
	f.StringVar(&family, "arch-family", defaultFamily(), "the node's architecture family: amd64 or arm64")
	f.IntVar(&workers, "workers", 2, "namespaces reconciled at once")
	f.BoolVar(&restartWorkloads, "restart-workloads", false, "roll the Deployment, StatefulSet or DaemonSet of a pod here that runs with a profile the policies no longer give (a running container keeps the filter it started with)")
	f.BoolVar(&aggregate, "aggregate", true, "also summarise every node's status into the policies' status (leader-elected; the DaemonSet sets false: the webhook Deployment does it)")
	f.StringVar(&leaseNamespace, "lease-namespace", "", "with --aggregate: the namespace of the leader-election Lease; default $POD_NAMESPACE, else default")
	f.BoolVar(&watchViolations, "violations", true, "watch what seccomp refuses or logs in this node's pods (audit records; needs CAP_AUDIT_READ): Events on the pods and metrics")
	f.DurationVar(&violationInterval, "violation-interval", agent.DefaultViolationInterval, "one Event per pod container, call and action per interval, with the count")
	f.BoolVar(&exitErrors, "exit-errors", false, "also count EPERM refusals of runc containers at system call exit (eBPF on sys_exit, every call of the node: off by default, cost in BENCHMARKS.md; needs CAP_BPF, CAP_PERFMON, the runtime state directories and the host's cgroup tree); runc cannot log them to audit")
	f.StringSliceVar(&runtimeRoots, "runtime-root", violations.DefaultRuntimeRoots, "with --exit-errors: runc state directories (globs) to find containers and their profiles in")
	f.BoolVar(&attributeExited, "attribute-exited", true, attributeExitedUsage)
	f.IntVar(&maxEvents, "violation-max-events", agent.DefaultMaxEvents, "at most this many violation Events per interval (largest counts first; the rest only in metrics)")
	f.StringVar(&metricsAddr, "metrics-addr", ":9476", "address to serve Prometheus /metrics and the node's violation report (/violations, for kscmp violations --cluster) on (plain HTTP; HOST:PORT, an IPv6 host with or without brackets); \"\" for none")
	cmd.AddCommand(newAgentInstallProfileCmd())
	return cmd
}

// serveMetrics listens on addr now (a taken port is an error here, not in
// a goroutine later) and serves /metrics and the node's violation report
// (agent.ViolationsPath, read by kscmp violations --cluster) until ctx is
// done.
func serveMetrics(ctx context.Context, addr string, m *agent.Metrics, violations http.Handler) error {
	ln, err := net.Listen("tcp", listenAddr(addr))
	if err != nil {
		return fmt.Errorf("--metrics-addr %q: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	mux.Handle(agent.ViolationsPath, violations)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("agent: metrics server", "addr", addr, "error", err)
		}
	}()
	slog.Info("agent: serving metrics", "addr", ln.Addr().String())
	return nil
}

// listenAddr brackets an IPv6 host in HOST:PORT: the DaemonSet gives
// "$(HOST_IP):9476", and the node's IP may be an IPv6 address, which
// net.Listen takes only as [IP]:PORT. Anything else is returned as given.
func listenAddr(addr string) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return addr
	}
	if ip := net.ParseIP(addr[:i]); ip != nil && ip.To4() == nil {
		return net.JoinHostPort(addr[:i], addr[i+1:])
	}
	return addr
}

func newAgentInstallProfileCmd() *cobra.Command {
	var (
		kubeletRoot, family string
		dryRun              bool
	)
	cmd := &cobra.Command{
		Use:   "install-profile",
		Short: "Install the agent's own seccomp profile (the DaemonSet's init container)",
		Long: `Install-profile writes the seccomp profile the agent itself runs under to
<kubelet-root>/seccomp/` + agent.OwnProfile + `,
atomically, and not at all when it is already there. The agent's container
names it as its Localhost profile, and the kubelet does not start a container
whose profile file is missing: the DaemonSet runs this first, in an init
container.

The profile is compiled from the agent's own policy (built into kscmp; the
system calls 'kscmp agent --mode enforce' was measured to make) with the
shared merger, plus the start-up calls of both runc and crun. The agent never
removes this file, and refuses a policy that would overwrite it.

Beside it goes <kubelet-root>/seccomp/` + agent.OwnBPFProfile + `:
the same plus bpf, for an agent that loads eBPF programs (--attribute-exited,
the default, and --exit-errors; the DaemonSet names it). The other keeps bpf
out, for an agent run with --attribute-exited=false and without --exit-errors
(the chart's agent.attributeExited=false).

The kubelet's root directory is found as for 'kscmp agent'.`,
		Example: `  kscmp agent install-profile --kubelet-root /var/lib/kubelet
  kscmp agent install-profile --dry-run > kscmp-agent.json   # print it, write nothing`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fam := api.Family(family)
			if _, err := fam.Arches(); err != nil {
				return usageErr("--arch-family: %w", err)
			}
			if dryRun {
				data, err := agent.OwnProfileJSON(fam)
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(data)
				return err
			}
			root, src, err := deploy.KubeletRootDir(kubeletRoot, "/proc")
			if err != nil {
				return usageErr("%w", err)
			}
			path, changed, err := agent.InstallOwnProfile(filepath.Join(root, "seccomp"), fam)
			if err != nil {
				return err
			}
			slog.Info("agent's own profile", "path", path, "written", changed, "kubelet_root_found_by", src)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeletRoot, "kubelet-root", "", "the kubelet's root directory (the profile goes to <root>/seccomp/"+agent.OwnProfile+")")
	f.StringVar(&family, "arch-family", defaultFamily(), "the node's architecture family: amd64 or arm64")
	f.BoolVar(&dryRun, "dry-run", false, "print the profile (OCI JSON) to stdout and write nothing")
	return cmd
}
