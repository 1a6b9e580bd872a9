#!/usr/bin/env bash
# make demo-cluster: kscmp's loop on the local two-node cluster (make
# cluster), as a person runs it from a workstation with a kubeconfig:
#   kubectl apply -k <manifests>            agent, webhook, recorder RBAC
#   kubectl apply -f deploy/demo/web.yaml   a Deployment, one replica per node
#   kscmp discover --cluster ...            recorder pods on both nodes, one report
#   kscmp recommend ...                     one policy for the Deployment
#   kubectl label + apply + rollout restart the pods run under it
# then the workload's own commands work in both pods and mkdir, which it
# never made, is refused. Prints every command and its output. The cluster
# stays up (make cluster-down stops it); the demo's namespace is deleted
# first, so the demo can run again.
set -euo pipefail
kscmp=$(realpath "${1:-bin/kscmp}")
cd "$(dirname "$0")/.."
S=${KSCMP_CLUSTER_DIR:-$HOME/.cache/kscmp-cluster}
kubeconfig=$(hack/cluster.sh up | tail -1)
S=$(cd "$S" && pwd)
export KUBECONFIG=$kubeconfig PATH=$PATH:$(hack/testbin.sh cluster)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

kubectl delete namespace kscmp-web --ignore-not-found --wait=true >/dev/null
step kubectl apply -k "$S/manifests"
step kubectl -n kscmp-system rollout status daemonset/kscmp-agent --timeout 3m
step kubectl -n kscmp-system rollout status deployment/kscmp-webhook --timeout 3m
step kubectl apply -f deploy/demo/web.yaml
step kubectl -n kscmp-web rollout status deployment/web --timeout 2m
step kubectl -n kscmp-web get pods -o wide

# --kubelet-root: this cluster keeps the kubelets' directories in $S, not
# /var/lib/kubelet (the recorder's own profile goes to its seccomp/).
step "$kscmp" discover --cluster --duration 1m -n kscmp-web --kubelet-root "$S/kubelet" -o "$work/report.json"
step jq '{nodes: .nodes, workloads: [.workloads[] | {identity: .identity.owner, container: .identity.container, pods, nodes, calls: (.syscalls.x86_64 | length)}]}' "$work/report.json"
step "$kscmp" recommend --from "$work/report.json" -o "$work/policies" --summary "$work/summary.md"
step cat "$work/summary.md"
step kubectl label namespace kscmp-web kscmp.kubearmor.com/enforce=true --overwrite
step kubectl apply -f "$work/policies/kscmp-web/"
step kubectl -n kscmp-web get kscmp
# The agent installs the profile on both nodes, the webhook binds the pods
# made from now on: restart the Deployment.
sleep 5
step kubectl -n kscmp-web rollout restart deployment/web
step kubectl -n kscmp-web rollout status deployment/web --timeout 2m
# The agent (--restart-workloads here) may roll the Deployment too: wait
# until only its two bound replicas are left.
for ((i = 0; i < 120; i++)); do
  bound=$(kubectl -n kscmp-web get pods -l app=web -o jsonpath='{range .items[*]}{.metadata.deletionTimestamp}{.status.phase}:{.spec.containers[0].securityContext.seccompProfile.localhostProfile}{"\n"}{end}')
  [ "$(grep -c '^Running:kubearmor/kscmp-web/web.json$' <<<"$bound")" = 2 ] && [ "$(wc -l <<<"$bound")" = 2 ] && break
  sleep 1
done
step kubectl -n kscmp-web get pods -o 'custom-columns=POD:.metadata.name,NODE:.spec.nodeName,PROFILE:.spec.containers[0].securityContext.seccompProfile.localhostProfile'
for pod in $(kubectl -n kscmp-web get pods -l app=web -o name); do
  # What the workload does (ls, echo): allowed. Nothing else: a pipe (sh's
  # $(...)) would be refused as well, since the workload never made one.
  step kubectl -n kscmp-web exec "$pod" -- sh -c 'ls /bin >/dev/null && echo listed'
  printf '\n\033[1m$ %s\033[0m\n' "kubectl -n kscmp-web exec $pod -- mkdir /tmp/x"
  if kubectl -n kscmp-web exec "$pod" -- mkdir /tmp/x; then
    echo "demo-cluster: mkdir was not refused in $pod" >&2
    exit 1
  fi
done
echo
echo "demo-cluster: recorded on both nodes, one policy, enforced: the workload runs, mkdir is refused."
