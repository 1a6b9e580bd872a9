package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/merge"
)

// mergeFlags are the flags of kscmp merge.
type mergeFlags struct {
	files                     []string
	namespace, labels         string
	container, unit, hostName string
	runtime, family, output   string
	explain                   bool
}

const mergeLong = `Merge reads policies, keeps those that select the target (namespace, pod labels,
container name) and merges them into one profile: deny wins (Kill > Block >
Audit > Allow); any allow rule makes the profile an allow-list (every other
system call fails with EPERM), which then also allows what the container runtime
calls while starting the container (--runtime; a systemd drop-in, -o systemd,
gets none unless --runtime is given). It warns on stderr when the profile
refuses what every dynamically linked program calls to start (mmap, mprotect,
openat, read, ...): nothing would run under it.

Output (-o): json, the OCI/Docker seccomp profile that kubelet, containerd,
CRI-O, runc, crun and docker read; systemd, a unit drop-in with
SystemCallFilter=. With --explain it prints instead, for every system call, its
action and where it came from (-o json: the same as data).

Invalid policies make it exit 2 and print nothing.`

func newMergeCmd() *cobra.Command {
	var fl mergeFlags
	cmd := &cobra.Command{
		Use:   "merge -f PATH... (--namespace NS --labels k=v[,k=v] | --systemd-unit U | --container-name N)",
		Short: "Merge the policies that select one container into its seccomp profile",
		Long:  mergeLong,
		Example: `  kscmp merge -f policies/ --namespace wordpress-mysql --labels app=wordpress
  kscmp merge -f policies/ --namespace ns --labels app=web --container nginx --runtime crun -o systemd
  kscmp merge -f policies/ --namespace ns --labels app=web --explain`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return fl.run(cmd) },
	}
	fl.register(cmd.Flags())
	return cmd
}

func (fl *mergeFlags) register(f *pflag.FlagSet) {
	f.StringSliceVarP(&fl.files, "filename", "f", nil, "policy files or directories (repeatable, comma-separated)")
	f.StringVarP(&fl.namespace, "namespace", "n", "", "the target's namespace (required)")
	f.StringVarP(&fl.labels, "labels", "l", "", "the target pod's labels, k=v[,k=v]")
	f.StringVarP(&fl.container, "container", "c", "", "the target container's name (policies with a containers list apply only to those)")
	f.StringVar(&fl.unit, "systemd-unit", "", "target a systemd service on a host (policies with selector.systemdUnits)")
	f.StringVar(&fl.hostName, "container-name", "", "target a container run without Kubernetes: docker/podman name or runc/crun id (policies with selector.containerNames)")
	f.StringVar(&fl.runtime, "runtime", string(merge.RuntimeRunc), "container runtime whose start-up system calls an allow-list needs: runc, crun, any (both) or none; with -o systemd, none unless given")
	f.StringVar(&fl.family, "arch-family", defaultFamily(), "the node's architecture family when no policy names architectures: amd64 or arm64")
	f.StringVarP(&fl.output, "output", "o", "json", "output format: json (OCI seccomp profile) or systemd (unit drop-in)")
	f.BoolVar(&fl.explain, "explain", false, "print every system call's action and where it came from instead of the profile")
}

// run merges the policies for the target the flags name and prints the
// profile or its explanation.
func (fl *mergeFlags) run(cmd *cobra.Command) error {
	target, err := fl.target(cmd.Flags().Changed("runtime"))
	if err != nil {
		return err
	}
	if len(fl.files) == 0 {
		return usageErr("no policies given: use -f PATH (a file or a directory)")
	}
	policies, err := loadPolicies(cmd, fl.files)
	if err != nil {
		return err
	}
	rs, err := merge.Merge(policies, target)
	if err != nil {
		return invalidErr(err)
	}
	if rs.Empty() {
		return &exitError{exitNoMatch, fmt.Errorf("no policy selects %s (%d policies read)", target, len(policies))}
	}
	if w := rs.StarterWarning(target.Family.Native()); w != "" {
		fmt.Fprintf(cmd.ErrOrStderr(), "kscmp: warning: %s: %s\n", target, w)
	}
	return fl.print(cmd.OutOrStdout(), rs, target, cmd.Flags().Changed("output"))
}

// target turns the flags into the merge target; a problem names its flag.
// A systemd drop-in (-o systemd) is for a unit that systemd starts itself,
// so no container runtime's start-up set belongs in it unless --runtime
// (flag, environment or config file) asks for one.
func (fl *mergeFlags) target(runtimeGiven bool) (merge.Target, error) {
	if err := checkOutput(fl.output, "json", "systemd"); err != nil {
		return merge.Target{}, err
	}
	host := fl.unit != "" || fl.hostName != ""
	switch {
	case host && (fl.namespace != "" || fl.labels != "" || fl.container != ""):
		return merge.Target{}, usageErr("--systemd-unit and --container-name select a host workload: give no --namespace, --labels or --container with them")
	case fl.unit != "" && fl.hostName != "":
		return merge.Target{}, usageErr("give --systemd-unit or --container-name, not both")
	case !host && fl.namespace == "":
		return merge.Target{}, usageErr("--namespace is required (or --systemd-unit / --container-name for a host workload)")
	}
	labels, err := api.ParseLabels(fl.labels)
	if err != nil {
		return merge.Target{}, usageErr("--labels: %w", err)
	}
	rt, err := merge.ParseRuntime(fl.runtime)
	if err != nil {
		return merge.Target{}, usageErr("--runtime: %w", err)
	}
	if fl.output == "systemd" && !runtimeGiven {
		rt = merge.RuntimeNone
	}
	fam := api.Family(fl.family)
	if _, err := fam.Arches(); err != nil {
		return merge.Target{}, usageErr("--arch-family: %w", err)
	}
	return merge.Target{Namespace: fl.namespace, Labels: labels, Container: fl.container, Unit: fl.unit,
		ContainerName: fl.hostName, Family: fam, Runtime: rt}, nil
}

// print writes the rule set in the form -o and --explain ask for.
func (fl *mergeFlags) print(out io.Writer, rs *merge.RuleSet, target merge.Target, outputGiven bool) error {
	switch {
	case fl.explain && fl.output == "json" && outputGiven:
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rs)
	case fl.explain:
		if _, err := fmt.Fprintf(out, "target: %s, family %s\n", target, target.Family); err != nil {
			return err
		}
		return rs.Explain(out)
	case fl.output == "systemd":
		_, err := out.Write(rs.Systemd())
		return err
	}
	b, err := rs.MarshalOCI()
	if err != nil {
		return err
	}
	_, err = out.Write(b)
	return err
}

func defaultFamily() string {
	if runtime.GOARCH == "arm64" {
		return string(api.FamilyARM64)
	}
	return string(api.FamilyAMD64)
}
