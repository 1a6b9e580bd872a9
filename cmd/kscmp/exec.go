package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"

	"github.com/spf13/cobra"

	"github.com/kubearmor/kscmp/api"
	"github.com/kubearmor/kscmp/deploy"
	"github.com/kubearmor/kscmp/internal/fsutil"
	"github.com/kubearmor/kscmp/merge"
)

const execLong = `Exec loads an OCI seccomp profile (as 'kscmp merge' writes it) into itself with
no_new_privs and replaces itself with CMD, which then runs under the profile,
as do all its children. The filter covers this machine's native ABI; system
calls of other ABIs get the profile's default action. It warns first when the
profile refuses what every dynamically linked program calls to start (mmap,
mprotect, openat, read, ...): CMD would die in its loader.`

func newExecCmd() *cobra.Command {
	var profile string
	cmd := &cobra.Command{
		Use:   "exec --profile FILE.json -- CMD [ARGS...]",
		Short: "Run a command under a seccomp profile (hosts without systemd or a container runtime)",
		Long:  execLong,
		Example: `  kscmp merge -f policies/ -n ns -l app=web --runtime none > web.json
  kscmp exec --profile web.json -- /usr/sbin/nginx -g 'daemon off;'`,
		Args: argsUsage(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return execProfile(cmd.ErrOrStderr(), profile, args, maxInput(cmd))
		},
	}
	cmd.Flags().StringVar(&profile, "profile", "", "OCI seccomp profile (JSON) to run the command under (required)")
	return cmd
}

// execProfile replaces this process with args under the profile; it returns
// only when that failed. A profile that refuses what every program needs to
// start is warned of first: the program would die in its loader without a
// word why.
func execProfile(stderr io.Writer, profile string, args []string, max int64) error {
	if profile == "" {
		return usageErr("--profile is required")
	}
	data, err := fsutil.ReadRegular(profile, max)
	if err != nil {
		return invalidErr(fmt.Errorf("read profile: %w", err))
	}
	rs, err := merge.ParseOCI(data, profile)
	if err != nil {
		return invalidErr(err)
	}
	if w := rs.StarterWarning(api.Family(defaultFamily()).Native()); w != "" {
		fmt.Fprintf(stderr, "kscmp: warning: %s: %s\n", profile, w)
	}
	err = deploy.Exec(rs, args, os.Environ())
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		return &exitError{exitNotFound, err}
	}
	return &exitError{exitCannotExec, err}
}
