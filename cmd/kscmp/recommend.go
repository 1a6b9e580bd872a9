package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/api/violation"
	"github.com/kubearmor/kscmp/internal/escape"
	"github.com/kubearmor/kscmp/internal/fsutil"
	"github.com/kubearmor/kscmp/merge"
	"github.com/kubearmor/kscmp/recommend"
)

// recommendFlags are the flags of kscmp recommend.
type recommendFlags struct {
	from                []string
	outDir, existingDir string
	summaryFile         string
	prune, portable     bool
	complain, noArgs    bool
	runtime, hostNS     string
	gitRepo, branch     string
}

const recommendLong = `Recommend reads observation reports (kscmp discover -o), groups their workloads
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

With --complain new policies are written in complain mode (defaultAction: Audit):
what they do not allow runs and is logged instead of refused, for a safe first
rollout; the summary says so. Reviewed policies keep their own default.

Where the report recorded arguments, a new or added call is allowed only with
what was observed: clone and unshare without the namespace flags never seen
(clone3 is then refused with ENOSYS by merge, so the C library falls back to
clone), setns with the namespace types seen, socket and socketpair with the
address families seen, personality and prctl with the values seen. The file's
comments and the summary say it in words. --no-args writes no conditions.

A violation report (kscmp violations -o) in --from widens the reviewed policies
of its workloads by the calls enforcement refused or logged, each listed in the
summary as "refused in production" (with the risky-call warnings); a workload
without a reviewed policy gets none, and --prune is refused with it.

With --git REPO --branch NAME the files go into that checkout (-o relative to
it) on a new branch, committed with the summary as the message.`

func newRecommendCmd() *cobra.Command {
	var fl recommendFlags
	cmd := &cobra.Command{
		Use:   "recommend --from REPORT... -o DIR",
		Short: "Turn observation reports into minimal KubeArmorSeccompPolicy files, ready for review",
		Long:  recommendLong,
		Example: `  kscmp recommend --from report.json -o policies/ --summary pr.md
  kscmp recommend --from 'reports/*.json' -o policies/ --prune
  kscmp recommend --from reports/ --git ~/src/cluster-config --branch kscmp/web -o seccomp/`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return fl.run(cmd) },
	}
	fl.register(cmd.Flags())
	return cmd
}

func (fl *recommendFlags) register(f *pflag.FlagSet) {
	f.StringSliceVar(&fl.from, "from", nil, "observation reports: files, globs or directories of *.json (repeatable; the name of an existing file is never taken as a glob); violation report files widen reviewed policies")
	f.StringVarP(&fl.outDir, "output", "o", "", "directory to write the policies into")
	f.StringVar(&fl.existingDir, "existing", "", "reviewed policies to extend (default: the -o directory)")
	f.BoolVar(&fl.prune, "prune", false, "replace existing policies' allowed calls with exactly what was observed")
	f.BoolVar(&fl.portable, "portable", true, "also allow the other architecture family's equivalents")
	f.BoolVar(&fl.complain, "complain", false, "write new policies in complain mode (defaultAction: Audit): what they do not allow is logged, not refused")
	f.BoolVar(&fl.noArgs, "no-args", false, "write no argument conditions: allow clone, unshare, setns, socket, socketpair, personality and prctl with any arguments, not only those observed")
	f.StringVar(&fl.summaryFile, "summary", "", "write the Markdown review summary here (default: stdout)")
	f.StringVar(&fl.runtime, "runtime", string(merge.RuntimeRunc), "container runtime named in comments and the summary (its start-up set is added by merge)")
	f.StringVar(&fl.hostNS, "host-namespace", recommend.DefaultHostNamespace, "namespace of host policies (systemd services, plain containers)")
	f.StringVar(&fl.gitRepo, "git", "", "git checkout to commit the policies into, on --branch")
	f.StringVar(&fl.branch, "branch", "", "new branch for --git")
}

// run recommends policies from the reports and writes them, and the
// summary, where the flags say.
func (fl *recommendFlags) run(cmd *cobra.Command) error {
	opts, err := fl.options(maxInput(cmd))
	if err != nil {
		return err
	}
	obs, viols, err := splitFrom(fl.from, maxInput(cmd))
	if err != nil {
		return invalidErr(fmt.Errorf("--from: %w", err))
	}
	opts.Violations = viols
	var sources []report.Source
	if len(obs) > 0 || len(viols) == 0 {
		if sources, err = report.ReadAllLimit(obs, maxInput(cmd)); err != nil {
			return invalidErr(fmt.Errorf("--from: %w", err))
		}
	}
	if len(viols) > 0 && fl.prune {
		return usageErr("--prune: violation reports only widen reviewed policies")
	}
	res, err := recommend.Recommend(sources, opts)
	if err != nil {
		return invalidErr(err)
	}
	// The summary is written last: one that cannot be written must fail
	// before the policies are.
	if fl.summaryFile != "" {
		if err := fsutil.CheckWritable(fl.summaryFile); err != nil {
			return fmt.Errorf("--summary: %w", err)
		}
	}
	stderr := cmd.ErrOrStderr()
	if err := fl.write(cmd.Context(), stderr, res); err != nil {
		return err
	}
	for _, s := range res.Skipped {
		fmt.Fprintf(stderr, "kscmp: not recommended: %s\n", escape.Line(s))
	}
	if fl.summaryFile != "" {
		_, err := fsutil.WriteFile(fl.summaryFile, res.Summary, 0o644)
		return err
	}
	_, err = cmd.OutOrStdout().Write(res.Summary)
	return err
}

// splitFrom reads the violation reports among the --from paths (files, or
// the files a glob or directory names, whose kind is ViolationReport) and returns
// the other paths, for the observation report reader, and the violation
// reports as sources for recommend.
func splitFrom(paths []string, max int64) (obs []string, viols []report.Source, err error) {
	for _, p := range paths {
		matches := []string{p}
		if _, err := os.Lstat(p); err != nil {
			if m, _ := filepath.Glob(p); len(m) > 0 {
				matches = m
			}
		}
		matches = dirFiles(matches)
		for _, m := range matches {
			st, err := os.Stat(m)
			if err != nil || !st.Mode().IsRegular() {
				obs = append(obs, m)
				continue
			}
			data, err := fsutil.ReadRegular(m, max)
			if err != nil {
				return nil, nil, err
			}
			if !violation.IsReport(data) {
				obs = append(obs, m)
				continue
			}
			vr, err := violation.Read(bytes.NewReader(data), m)
			if err != nil {
				return nil, nil, err
			}
			viols = append(viols, recommend.ViolationSource(m, vr))
		}
	}
	return obs, viols, nil
}

// dirFiles replaces each directory among paths with its *.json files (as
// the report reader takes a directory), so violation reports in it are
// told apart too; a directory without any stays, for the reader to refuse.
func dirFiles(paths []string) []string {
	var out []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil || !st.IsDir() {
			out = append(out, p)
			continue
		}
		files, _ := filepath.Glob(filepath.Join(globQuote(p), "*.json"))
		if len(files) == 0 {
			files = []string{p}
		}
		out = append(out, files...)
	}
	return out
}

// globQuote quotes the characters filepath.Glob treats specially.
func globQuote(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// options turns the flags into recommend.Options, with the reviewed
// policies to extend (files of at most max bytes); a problem names its
// flag.
func (fl *recommendFlags) options(max int64) (recommend.Options, error) {
	if len(fl.from) == 0 || fl.outDir == "" {
		return recommend.Options{}, usageErr("--from and -o are required")
	}
	if (fl.branch == "") != (fl.gitRepo == "") {
		return recommend.Options{}, usageErr("--git and --branch go together")
	}
	rt, err := merge.ParseRuntime(fl.runtime)
	if err != nil {
		return recommend.Options{}, usageErr("--runtime: %w", err)
	}
	existingDir := fl.existingDir
	if existingDir == "" {
		existingDir = fl.outDir
		if fl.gitRepo != "" {
			existingDir = filepath.Join(fl.gitRepo, fl.outDir)
		}
	}
	existing, err := recommend.Existing(existingDir, max)
	if err != nil {
		return recommend.Options{}, invalidErr(fmt.Errorf("existing policies: %w", err))
	}
	return recommend.Options{Portable: fl.portable, Runtime: rt, HostNamespace: fl.hostNS,
		Existing: existing, Prune: fl.prune, Complain: fl.complain, NoArgs: fl.noArgs}, nil
}

// write puts the files into -o, or commits them on a new branch of --git.
func (fl *recommendFlags) write(ctx context.Context, stderr io.Writer, res *recommend.Result) error {
	if fl.gitRepo == "" {
		changed, err := res.Write(fl.outDir)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "kscmp: %d policies in %s (%d changed)\n", len(res.Files), fl.outDir, changed)
		return nil
	}
	id, err := res.Commit(ctx, fl.gitRepo, fl.outDir, fl.branch)
	if err != nil {
		return err
	}
	if id == "" {
		fmt.Fprintf(stderr, "kscmp: nothing to commit; no branch made\n")
	} else {
		fmt.Fprintf(stderr, "kscmp: %d policies committed on branch %s (%s) in %s\n", len(res.Files), fl.branch, id[:12], fl.gitRepo)
	}
	return nil
}
