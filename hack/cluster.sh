#!/usr/bin/env bash
# A real two-node Kubernetes cluster from source, for tests and demos:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and two
# kubelets (v1.37.2, built from the Go module proxy by hack/testbin.sh
# cluster), with Debian's containerd, runc and containernetworking-plugins
# (bridge + host-local + loopback: every pod has its own network namespace).
# Images come only from tarballs imported with `ctr -n k8s.io images import`
# (no registry) into each node's containerd: kscmp's (make image) and a
# busybox-static one, localhost/busybox:latest.
#
# The nodes: kscmp-node (NODE_IP 10.244.0.1 on bridge kscmp0, pods
# 10.244.0.0/24, state directly in $S, pod cgroups under /kubepods) and
# kscmp-node2 (NODE2_IP 10.244.1.1 on a bridge of its own, kscmp1, since the
# CNI bridge plugin refuses a second gateway address on one bridge; pods
# 10.244.1.0/24, kubelet port 11250 and healthz 11248, state in $S/node2,
# pod cgroups under /kscmp-node2/kubepods: kubelet --cgroup-root, so
# neither kubelet ever manages the other's cgroups). node2 has its own
# containerd (root, state, socket, runc root, CNI configuration and IPAM
# data under $S/node2), its own kubelet certificates
# (system:node:kscmp-node2) and kubeconfig. Both see one kernel, so a
# recorder on one node sees the other's processes too: reporting only its
# own node's pods is a real check of attribution.
#
# Why a mount namespace for node2: the agent DaemonSet has ONE hostPath,
# $S/kubelet/seccomp, and each node's kubelet must read the profiles its own
# agent wrote. node2's containerd and kubelet (and so its shims and
# containers) run in a mount namespace kept in $S/node2/ns/mnt where
# $S/node2/kubelet is bind-mounted on $S/kubelet and $S/node2/log/pods on
# $S/log/pods: the same paths name each node's own directories, as on two
# machines. The namespace is a slave of the host's (host mounts show in it,
# its mounts never leak out); it ends with its last process at `down`.
#
# Usage: hack/cluster.sh up|down|status|restart NAME
#   up      starts what is not running (cheap when all is) and prints, as the
#           last line of stdout, the path of an admin kubeconfig
#   restart NAME  stops the one process NAME (containerd, etcd, kube-apiserver,
#           kube-controller-manager, kube-scheduler, kubelet, node2-containerd
#           or node2-kubelet) and runs `up`,
#           which starts it again with the same arguments; pods keep running
#           (containerd's shims and the kubelet's containers outlive both)
#   down    stops every process `up` started (both nodes), unmounts what they
#           mounted (node2's namespace ends with its processes) and removes
#           the bridge, the iptables rules and both kubelets' cgroups;
#           the state directory stays (its certificates, etcd data, images)
#   status  prints each process and whether it runs; exit 0 when all do
# Env: KSCMP_CLUSTER_DIR  the state directory (default ~/.cache/kscmp-cluster)
#      KSCMP_TESTBIN      testbin cache root (see hack/testbin.sh)
#      GO                 go command (default: go)
#
# Addresses: nothing listens on a public interface. etcd, the controller
# manager, the scheduler and the kubelet's healthz listen on 127.0.0.1; the API
# server and the kubelet on NODE_IP, the address of the pod bridge (kscmp0),
# which `up` creates before anything starts: pods reach the API server there,
# and the API server reaches the kubelets (node2's on NODE2_IP, the address
# of node2's bridge kscmp1) and (--enable-aggregator-routing) the
# webhook's endpoints. There is no kube-proxy: one iptables DNAT rule sends the
# kubernetes Service (SERVICE_IP:443) to NODE_IP:6443.
#
# Needs root, the Debian packages of hack/deps.sh test, and cgroup v1 or v2
# with the cgroupfs driver (no systemd as PID 1 here).
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)
GO=${GO:-go}
S=${KSCMP_CLUSTER_DIR:-$HOME/.cache/kscmp-cluster}
NODE=kscmp-node
BRIDGE=kscmp0
POD_CIDR=10.244.0.0/24
NODE_IP=10.244.0.1
SERVICE_CIDR=10.96.0.0/24
SERVICE_IP=10.96.0.1
ETCD_PORT=12379
API_PORT=6443
CHAIN=KSCMP-CLUSTER
BUSYBOX_IMAGE=localhost/busybox:latest
PAUSE_IMAGE=localhost/busybox:pause
# The kernel settings the kubelet and the bridge plugin change; `up` keeps the
# values it found in $S/sysctl.orig and `down` puts them back.
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward)
# The second node (see the header); N2 is set once S is absolute.
NODE2=kscmp-node2
BRIDGE2=kscmp1
POD2_CIDR=10.244.1.0/24
NODE2_IP=10.244.1.1
KUBELET2_PORT=11250
KUBELET2_HEALTHZ=11248
CGROUP2_ROOT=/kscmp-node2
N2=$S/node2
PROCS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet node2-containerd node2-kubelet)

log() { echo "cluster: $*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- processes

# pid_of NAME prints the pid of our NAME process when it runs: the pid file's
# process must still run the binary we started (its exe), so a reused pid of
# another program is not taken for ours.
pid_of() {
  local f=$S/run/$1.pid pid exe
  [ -f "$f" ] || return 1
  pid=$(<"$f")
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [ "$exe" = "$(<"$S/run/$1.exe")" ] || return 1
  echo "$pid"
}

# start [--ns FILE] NAME BINARY ARGS...: starts BINARY in its own session
# (in the mount namespace FILE with --ns: nsenter execs it, so the pid is
# BINARY's), output to $S/log/NAME.log, unless our NAME already runs.
start() {
  local wrap=()
  if [ "$1" = --ns ]; then
    wrap=(nsenter "--mount=$2" --)
    shift 2
  fi
  local name=$1 bin=$2
  shift 2
  if pid_of "$name" >/dev/null; then return 0; fi
  log "starting $name"
  mkdir -p "$S/run" "$S/log"
  readlink -f "$bin" >"$S/run/$name.exe"
  # The daemons outlive this script: they must not inherit its other open
  # files (a caller's `flock FILE hack/cluster.sh up` would stay locked for
  # as long as the cluster runs).
  (
    for fd in /proc/self/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    exec setsid "${wrap[@]}" "$bin" "$@" >>"$S/log/$name.log" 2>&1 </dev/null
  ) &
  echo $! >"$S/run/$name.pid"
}

# stop NAME...: SIGTERM to each (together: each takes a second or more to
# exit), then SIGKILL to what still runs after 15 s.
stop() {
  local n pid pids=() i
  for n in "$@"; do
    if pid=$(pid_of "$n"); then
      log "stopping $n ($pid)"
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
    rm -f "$S/run/$n.pid"
  done
  for pid in "${pids[@]}"; do
    for ((i = 0; i < 150; i++)); do
      [ -d "/proc/$pid" ] || break
      sleep 0.1
    done
    [ -d "/proc/$pid" ] && kill -KILL "$pid" 2>/dev/null
  done
  return 0
}

# wait_for WHAT SECONDS COMMAND...: runs COMMAND until it succeeds.
wait_for() {
  local what=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "$what did not come up in ${secs}s; see $S/log/"
}

# ---------------------------------------------------------------- pki

# cert NAME SUBJECT [SANS]: a P-256 key and a certificate signed by the
# cluster CA, with SANS (openssl subjectAltName syntax) for servers.
cert() {
  local n=$1 subj=$2 sans=${3:-} p=$S/pki
  [ -s "$p/$n.crt" ] && return 0
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$p/$n.key" \
    -subj "$subj" -out "$p/$n.csr" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$sans" ]; then
      echo "extendedKeyUsage=serverAuth,clientAuth"
      echo "subjectAltName=$sans"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$p/$n.ext"
  openssl x509 -req -in "$p/$n.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
    -days 3650 -sha256 -extfile "$p/$n.ext" -out "$p/$n.crt.tmp" 2>/dev/null
  mv "$p/$n.crt.tmp" "$p/$n.crt"
  rm -f "$p/$n.csr" "$p/$n.ext"
}

# kubeconfig NAME CERT: a kubeconfig for the client certificate CERT.
kubeconfig() {
  local f=$S/$1.kubeconfig
  [ -s "$f" ] && return 0
  cat >"$f.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kscmp
  cluster: {server: "https://$NODE_IP:$API_PORT", certificate-authority: "$S/pki/ca.crt"}
users:
- name: $2
  user: {client-certificate: "$S/pki/$2.crt", client-key: "$S/pki/$2.key"}
contexts:
- name: kscmp
  context: {cluster: kscmp, user: $2}
current-context: kscmp
EOF
  mv "$f.tmp" "$f"
}

pki() {
  local p=$S/pki
  mkdir -p "$p"
  chmod 700 "$p"
  if [ ! -s "$p/ca.crt" ]; then
    log "generating the cluster CA and certificates in $p"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$p/ca.key" \
      -subj "/CN=kscmp-cluster-ca" -days 3650 -sha256 -out "$p/ca.crt.tmp" 2>/dev/null
    mv "$p/ca.crt.tmp" "$p/ca.crt"
  fi
  cert apiserver "/CN=kube-apiserver" \
    "IP:$NODE_IP,IP:$SERVICE_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  cert admin "/O=system:masters/CN=kscmp-admin"
  cert controller-manager "/CN=system:kube-controller-manager"
  cert scheduler "/CN=system:kube-scheduler"
  cert kubelet-client "/O=system:nodes/CN=system:node:$NODE"
  cert kubelet "/CN=$NODE" "IP:$NODE_IP,DNS:$NODE"
  cert node2-kubelet-client "/O=system:nodes/CN=system:node:$NODE2"
  cert node2-kubelet "/CN=$NODE2" "IP:$NODE2_IP,DNS:$NODE2"
  if [ ! -s "$p/sa.pub" ]; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$p/sa.key" 2>/dev/null
    openssl pkey -in "$p/sa.key" -pubout -out "$p/sa.pub.tmp"
    mv "$p/sa.pub.tmp" "$p/sa.pub"
  fi
  kubeconfig admin admin
  kubeconfig controller-manager controller-manager
  kubeconfig scheduler scheduler
  kubeconfig kubelet kubelet-client
  kubeconfig node2-kubelet node2-kubelet-client
}

# ---------------------------------------------------------------- host

# save_sysctls keeps the kernel settings as found before the first `up`.
save_sysctls() {
  [ -s "$S/sysctl.orig" ] && return 0
  local k
  for k in "${SYSCTLS[@]}"; do echo "$k=$(sysctl -n "$k")"; done >"$S/sysctl.orig.tmp"
  mv "$S/sysctl.orig.tmp" "$S/sysctl.orig"
}

restore_sysctls() {
  [ -s "$S/sysctl.orig" ] || return 0
  sysctl -q -p "$S/sysctl.orig" >/dev/null || log "warning: could not restore every setting of $S/sysctl.orig"
  rm -f "$S/sysctl.orig"
}

# network: the pod bridge with NODE_IP (the CNI bridge plugin takes it as it
# is) and the DNAT rule that stands in for kube-proxy's kubernetes Service.
network() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  # Read ip's whole output first: grep -q under pipefail could end it with
  # SIGPIPE and take a present address for a missing one.
  local addrs
  addrs=$(ip -4 addr show dev "$BRIDGE")
  grep -q "inet $NODE_IP/" <<<"$addrs" || ip addr add "$NODE_IP/${POD_CIDR#*/}" dev "$BRIDGE"
  # node2's pods have their own bridge: the CNI bridge plugin refuses a
  # bridge with a gateway address other than its own. The host routes
  # between the two (ip_forward, set by the plugin).
  if ! ip link show "$BRIDGE2" >/dev/null 2>&1; then
    ip link add "$BRIDGE2" type bridge
  fi
  addrs=$(ip -4 addr show dev "$BRIDGE2")
  grep -q "inet $NODE2_IP/" <<<"$addrs" || ip addr add "$NODE2_IP/${POD2_CIDR#*/}" dev "$BRIDGE2"
  ip link set "$BRIDGE2" up
  ip link set "$BRIDGE" up
  iptables -t nat -N "$CHAIN" 2>/dev/null || true
  local rule=(-d "$SERVICE_IP/32" -p tcp --dport 443 -j DNAT --to-destination "$NODE_IP:$API_PORT")
  iptables -t nat -C "$CHAIN" "${rule[@]}" 2>/dev/null || iptables -t nat -A "$CHAIN" "${rule[@]}"
  local c
  for c in PREROUTING OUTPUT; do
    iptables -t nat -C "$c" -j "$CHAIN" 2>/dev/null || iptables -t nat -I "$c" -j "$CHAIN"
  done
}

network_down() {
  local c
  for c in PREROUTING OUTPUT; do
    while iptables -t nat -D "$c" -j "$CHAIN" 2>/dev/null; do :; done
  done
  iptables -t nat -F "$CHAIN" 2>/dev/null || true
  iptables -t nat -X "$CHAIN" 2>/dev/null || true
  ip link del "$BRIDGE" 2>/dev/null || true
  ip link del "$BRIDGE2" 2>/dev/null || true
}

# ---------------------------------------------------------------- configuration

# put FILE: writes stdin to FILE when its bytes differ; exit 0 when it wrote.
put() {
  local new
  new=$(cat)
  if [ -f "$1" ] && [ "$(<"$1")" = "$new" ]; then return 1; fi
  printf '%s\n' "$new" >"$1.tmp"
  mv "$1.tmp" "$1"
}

# configs writes each node's containerd, CNI network and kubelet
# configuration; a process whose file changed is restarted by `up`.
configs() {
  mkdir -p "$S/containerd" "$S/cni/net.d" "$S/kubelet" "$S/log/pods" \
    "$N2/containerd" "$N2/cni/net.d" "$N2/kubelet" "$N2/log/pods"
  if containerd_config "$S"; then changed+=(containerd); fi
  if cni_config "$S" "$BRIDGE" "$POD_CIDR" "$NODE_IP"; then changed+=(containerd); fi
  if kubelet_config "$S/kubelet/config.yaml" "$NODE_IP" 10250 10248 kubelet "$S" ""; then changed+=(kubelet); fi
  if containerd_config "$N2"; then changed+=(node2-containerd); fi
  if cni_config "$N2" "$BRIDGE2" "$POD2_CIDR" "$NODE2_IP"; then changed+=(node2-containerd); fi
  # cgroupRoot: node2's pods live under /kscmp-node2/kubepods, away from
  # kscmp-node's /kubepods. Its root-dir and pod logs are $S's paths, which
  # its mount namespace binds to $N2's directories.
  if kubelet_config "$N2/kubelet/config.yaml" "$NODE2_IP" "$KUBELET2_PORT" "$KUBELET2_HEALTHZ" node2-kubelet "$N2" \
    "cgroupRoot: $CGROUP2_ROOT"; then changed+=(node2-kubelet); fi
}

# containerd_config DIR: containerd's configuration in DIR/containerd, with
# its root, state, socket, runc root and CNI configuration under DIR.
# Exit 0 when it changed.
containerd_config() {
  local d=$1
  # restrict_oom_score_adj: the kubelet asks for scores below containerd's
  # own, which the kernel refuses without it. netns_mounts_under_state_dir:
  # pods' network namespaces are mounted in $S, not /run/netns. runc's
  # state (Root) is kept in $S too; only the shims' sockets stay in
  # /run/containerd/s (fixed in containerd 1.6), named by a hash of our
  # socket: each node's socket path differs, so do their shims'.
  put "$d/containerd/config.toml" <<EOF
version = 2
root = "$d/containerd/root"
state = "$d/containerd/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$d/containerd/containerd.sock"
[ttrpc]
  address = "$d/containerd/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$d/containerd/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$d/cni/net.d"
    max_conf_num = 1
EOF
}

# cni_config DIR BRIDGE CIDR GATEWAY: the pod network of the node whose
# state is DIR, on its own BRIDGE, with addresses of its own CIDR
# (host-local data in DIR/cni/ipam). Exit 0 when it changed.
cni_config() {
  # The loopback plugin is run by containerd itself for every sandbox.
  put "$1/cni/net.d/10-kscmp.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "kscmp",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$2",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$3", "gateway": "$4"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$1/cni/ipam"
      }
    }
  ]
}
EOF
}

# kubelet_config FILE ADDRESS PORT HEALTHZ CERT DIR EXTRA: a kubelet's
# configuration, serving on ADDRESS:PORT with pki/CERT.crt, talking to the
# containerd of DIR; EXTRA is more YAML. Exit 0 when it changed.
kubelet_config() {
  # failCgroupV1: false lets the kubelet run on this host's cgroup v1
  # (hybrid) hierarchy; cgroupfs because containerd's runc uses it (no
  # systemd here). Evictions are set low: a test node must not evict its
  # pods because the build machine's disk is full-ish.
  put "$1" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $2
port: $3
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $4
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $S/pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $S/pki/$5.crt
tlsPrivateKeyFile: $S/pki/$5.key
containerRuntimeEndpoint: unix://$6/containerd/containerd.sock
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
podLogsDir: $S/log/pods
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 50Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
$7
EOF
}

# ---------------------------------------------------------------- node2

# node2_ns makes node2's mount namespace unless it exists: a slave copy of
# the host's, kept by a bind mount of it on $N2/ns/mnt, in which node2's
# directories are bound on the paths kscmp-node's have (see the header).
node2_ns() {
  local ns=$N2/ns/mnt
  if nsenter "--mount=$ns" true 2>/dev/null; then return 0; fi
  mkdir -p "$N2/ns"
  # A namespace file can only be bound on a private mount.
  if ! mountpoint -q "$N2/ns"; then
    mount --bind "$N2/ns" "$N2/ns"
    mount --make-private "$N2/ns"
  fi
  touch "$ns"
  unshare "--mount=$ns" --propagation slave true
  nsenter "--mount=$ns" mount --bind "$N2/kubelet" "$S/kubelet"
  nsenter "--mount=$ns" mount --bind "$N2/log/pods" "$S/log/pods"
}

# node2_cgroups makes node2's cgroup root in every hierarchy (the kubelet
# refuses a --cgroup-root that does not exist); a cpuset cgroup v1 starts
# with no CPU and memory node, so it gets its parent's.
node2_cgroups() {
  local m
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    mkdir -p "/sys/fs/cgroup$CGROUP2_ROOT"
    sed 's/\([^ ]*\)/+\1/g' /sys/fs/cgroup/cgroup.subtree_control >"/sys/fs/cgroup$CGROUP2_ROOT/cgroup.subtree_control"
    return 0
  fi
  for m in $(awk '$3 == "cgroup" {print $2}' /proc/mounts); do
    mkdir -p "$m$CGROUP2_ROOT"
    if [ -f "$m/cpuset.cpus" ] && [ -z "$(<"$m$CGROUP2_ROOT/cpuset.cpus")" ]; then
      cat "$m/cpuset.cpus" >"$m$CGROUP2_ROOT/cpuset.cpus"
      cat "$m/cpuset.mems" >"$m$CGROUP2_ROOT/cpuset.mems"
    fi
  done
}

# ---------------------------------------------------------------- images

# CTR and CTR2 are ctr on kscmp-node's and on kscmp-node2's containerd.
CTR() { ctr --address "$S/containerd/containerd.sock" -n k8s.io "$@"; }
CTR2() { ctr --address "$N2/containerd/containerd.sock" -n k8s.io "$@"; }

# import NAME TARBALL: imports TARBALL into each node's containerd unless
# this very file was imported there.
import() {
  local sum
  sum=$(sha256sum "$2" | cut -d' ' -f1)
  if [ "$(cat "$S/images/$1.imported" 2>/dev/null)" != "$sum" ]; then
    log "importing $2"
    CTR images import --all-platforms "$2" >&2
    echo "$sum" >"$S/images/$1.imported"
  fi
  mkdir -p "$N2/images"
  if [ "$(cat "$N2/images/$1.imported" 2>/dev/null)" != "$sum" ]; then
    log "importing $2 into $NODE2"
    CTR2 images import --all-platforms "$2" >&2
    echo "$sum" >"$N2/images/$1.imported"
  fi
}

images() {
  mkdir -p "$S/images"
  local arch created=1
  arch=$("$GO" env GOARCH)
  if [ ! -s "$S/images/busybox.tar" ] || [ ! -s "$S/images/pause.tar" ]; then
    log "writing the busybox and pause images from $(readlink -f /bin/busybox)"
    "$GO" run ./cmd/kscmp-image -busybox /bin/busybox -repository localhost/busybox -tags latest \
      -platforms "linux/$arch" -created "$created" -o "$S/images/busybox.tar" >&2
    "$GO" run ./cmd/kscmp-image -busybox /bin/busybox -busybox-cmd "sleep 2147483647" -repository localhost/busybox \
      -tags pause -platforms "linux/$arch" -created "$created" -o "$S/images/pause.tar" >&2
  fi
  [ -s bin/kscmp-image.tar ] || make image >&2
  import pause "$S/images/pause.tar"
  import busybox "$S/images/busybox.tar"
  import kscmp "$repo/bin/kscmp-image.tar"
}

# ---------------------------------------------------------------- up

KUBECTL() { "$bin/kubectl" --kubeconfig "$S/admin.kubeconfig" "$@"; }

api_ready() {
  curl -sf --cacert "$S/pki/ca.crt" --cert "$S/pki/admin.crt" --key "$S/pki/admin.key" \
    "https://$NODE_IP:$API_PORT/readyz" >/dev/null
}
# node_ready NAME: the node NAME is Ready.
node_ready() {
  [ "$(KUBECTL get node "$1" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

preflight() {
  [ "$(id -u)" -eq 0 ] || die "run as root: the kubelet, containerd and the pod network need it"
  local c
  for c in containerd ctr runc openssl iptables ip curl nsenter unshare mountpoint /usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/loopback /bin/busybox; do
    command -v "$c" >/dev/null || die "$c is missing: run hack/deps.sh test"
  done
  bin=$(hack/testbin.sh cluster)
}

# manifests writes $S/manifests: deploy/manifests as these nodes need it, for
# `kubectl apply -k`. The agent's hostPath is the kubelet's seccomp directory
# under $S (the DaemonSet names /var/lib/kubelet's), the agent rolls the
# workloads whose profile changed (--restart-workloads), as a demo wants,
# sums violations every 5 s instead of every minute (--violation-interval),
# so that a test or a demo sees its Events and status in seconds, and counts
# runc's EPERM refusals (--exit-errors, as the chart's agent.exitErrors; runc
# cannot log them to audit) with what that needs, the chart's read-only
# mounts at this cluster's paths: both nodes' runc state (containerd's runc
# Root) and bundles, and the host's cgroup tree.
manifests() {
  mkdir -p "$S/manifests"
  cat >"$S/manifests/kustomization.yaml.new" <<EOF
# Written by hack/cluster.sh up: kscmp's manifests for this node.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [$(realpath --relative-to="$S/manifests" "$repo/deploy/manifests")]
patches:
- target: {kind: DaemonSet, name: kscmp-agent}
  patch: |-
    - op: replace
      path: /spec/template/spec/volumes/0/hostPath/path
      value: $S/kubelet/seccomp
- target: {kind: DaemonSet, name: kscmp-agent}
  patch: |-
    - op: add
      path: /spec/template/spec/containers/0/args/-
      value: --restart-workloads
- target: {kind: DaemonSet, name: kscmp-agent}
  patch: |-
    - op: add
      path: /spec/template/spec/containers/0/args/-
      value: --violation-interval=5s
$(exit_errors_patch)
EOF
  mv -f "$S/manifests/kustomization.yaml.new" "$S/manifests/kustomization.yaml"
}

# exit_errors_patch prints the kustomize patch of the agent DaemonSet for
# --exit-errors on this cluster (see manifests).
exit_errors_patch() {
  local n i=0 roots="" dirs=("$S/containerd/runc" "$S/containerd/state/io.containerd.runtime.v2.task" "$N2/containerd/runc" "$N2/containerd/state/io.containerd.runtime.v2.task" /sys/fs/cgroup)
  for n in "$S" "$N2"; do roots+="${roots:+,}$n/containerd/runc/*"; done
  cat <<EOF
- target: {kind: DaemonSet, name: kscmp-agent}
  patch: |-
    - op: add
      path: /spec/template/spec/containers/0/args/-
      value: --exit-errors
    - op: add
      path: /spec/template/spec/containers/0/args/-
      value: --runtime-root=$roots
EOF
  for n in "${dirs[@]}"; do
    cat <<EOF
    - op: add
      path: /spec/template/spec/containers/0/volumeMounts/-
      value: {name: exit-errors-$i, mountPath: $n, readOnly: true}
    - op: add
      path: /spec/template/spec/volumes/-
      value: {name: exit-errors-$i, hostPath: {path: $n, type: DirectoryOrCreate}}
EOF
    i=$((i + 1))
  done
}

up() {
  preflight
  mkdir -p "$S"
  S=$(cd "$S" && pwd)
  N2=$S/node2
  local changed=() p
  save_sysctls
  pki
  network
  configs
  for p in "${changed[@]}"; do stop "$p"; done

  node2_ns
  node2_cgroups

  start containerd "$(command -v containerd)" --config "$S/containerd/config.toml"
  start --ns "$N2/ns/mnt" node2-containerd "$(command -v containerd)" --config "$N2/containerd/config.toml"
  wait_for containerd 30 CTR version
  wait_for node2-containerd 30 CTR2 version
  images

  start etcd "$bin/etcd" --name "$NODE" --data-dir "$S/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "$NODE=http://127.0.0.1:$((ETCD_PORT + 1))"
  wait_for etcd 60 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

  start kube-apiserver "$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$API_PORT" \
    --tls-cert-file "$S/pki/apiserver.crt" --tls-private-key-file "$S/pki/apiserver.key" \
    --client-ca-file "$S/pki/ca.crt" \
    --kubelet-client-certificate "$S/pki/apiserver-kubelet-client.crt" --kubelet-client-key "$S/pki/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$S/pki/ca.crt" --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$S/pki/sa.pub" --service-account-signing-key-file "$S/pki/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction --allow-privileged=true \
    --enable-aggregator-routing=true --profiling=false
  wait_for kube-apiserver 120 api_ready

  start kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$S/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$S/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$S/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --root-ca-file "$S/pki/ca.crt" --service-account-private-key-file "$S/pki/sa.key" \
    --cluster-signing-cert-file "$S/pki/ca.crt" --cluster-signing-key-file "$S/pki/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --profiling=false
  start kube-scheduler "$bin/kube-scheduler" --kubeconfig "$S/scheduler.kubeconfig" \
    --authentication-kubeconfig "$S/scheduler.kubeconfig" --authorization-kubeconfig "$S/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --profiling=false

  start kubelet "$bin/kubelet" --config "$S/kubelet/config.yaml" --kubeconfig "$S/kubelet.kubeconfig" \
    --root-dir "$S/kubelet" --hostname-override "$NODE" --node-ip "$NODE_IP" --v 1
  # --root-dir is $S/kubelet in node2's namespace too: there it is $N2/kubelet.
  start --ns "$N2/ns/mnt" node2-kubelet "$bin/kubelet" --config "$N2/kubelet/config.yaml" \
    --kubeconfig "$S/node2-kubelet.kubeconfig" --root-dir "$S/kubelet" --hostname-override "$NODE2" \
    --node-ip "$NODE2_IP" --v 1
  wait_for "node $NODE Ready" 120 node_ready "$NODE"
  wait_for "node $NODE2 Ready" 120 node_ready "$NODE2"
  # Pods need their namespace's default ServiceAccount (the controller manager makes it).
  wait_for "the default ServiceAccount" 60 KUBECTL get serviceaccount default -n default
  manifests
  log "up: kubectl --kubeconfig $S/admin.kubeconfig get nodes; kscmp: kubectl apply -k $S/manifests; pods run images localhost/busybox:latest and kscmp:latest (imagePullPolicy: IfNotPresent or Never)"
  echo "$S/admin.kubeconfig"
}

# ---------------------------------------------------------------- down

# kill_pods ends every container of both nodes: through each containerd
# while it runs (SIGKILL, then delete, so that the shims exit), then
# whatever is left in the kubelets' cgroups (kubepods, in every hierarchy:
# /kubepods and /kscmp-node2/kubepods).
kill_pods() {
  local id pid f i ctr
  for ctr in containerd:CTR node2-containerd:CTR2; do
    pid_of "${ctr%%:*}" >/dev/null || continue
    for id in $("${ctr#*:}" tasks ls -q 2>/dev/null); do "${ctr#*:}" tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true; done
    for id in $("${ctr#*:}" tasks ls -q 2>/dev/null); do "${ctr#*:}" tasks delete -f "$id" >/dev/null 2>&1 || true; done
  done
  for ((i = 0; i < 50; i++)); do
    pid=$(cat $(find /sys/fs/cgroup -path '*/kubepods*' -name cgroup.procs 2>/dev/null) /dev/null 2>/dev/null | sort -u)
    [ -z "$pid" ] && return 0
    kill -KILL $pid 2>/dev/null || true
    sleep 0.1
  done
  log "warning: processes left in the kubepods cgroups: $pid"
}

# kill_shims ends the containerd shims of our two containerds (their
# -address is one of our sockets), by pid.
kill_shims() {
  local p cmd
  for p in /proc/[0-9]*; do
    cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
    case $cmd in
      *containerd-shim*" -address $S/containerd/containerd.sock "* | \
        *containerd-shim*" -address $N2/containerd/containerd.sock "*)
        kill -KILL "${p#/proc/}" 2>/dev/null || true
        ;;
    esac
  done
}

# unmount_all unmounts every mount point under $S (the kubelet's volumes,
# containerd's rootfs overlays, shm and network namespaces), deepest first.
unmount_all() {
  local m
  # mountinfo's 5th field is the mount point, with spaces as \040.
  awk -v s="$S/" 'index($5, s) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
    m=$(printf '%b' "$m")
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: cannot unmount $m"
  done
}

# remove_cgroups removes both kubelets' (empty) cgroups, leaves first, and
# node2's cgroup root in every hierarchy.
remove_cgroups() {
  find /sys/fs/cgroup -depth -type d -path '*/kubepods*' -exec rmdir {} \; 2>/dev/null || true
  find /sys/fs/cgroup -maxdepth 2 -type d -name "${CGROUP2_ROOT#/}" -exec rmdir {} \; 2>/dev/null || true
}

down() {
  [ "$(id -u)" -eq 0 ] || die "run as root"
  [ -d "$S" ] || { log "no cluster in $S"; return 0; }
  S=$(cd "$S" && pwd)
  N2=$S/node2
  stop kubelet node2-kubelet
  kill_pods
  stop containerd node2-containerd kube-scheduler kube-controller-manager kube-apiserver etcd
  kill_shims
  # node2's namespace ends with its last process and the unmount of
  # $N2/ns/mnt, and its mounts with it.
  unmount_all
  remove_cgroups
  # No pod runs now: every address host-local handed out is free again.
  rm -rf "$S/cni/ipam" "$N2/cni/ipam"
  # The kubelet links each container's log into /var/log/containers (fixed path).
  find /var/log/containers -maxdepth 1 -type l -lname "$S/*" -delete 2>/dev/null || true
  network_down
  restore_sysctls
  log "down: state kept in $S (rm -rf it for a fresh cluster)"
}

# restart NAME: a fault for tests: one process stopped and started again.
restart() {
  local p
  for p in "${PROCS[@]}"; do
    if [ "$p" = "${1:-}" ]; then
      [ -d "$S" ] || die "no cluster in $S"
      stop "$p"
      up
      return
    fi
  done
  die "restart: unknown process '${1:-}' (one of: ${PROCS[*]})"
}

status() {
  local p pid rc=0
  for p in "${PROCS[@]}"; do
    if pid=$(pid_of "$p"); then
      echo "$p running (pid $pid)"
    else
      echo "$p stopped"
      rc=1
    fi
  done
  return $rc
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  restart) restart "${2:-}" ;;
  *) echo "usage: hack/cluster.sh up|down|status|restart NAME" >&2; exit 2 ;;
esac
