// Package cluster is `kscmp discover --cluster`: it records the system calls
// of a cluster's workloads from a workstation, with nothing but a kubeconfig.
//
// A run goes through named steps, like a controller's:
//
//   - Plan lists the selected pods and so the nodes to record on (all Ready
//     nodes when nothing is selected), and refuses when another run is
//     still active.
//   - Start creates one Job per node (see JobFor), paced by a client-side
//     rate limit, each running a short-lived recorder pod on its node.
//   - Watch follows the run's pods by label (scheduled, recording, done,
//     failed) and reads each recorder's last progress line through its log,
//     paced too.
//   - Stop, on an early end (Ctrl-C), annotates each recorder pod
//     kscmp.io/stop, which the recorders answer by writing their reports.
//   - Collect streams each recorder's log through report.ReadStream, a few
//     at a time, into one Union: per workload the union over its replicas
//     and nodes. Memory grows with the distinct workloads, not the nodes.
//   - Coverage names every planned node's state in Report.Nodes.
//   - Cleanup deletes the run's Jobs; their activeDeadlineSeconds and
//     ttlSecondsAfterFinished remove them when the CLI is gone.
//
// Reports travel as the recorders' pod logs (api/report's stream): the
// privileged pod writes nothing to the API server, and no bulk data is
// stored in etcd. The package imports no eBPF code.
package cluster
