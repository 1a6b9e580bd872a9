package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/deploy"
	"github.com/kubearmor/kscmp/deploy/host"
	"github.com/kubearmor/kscmp/merge"
)

// hostFlags are the flags apply and remove share.
type hostFlags struct {
	files      []string
	systemd    bool
	dir        string
	root       string
	units      []string
	containers []string
	family     string
	runtime    string
	restart    bool
	dryRun     bool
	noVerify   bool
	output     string
}

func (h *hostFlags) register(cmd *cobra.Command, apply bool) {
	f := cmd.Flags()
	f.StringSliceVarP(&h.files, "filename", "f", nil, "policy files or directories (repeatable, comma-separated)")
	f.BoolVar(&h.systemd, "systemd", false, "systemd services: drop-ins in <root>/etc/systemd/system/<unit>.d/"+host.DropInName)
	f.StringVar(&h.dir, "dir", "", "containers without Kubernetes: one <name>.json profile per container name in this directory (e.g. "+host.DefaultDir+")")
	f.StringVar(&h.root, "root", "", "prefix every path with this directory (an image or a test tree); systemd is then neither reloaded nor restarted")
	f.StringSliceVar(&h.units, "unit", nil, "only these systemd units (repeatable; \"nginx\" means nginx.service)")
	f.StringSliceVar(&h.containers, "container-name", nil, "only these container names (repeatable)")
	f.BoolVar(&h.restart, "restart", false, "restart every systemd unit whose drop-in changed, so it runs under the new filter (a running process keeps the filter it started with)")
	f.BoolVar(&h.dryRun, "dry-run", false, "check everything and print what would change; write nothing")
	f.StringVarP(&h.output, "output", "o", "text", "output format: text, yaml or json (the list of changes)")
	if apply {
		f.StringVar(&h.family, "arch-family", defaultFamily(), "the machine's architecture family when no policy names architectures: amd64 or arm64")
		f.StringVar(&h.runtime, "runtime", string(merge.RuntimeRunc), "--dir: the OCI runtime that starts the containers (its start-up system calls are allowed): runc, crun or none")
		f.BoolVar(&h.noVerify, "no-verify", false, "--systemd: skip the check of each drop-in with systemd-analyze before writing")
	}
}

func (h *hostFlags) check() error {
	if err := checkOutput(h.output, "text", "yaml", "json"); err != nil {
		return err
	}
	switch {
	case h.systemd == (h.dir != ""):
		return usageErr("give exactly one of --systemd and --dir DIR")
	case h.systemd && len(h.containers) > 0:
		return usageErr("--container-name goes with --dir, not --systemd")
	case !h.systemd && len(h.units) > 0:
		return usageErr("--unit goes with --systemd, not --dir")
	}
	// Names given on the command line are checked by the same rules as
	// those of policies and manifests, and named by their flag.
	for _, u := range h.units {
		if err := api.ValidUnitName(api.UnitName(u)); err != nil {
			return usageErr("--unit %q: %w", u, err)
		}
	}
	for _, c := range h.containers {
		if err := api.ValidContainerName(c); err != nil {
			return usageErr("--container-name %q: %w", c, err)
		}
	}
	return nil
}

func (h *hostFlags) targets() []string {
	if h.systemd {
		return h.units
	}
	return h.containers
}

// installer is what apply and remove drive: host.Systemd or host.Dir.
type installer interface {
	Apply(context.Context, []*api.KubeArmorSeccompPolicy, host.Options) ([]host.Change, error)
	Remove(context.Context, []string, host.Options) ([]host.Change, error)
	Managed() ([]string, error)
}

func (h *hostFlags) installer(log *slog.Logger) (installer, error) {
	fam := api.Family(h.family)
	if h.family != "" {
		if _, err := fam.Arches(); err != nil {
			return nil, usageErr("--arch-family: %w", err)
		}
	}
	if h.systemd {
		s := &host.Systemd{Root: h.root, Family: fam, Log: log}
		if !h.noVerify {
			if _, err := exec.LookPath("systemd-analyze"); err != nil {
				return nil, &exitError{exitUnsupported, fmt.Errorf("%w: it checks every drop-in before kscmp writes it; install it, or pass --no-verify", deploy.ErrNoSystemdAnalyze)}
			}
			s.Verify = deploy.VerifySystemdDropIn
		}
		if h.root == "" || h.root == "/" {
			s.Manager = host.Systemctl{}
		}
		return s, nil
	}
	rt := merge.RuntimeRunc
	if h.runtime != "" {
		r, err := merge.ParseRuntime(h.runtime)
		if err != nil {
			return nil, usageErr("--runtime: %w", err)
		}
		rt = r
	}
	return &host.Dir{Root: h.root, Path: h.dir, Family: fam, Runtime: rt}, nil
}

// loadPolicies reads the policies of files (-f) with the limit on input
// files of cmd (--max-input-size).
func loadPolicies(cmd *cobra.Command, files []string) ([]*api.KubeArmorSeccompPolicy, error) {
	docs, err := api.LoadLimit(maxInput(cmd), files...)
	if err != nil {
		return nil, invalidErr(err)
	}
	policies := make([]*api.KubeArmorSeccompPolicy, len(docs))
	for i, d := range docs {
		policies[i] = d.Policy
	}
	return policies, nil
}

const applyLong = `Apply merges, for every host workload the policies select, all policies that
select it (deny wins) and installs the result:

--systemd: for each unit in selector.systemdUnits, the drop-in
  /etc/systemd/system/<unit>.d/` + host.DropInName + ` with SystemCallFilter= (an
  allow-list replaces any filter the unit sets itself; a deny-list adds to it),
  SystemCallArchitectures= (native only when no policy names architectures),
  SystemCallErrorNumber=EPERM and SystemCallLog= for Audit rules. Each drop-in is
  checked with systemd-analyze before anything is written. On the running
  system systemd is then reloaded, asked whether it loaded every drop-in with
  every system call (systemd ignores names it does not know; if it did not,
  every change is rolled back), and with --restart the changed units restart.

--dir DIR: for each name in selector.containerNames, DIR/<name>.json, the OCI
  seccomp profile that 'docker run --security-opt seccomp=DIR/<name>.json',
  podman and runc's config.json take (DIR is created at first use; its
  ` + host.ManifestName + ` lists the files kscmp manages).

All files are computed and checked before the first write: invalid policies
(exit 2) or a file kscmp did not write change nothing. Writes are atomic and
skipped when the content is already there. --prune also removes kscmp's files
of workloads no policy selects any more (the policies are then the whole
desired state). Exit 3 when no policy selects a host workload.`

func newApplyCmd() *cobra.Command {
	var h hostFlags
	var prune bool
	cmd := &cobra.Command{
		Use:   "apply -f PATH... (--systemd | --dir DIR)",
		Short: "Install the merged profiles of host workloads: systemd drop-ins or container profile files",
		Long:  applyLong,
		Example: `  kscmp apply -f policies/_host --systemd --restart
  kscmp apply -f policies/_host --systemd --unit nginx --dry-run -o yaml
  kscmp apply -f policies/_host --systemd --root /srv/image     # an image: no reload
  kscmp apply -f policies/_host --dir /etc/seccomp/kubearmor --prune
  docker run --security-opt seccomp=/etc/seccomp/kubearmor/web.json --name web nginx`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return h.apply(cmd, prune) },
	}
	h.register(cmd, true)
	cmd.Flags().BoolVar(&prune, "prune", false, "also remove kscmp's files of workloads no policy selects any more")
	return cmd
}

// apply installs the merged profiles of the host workloads the policies
// select (all of them, or the --unit / --container-name ones).
func (h *hostFlags) apply(cmd *cobra.Command, prune bool) error {
	if err := h.check(); err != nil {
		return err
	}
	if len(h.files) == 0 {
		return usageErr("no policies given: use -f PATH (a file or a directory)")
	}
	in, err := h.installer(slog.Default())
	if err != nil {
		return err
	}
	policies, err := loadPolicies(cmd, h.files)
	if err != nil {
		return err
	}
	selected := host.Units(policies)
	what := "systemd unit (selector.systemdUnits)"
	if !h.systemd {
		selected, what = host.ContainerNames(policies), "host container (selector.containerNames)"
	}
	if len(selected) == 0 && !prune {
		return &exitError{exitNoMatch, fmt.Errorf("no policy selects a %s (%d policies read)", what, len(policies))}
	}
	changes, err := in.Apply(cmd.Context(), policies, host.Options{Targets: h.targets(), Prune: prune, DryRun: h.dryRun, Restart: h.restart})
	return h.finish(cmd.OutOrStdout(), changes, err)
}

const removeLong = `Remove deletes the files 'kscmp apply' wrote: a unit's drop-in (and its .d
directory when nothing else is in it, so the unit is exactly as its own files
say), or a container's profile. Which ones: --unit / --container-name, the
workloads the policies of -f select, or --all of kscmp's files. Files kscmp did
not write are never removed. On the running system systemd is reloaded and,
with --restart, the units restart without the filter.`

func newRemoveCmd() *cobra.Command {
	var h hostFlags
	var all bool
	cmd := &cobra.Command{
		Use:   "remove (--systemd | --dir DIR) (--unit U... | --container-name N... | -f PATH... | --all)",
		Short: "Remove the profiles kscmp installed for host workloads",
		Long:  removeLong,
		Example: `  kscmp remove --systemd --unit nginx --restart
  kscmp remove --systemd -f policies/_host
  kscmp remove --dir /etc/seccomp/kubearmor --all`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return h.remove(cmd, all) },
	}
	h.register(cmd, false)
	cmd.Flags().BoolVar(&all, "all", false, "every file kscmp installed")
	return cmd
}

// remove deletes the files kscmp installed for the workloads named by
// --unit / --container-name, by the policies of -f, or --all.
func (h *hostFlags) remove(cmd *cobra.Command, all bool) error {
	if err := h.check(); err != nil {
		return err
	}
	given := 0
	for _, b := range []bool{len(h.targets()) > 0, len(h.files) > 0, all} {
		if b {
			given++
		}
	}
	if given != 1 {
		return usageErr("say what to remove: exactly one of --unit/--container-name, -f PATH or --all")
	}
	in, err := h.installer(slog.Default())
	if err != nil {
		return err
	}
	targets := h.targets()
	switch {
	case all:
		if targets, err = in.Managed(); err != nil {
			return h.finish(cmd.OutOrStdout(), nil, err)
		}
	case len(h.files) > 0:
		policies, err := loadPolicies(cmd, h.files)
		if err != nil {
			return err
		}
		targets = host.ContainerNames(policies)
		if h.systemd {
			targets = host.Units(policies)
		}
	}
	changes, err := in.Remove(cmd.Context(), targets, host.Options{DryRun: h.dryRun, Restart: h.restart})
	return h.finish(cmd.OutOrStdout(), changes, err)
}

// finish prints the changes and maps the error to an exit code.
func (h *hostFlags) finish(w io.Writer, changes []host.Change, err error) error {
	var np *host.NoPolicyError
	if errors.As(err, &np) {
		return &exitError{exitNoMatch, err}
	}
	switch {
	case errors.Is(err, host.ErrRejected), errors.Is(err, api.ErrBadName):
		// systemd refused a drop-in; a name in a manifest is not a name.
		err = invalidErr(err)
	case errors.Is(err, deploy.ErrNoSystemdAnalyze):
		err = &exitError{exitUnsupported, err}
	}
	if changes != nil {
		if perr := printChanges(w, h.output, h.dryRun, changes); perr != nil && err == nil {
			err = perr
		}
	}
	return err
}

func printChanges(w io.Writer, format string, dryRun bool, changes []host.Change) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(changes)
	case "yaml":
		b, err := yaml.Marshal(changes)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	prefix := ""
	if dryRun {
		prefix = "(dry run) "
	}
	for _, c := range changes {
		line := fmt.Sprintf("%s%s %s: %s", prefix, c.Action, c.Target, c.Path)
		if len(c.Policies) > 0 {
			line += " (" + strings.Join(c.Policies, ", ") + ")"
		}
		if c.Restarted {
			line += ", restarted"
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	return nil
}
