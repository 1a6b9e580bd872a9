package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/merge"
)

func newMergeCmd() *cobra.Command {
	var (
		files     []string
		namespace string
		labels    string
		container string
		unit      string
		hostName  string
		rt        string
		family    string
		output    string
		explain   bool
	)
	cmd := &cobra.Command{
		Use:   "merge -f PATH... (--namespace NS --labels k=v[,k=v] | --systemd-unit U | --container-name N)",
		Short: "Merge the policies that select one container into its seccomp profile",
		Long: `Merge reads policies, keeps those that select the target (namespace, pod labels,
container name) and merges them into one profile: deny wins (Kill > Block >
Audit > Allow); any allow rule makes the profile an allow-list (every other
system call fails with EPERM), which then also allows what the container runtime
calls while starting the container (--runtime).

Output (-o): json, the OCI/Docker seccomp profile that kubelet, containerd,
CRI-O, runc, crun and docker read; systemd, a unit drop-in with
SystemCallFilter=. With --explain it prints instead, for every system call, its
action and where it came from (-o json: the same as data).

Invalid policies make it exit 2 and print nothing.`,
		Example: `  kscmp merge -f policies/ --namespace wordpress-mysql --labels app=wordpress
  kscmp merge -f policies/ --namespace ns --labels app=web --container nginx --runtime crun -o systemd
  kscmp merge -f policies/ --namespace ns --labels app=web --explain`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, "json", "systemd"); err != nil {
				return err
			}
			if len(files) == 0 {
				return usageErr("no policies given: use -f PATH (a file or a directory)")
			}
			host := unit != "" || hostName != ""
			switch {
			case host && (namespace != "" || labels != "" || container != ""):
				return usageErr("--systemd-unit and --container-name select a host workload: give no --namespace, --labels or --container with them")
			case unit != "" && hostName != "":
				return usageErr("give --systemd-unit or --container-name, not both")
			case !host && namespace == "":
				return usageErr("--namespace is required (or --systemd-unit / --container-name for a host workload)")
			}
			lbls, err := parseLabels(labels)
			if err != nil {
				return err
			}
			r, err := merge.ParseRuntime(rt)
			if err != nil {
				return usageErr("--runtime: %w", err)
			}
			fam := api.Family(family)
			if _, err := fam.Arches(); err != nil {
				return usageErr("--arch-family: %w", err)
			}
			policies, err := loadPolicies(files)
			if err != nil {
				return err
			}
			target := merge.Target{Namespace: namespace, Labels: lbls, Container: container, Unit: unit, ContainerName: hostName, Family: fam, Runtime: r}
			rs, err := merge.Merge(policies, target)
			if err != nil {
				return err
			}
			if rs.Empty() {
				return &exitError{exitNoMatch, fmt.Errorf("no policy selects %s (%d policies read)", target, len(policies))}
			}
			out := cmd.OutOrStdout()
			switch {
			case explain && output == "json" && cmd.Flags().Changed("output"):
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(rs)
			case explain:
				if _, err := fmt.Fprintf(out, "target: %s, family %s\n", target, fam); err != nil {
					return err
				}
				return rs.Explain(out)
			case output == "systemd":
				_, err := out.Write(rs.Systemd())
				return err
			default:
				b, err := rs.MarshalOCI()
				if err != nil {
					return err
				}
				_, err = out.Write(b)
				return err
			}
		},
	}
	f := cmd.Flags()
	f.StringSliceVarP(&files, "filename", "f", nil, "policy files or directories (repeatable, comma-separated)")
	f.StringVarP(&namespace, "namespace", "n", "", "the target's namespace (required)")
	f.StringVarP(&labels, "labels", "l", "", "the target pod's labels, k=v[,k=v]")
	f.StringVarP(&container, "container", "c", "", "the target container's name (policies with a containers list apply only to those)")
	f.StringVar(&unit, "systemd-unit", "", "target a systemd service on a host (policies with selector.systemdUnits)")
	f.StringVar(&hostName, "container-name", "", "target a container run without Kubernetes: docker/podman name or runc/crun id (policies with selector.containerNames)")
	f.StringVar(&rt, "runtime", string(merge.RuntimeRunc), "container runtime whose start-up system calls an allow-list needs: runc, crun, any (both) or none")
	f.StringVar(&family, "arch-family", defaultFamily(), "the node's architecture family when no policy names architectures: amd64 or arm64")
	f.StringVarP(&output, "output", "o", "json", "output format: json (OCI seccomp profile) or systemd (unit drop-in)")
	f.BoolVar(&explain, "explain", false, "print every system call's action and where it came from instead of the profile")
	return cmd
}

func defaultFamily() string {
	if runtime.GOARCH == "arm64" {
		return string(api.FamilyARM64)
	}
	return string(api.FamilyAMD64)
}

// parseLabels reads "k=v,k=v".
func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return nil, usageErr("--labels: %q: want key=value", kv)
		}
		if _, dup := out[k]; dup {
			return nil, usageErr("--labels: key %q given twice", k)
		}
		out[k] = v
	}
	return out, nil
}
