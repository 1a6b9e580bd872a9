package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/kubearmor/kscmp/internal/fsutil"
)

// Exit codes: rootLong tells users what each means.
const (
	exitOK          = 0 // success
	exitUsage       = 1 // bad flags or arguments
	exitInvalid     = 2 // invalid input: a policy, a profile, a report
	exitNoMatch     = 3 // nothing selected: no policy applies to the target
	exitUnsupported = 4 // this system cannot do it: no BPF, not root, a kernel feature or tool missing
	exitIO          = 5 // I/O failure: an output, the kernel, git, systemd or the API server failed
	exitCannotExec  = 126
	exitNotFound    = 127
)

type streams struct {
	in       io.Reader
	out, err io.Writer
}

// exitError carries an exit code with an error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErr(format string, args ...any) error {
	return &exitError{exitUsage, fmt.Errorf(format, args...)}
}

func invalidErr(err error) error { return &exitError{exitInvalid, err} }

// run executes the CLI with args and returns the exit code.
func run(ctx context.Context, args []string, s streams) int {
	root := newRootCmd(s)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(s.err, "kscmp: "+strings.ReplaceAll(err.Error(), "\n", "\nkscmp: "))
	if errors.Is(err, fsutil.ErrTooLarge) {
		fmt.Fprintf(s.err, "kscmp: --%s raises the limit on input files (now %s)\n", maxInputFlag, humanSize(cmd))
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	// Errors cobra itself returns (unknown command, bad flag) are usage
	// errors; a command's own errors all carry a code (failuresAreIO).
	return exitUsage
}

// failuresAreIO gives every error a command returns while it runs, and does
// not classify itself, the exit code of an I/O failure: by then cobra has
// accepted the flags and arguments (its own errors come before RunE and stay
// usage errors), so what failed is a file, a stream, the kernel or a
// service. Only a missing Kubernetes configuration is the user's to give.
func failuresAreIO(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		failuresAreIO(c)
	}
	runE := cmd.RunE
	if runE == nil {
		return
	}
	cmd.RunE = func(c *cobra.Command, args []string) error {
		err := runE(c, args)
		var ee *exitError
		switch {
		case err == nil || errors.As(err, &ee):
			return err
		case errors.Is(err, errNoCluster):
			return &exitError{exitUsage, err}
		}
		return &exitError{exitIO, err}
	}
}

const rootLong = `kscmp learns which system calls each workload makes, recommends the smallest
seccomp allow-list as a KubeArmorSeccompPolicy (kscmp), merges all policies that
select a container into one profile (deny wins) and installs it.

Every flag can also be set as an environment variable KSCMP_<FLAG> (dashes as
underscores, e.g. KSCMP_ARCH_FAMILY=arm64) or as a key in a YAML config file
(--config, $KSCMP_CONFIG, ~/.config/kscmp/config.yaml or /etc/kscmp/config.yaml).
Flags win over the environment, which wins over the config file.

Exit codes:
  0        ok
  1        usage error: bad flags or arguments
  2        invalid input: a policy, profile or report that is malformed or
           cannot be read
  3        no policy selects the target
  4        this system cannot do it: no BPF or kernel BTF, not root, a kernel
           feature or a tool (systemd-analyze) missing
  5        I/O failure: an output could not be written, or the kernel, git,
           systemd or the API server failed while kscmp worked
  6        discover --cluster: a node's coverage is incomplete (its recorder
           failed, never started, lost calls or its log was cut); the report
           is written and names it (--allow-partial: 0)
  126/127  the command of 'kscmp exec' could not be run
  130/143  ended by SIGINT/SIGTERM before the command finished (a command
           that stops cleanly on the signal, as discover does, exits as usual;
           discover --cluster exits 130 only when nothing was collected)`

func newRootCmd(s streams) *cobra.Command {
	v := viper.New()
	var (
		configFile string
		verbose    bool
	)
	root := &cobra.Command{
		Use:           "kscmp",
		Short:         "Seccomp profiles learned from what workloads really do",
		Long:          rootLong,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(s.err, &slog.HandlerOptions{Level: level})))
			return bindConfig(v, cmd, configFile)
		},
	}
	root.SetIn(s.in)
	root.SetOut(s.out)
	root.SetErr(s.err)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageErr("%w (see '%s --help')", err, c.CommandPath())
	})
	root.PersistentFlags().StringVar(&configFile, "config", "", "config file (YAML); default $KSCMP_CONFIG, ~/.config/kscmp/config.yaml, /etc/kscmp/config.yaml")
	root.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "log debug messages to stderr")
	addMaxInput(root)
	root.AddCommand(newDiscoverCmd(), newViolationsCmd(), newRecommendCmd(), newApplyCmd(), newRemoveCmd(), newAgentCmd(), newWebhookCmd(), newValidateCmd(), newMergeCmd(), newExecCmd(), newVersionCmd())
	failuresAreIO(root)
	return root
}

// bindConfig fills every flag of cmd the user did not set from the
// environment (KSCMP_*) or the config file.
func bindConfig(v *viper.Viper, cmd *cobra.Command, configFile string) error {
	v.SetEnvPrefix("KSCMP")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	if configFile == "" {
		configFile = os.Getenv("KSCMP_CONFIG")
	}
	if configFile == "" {
		candidates := []string{"/etc/kscmp/config.yaml"}
		if home, err := os.UserHomeDir(); err == nil {
			candidates = append([]string{filepath.Join(home, ".config", "kscmp", "config.yaml")}, candidates...)
		}
		for _, c := range candidates {
			if _, err := os.Stat(c); err == nil {
				configFile = c
				break
			}
		}
	}
	if configFile != "" {
		// Read like every input file (regular, bounded): a FIFO given as
		// --config must not block before any flag is known.
		data, err := fsutil.ReadRegular(configFile, fsutil.DefaultMaxInput)
		if err != nil {
			return usageErr("config file %s: %w", configFile, err)
		}
		v.SetConfigType("yaml")
		if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
			return usageErr("config file %s: %w", configFile, err)
		}
	}
	var errs []error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "config" || f.Name == "help" || !v.IsSet(f.Name) {
			return
		}
		var vals []string
		if strings.HasSuffix(f.Value.Type(), "Slice") || strings.HasSuffix(f.Value.Type(), "Array") {
			vals = v.GetStringSlice(f.Name)
		} else {
			vals = []string{v.GetString(f.Name)}
		}
		for _, val := range vals {
			if err := f.Value.Set(val); err != nil {
				errs = append(errs, fmt.Errorf("--%s from environment or config: %q: %w", f.Name, val, err))
			}
		}
		f.Changed = true
	})
	if err := errors.Join(errs...); err != nil {
		return &exitError{exitUsage, err}
	}
	return nil
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "kscmp", version)
			return err
		},
	}
}

// argsUsage wraps fn so that its error exits with the usage code (exitUsage).
func argsUsage(fn cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := fn(cmd, args); err != nil {
			return usageErr("%w (see '%s --help')", err, cmd.CommandPath())
		}
		return nil
	}
}
