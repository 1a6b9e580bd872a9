// Package deploy installs compiled profiles where they are enforced: into
// this process before it executes a command (Exec), and later into the
// kubelet's seccomp directory, systemd drop-ins and plain profile files.
package deploy
