// Package deploy installs compiled profiles where they are enforced, and
// holds what its installers share: Exec loads a profile into this process
// before it executes a command (kscmp exec); KubeletRootDir finds the
// kubelet's root directory, under whose seccomp/ directory the agent writes
// profiles; VerifySystemdDropIn checks a drop-in with systemd's own parser.
//
// The installers are its subpackages: agent (the enforce-mode node agent,
// which keeps the kubelet's seccomp directory equal to the merged profiles of
// the node's pods), webhook (binds new pods to those profiles) and host
// (systemd drop-ins and plain profile files on machines without Kubernetes).
// The Kubernetes manifests are in manifests/.
package deploy
