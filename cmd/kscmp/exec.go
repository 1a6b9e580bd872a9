package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"

	"github.com/spf13/cobra"

	"github.com/kubearmor/kscmp/deploy"
	"github.com/kubearmor/kscmp/merge"
)

const execLong = `Exec loads an OCI seccomp profile (as 'kscmp merge' writes it) into itself with
no_new_privs and replaces itself with CMD, which then runs under the profile,
as do all its children. The filter covers this machine's native ABI; system
calls of other ABIs get the profile's default action.`

func newExecCmd() *cobra.Command {
	var profile string
	cmd := &cobra.Command{
		Use:   "exec --profile FILE.json -- CMD [ARGS...]",
		Short: "Run a command under a seccomp profile (hosts without systemd or a container runtime)",
		Long:  execLong,
		Example: `  kscmp merge -f policies/ -n ns -l app=web --runtime none > web.json
  kscmp exec --profile web.json -- /usr/sbin/nginx -g 'daemon off;'`,
		Args: argsUsage(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error { return execProfile(profile, args) },
	}
	cmd.Flags().StringVar(&profile, "profile", "", "OCI seccomp profile (JSON) to run the command under (required)")
	return cmd
}

// execProfile replaces this process with args under the profile; it returns
// only when that failed.
func execProfile(profile string, args []string) error {
	if profile == "" {
		return usageErr("--profile is required")
	}
	data, err := os.ReadFile(profile)
	if err != nil {
		return invalidErr(fmt.Errorf("read profile: %w", err))
	}
	rs, err := merge.ParseOCI(data, profile)
	if err != nil {
		return invalidErr(err)
	}
	err = deploy.Exec(rs, args, os.Environ())
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		return &exitError{exitNotFound, err}
	}
	return &exitError{exitCannotExec, err}
}
