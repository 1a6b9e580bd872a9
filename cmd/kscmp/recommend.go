package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/internal/fsutil"
	"github.com/kubearmor/kscmp/merge"
	"github.com/kubearmor/kscmp/recommend"
)

func newRecommendCmd() *cobra.Command {
	var (
		from                []string
		outDir, existingDir string
		summaryFile         string
		prune, portable     bool
		rt, hostNS          string
		gitRepo, branch     string
	)
	cmd := &cobra.Command{
		Use:   "recommend --from REPORT... -o DIR",
		Short: "Turn observation reports into minimal KubeArmorSeccompPolicy files, ready for review",
		Long: `Recommend reads observation reports (kscmp discover -o), groups their workloads
and writes one allow-list policy per workload, in the CRD form:

  DIR/<namespace>/<workload>.yaml   pods, grouped by the app.kubernetes.io/name or
                                    app label, else by owner (Deployment, ...); one
                                    policy per container when a pod's containers differ
  DIR/_host/<name>.yaml             systemd services (selector.systemdUnits) and
                                    containers run without Kubernetes
                                    (selector.containerNames)

It takes the union over replicas, nodes and reports. With --portable (default)
each policy also allows, for the other architecture family, the calls the same
program makes there (open on x86_64 → openat on aarch64, ...). Comments in each
file say where it came from. The same input gives the same bytes.

With --existing DIR (default: -o DIR itself) a recommendation is the union with
the reviewed policy already there, so a new recording never silently narrows it;
--prune makes it exactly what was observed. The summary (Markdown, for the pull
request) says per workload how many calls it allows, their share of Docker's
default profile, what was added or removed, and every risky call allowed.

With --git REPO --branch NAME the files go into that checkout (-o relative to
it) on a new branch, committed with the summary as the message.`,
		Example: `  kscmp recommend --from report.json -o policies/ --summary pr.md
  kscmp recommend --from 'reports/*.json' -o policies/ --prune
  kscmp recommend --from reports/ --git ~/src/cluster-config --branch kscmp/web -o seccomp/`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(from) == 0 || outDir == "" {
				return usageErr("--from and -o are required")
			}
			if branch != "" && gitRepo == "" || gitRepo != "" && branch == "" {
				return usageErr("--git and --branch go together")
			}
			r, err := merge.ParseRuntime(rt)
			if err != nil {
				return usageErr("--runtime: %w", err)
			}
			sources, err := report.ReadAll(from)
			if err != nil {
				return invalidErr(fmt.Errorf("--from: %w", err))
			}
			target := outDir
			if gitRepo != "" {
				target = filepath.Join(gitRepo, outDir)
			}
			if existingDir == "" {
				existingDir = target
			}
			var existing []api.Document
			if _, err := os.Stat(existingDir); err == nil {
				existing, err = api.Load(existingDir)
				if err != nil && !strings.Contains(err.Error(), "no *.yaml") {
					return invalidErr(fmt.Errorf("existing policies: %w", err))
				}
			}
			res, err := recommend.Recommend(sources, recommend.Options{Portable: portable, Runtime: r,
				HostNamespace: hostNS, Existing: existing, Prune: prune})
			if err != nil {
				return invalidErr(err)
			}
			stderr := cmd.ErrOrStderr()
			if gitRepo != "" {
				id, err := res.Commit(cmd.Context(), gitRepo, outDir, branch)
				if err != nil {
					return err
				}
				if id == "" {
					fmt.Fprintf(stderr, "kscmp: nothing changed; no branch made\n")
				} else {
					fmt.Fprintf(stderr, "kscmp: %d policies committed on branch %s (%s) in %s\n", len(res.Files), branch, id[:12], gitRepo)
				}
			} else {
				changed, err := res.Write(outDir)
				if err != nil {
					return err
				}
				fmt.Fprintf(stderr, "kscmp: %d policies in %s (%d changed)\n", len(res.Files), outDir, changed)
			}
			for _, s := range res.Skipped {
				fmt.Fprintf(stderr, "kscmp: not recommended: %s\n", s)
			}
			if summaryFile != "" {
				_, err := fsutil.WriteFile(summaryFile, res.Summary, 0o644)
				return err
			}
			_, err = cmd.OutOrStdout().Write(res.Summary)
			return err
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&from, "from", nil, "observation reports: files, globs or directories of *.json (repeatable)")
	f.StringVarP(&outDir, "output", "o", "", "directory to write the policies into")
	f.StringVar(&existingDir, "existing", "", "reviewed policies to extend (default: the -o directory)")
	f.BoolVar(&prune, "prune", false, "replace existing policies' allowed calls with exactly what was observed")
	f.BoolVar(&portable, "portable", true, "also allow the other architecture family's equivalents")
	f.StringVar(&summaryFile, "summary", "", "write the Markdown review summary here (default: stdout)")
	f.StringVar(&rt, "runtime", string(merge.RuntimeRunc), "container runtime named in comments and the summary (its start-up set is added by merge)")
	f.StringVar(&hostNS, "host-namespace", recommend.DefaultHostNamespace, "namespace of host policies (systemd services, plain containers)")
	f.StringVar(&gitRepo, "git", "", "git checkout to commit the policies into, on --branch")
	f.StringVar(&branch, "branch", "", "new branch for --git")
	return cmd
}
