#!/usr/bin/env bash
# Builds the kube-apiserver and etcd binaries that the integration tests
# (internal/apitest) start, from the Go module proxy only, into
#
#   ${KSCMP_TESTBIN:-$HOME/.cache/kscmp-testbin}/<kube version>/{kube-apiserver,etcd}
#
# With the argument `cluster` (or KSCMP_TESTBIN_CLUSTER=1) it also builds what
# the local single-node cluster (hack/cluster.sh) runs: kubelet,
# kube-controller-manager, kube-scheduler and kubectl, in the same directory and
# in ONE go build with whichever of them (kube-apiserver included) are missing,
# so that the packages they share are compiled once.
#
# and prints that directory on stdout (progress goes to stderr). Binaries that
# exist and report the wanted version (--version) are reused, so running it
# again is cheap. Nothing is written into the repository: each binary is built
# from a throw-away module in a temporary directory under the cache root.
#
# Usage: hack/testbin.sh [cluster]
# Env:   KSCMP_TESTBIN       cache root (default $HOME/.cache/kscmp-testbin)
#        KSCMP_KUBE_VERSION  k8s.io/kubernetes version (default below; the
#                            tests read the same variable)
#        KSCMP_ETCD_VERSION  go.etcd.io/etcd/server/v3 version (default below)
#        GO                  go command (default: go)
set -euo pipefail

# Keep KUBE_VERSION in step with k8s.io/client-go in go.mod (v1.X.Y <-> v0.X.Y)
# and with KubeVersion in internal/apitest/apitest.go.
KUBE_VERSION=${KSCMP_KUBE_VERSION:-v1.37.2}
# The etcd minor that this Kubernetes minor is tested with (its
# build/dependencies.yaml), latest patch.
ETCD_VERSION=${KSCMP_ETCD_VERSION:-v3.7.3}
GO=${GO:-go}
cluster=${KSCMP_TESTBIN_CLUSTER:-0}
case ${1:-} in
  "") ;;
  cluster) cluster=1 ;;
  *) echo "usage: hack/testbin.sh [cluster]" >&2; exit 2 ;;
esac

log() { echo "testbin: $*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $KUBE_VERSION =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || die "KSCMP_KUBE_VERSION=$KUBE_VERSION: want v1.MINOR.PATCH"
kube_minor=${BASH_REMATCH[1]}
# Staging modules (k8s.io/api, k8s.io/client-go, ...) are published as v0.MINOR.PATCH.
staging_version=v0.${kube_minor}.${BASH_REMATCH[2]}

root=${KSCMP_TESTBIN:-$HOME/.cache/kscmp-testbin}
mkdir -p "$root"
root=$(cd "$root" && pwd)
dir=$root/$KUBE_VERSION
mkdir -p "$dir"

# One build at a time per cache root (parallel CI steps, make -j).
exec 9>"$root/.lock"
flock 9

# The Kubernetes commands this run wants (under k8s.io/kubernetes/cmd/).
kube_cmds=(kube-apiserver)
[ "$cluster" = 1 ] && kube_cmds+=(kube-controller-manager kube-scheduler kubelet kubectl)

# cmd_ok NAME: the binary exists and reports the wanted version. kubectl
# reports it as "Client Version: v1.X.Y"; the others as "Kubernetes v1.X.Y".
cmd_ok() {
  local out
  [ -x "$dir/$1" ] || return 1
  if [ "$1" = kubectl ]; then
    out=$("$dir/kubectl" version --client 2>/dev/null) || return 1
    grep -qx "Client Version: $KUBE_VERSION" <<<"$out"
  else
    out=$("$dir/$1" --version 2>/dev/null) || return 1
    [ "$out" = "Kubernetes $KUBE_VERSION" ]
  fi
}
# missing_cmds prints the wanted commands that are absent or stale.
missing_cmds() {
  local c
  for c in "${kube_cmds[@]}"; do cmd_ok "$c" || echo "$c"; done
}
kube_ok() { [ -z "$(missing_cmds)" ]; }
etcd_ok() {
  [ -x "$dir/etcd" ] &&
    # Read the whole output first: with pipefail, grep -q quitting at the
    # first line can end etcd with SIGPIPE and fail the check (seen under load).
    grep -qx "etcd Version: ${ETCD_VERSION#v}" <<<"$("$dir/etcd" --version 2>/dev/null)"
}

if kube_ok && etcd_ok; then
  log "${kube_cmds[*]} $KUBE_VERSION and etcd $ETCD_VERSION are up to date"
  echo "$dir"
  exit 0
fi

# Build outside any workspace, with the module proxy, statically.
export GOWORK=off CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=mod"
work=$(mktemp -d "$root/.build.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

# gomod MODULE@VERSION prints the path of that module's go.mod in the module cache.
gomod() {
  local out f
  out=$("$GO" mod download -json "$1" 2>&1) || true
  f=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' <<<"$out")
  [[ -n $f && -f $f ]] || die "cannot download $1 from the module proxy: $(sed -n 's/^[[:space:]]*"Error": //p' <<<"$out")"
  echo "$f"
}
# godirective GO.MOD prints its go version.
godirective() { sed -n 's/^go \([0-9.]*\)$/\1/p' "$1"; }

build_kube() {
  local start=$SECONDS m=$work/kube kmod s ldflags p c cmds pkgs=()
  mapfile -t cmds < <(missing_cmds)
  for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  log "building ${cmds[*]} $KUBE_VERSION (staging modules $staging_version); a cold build takes minutes"
  kmod=$(gomod "k8s.io/kubernetes@$KUBE_VERSION")
  mkdir -p "$m"
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them
  # with ./staging/...; replace directives of a dependency are ignored, so
  # point them at the published versions. The sample-* modules are not
  # published and not needed by kube-apiserver.
  {
    echo "module kscmp.local/testbin/kube"
    echo
    echo "go $(godirective "$kmod")"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    sed -n 's#^[[:space:]]*k8s.io/\([a-z0-9-]*\) => ./staging/src/k8s.io/\1[[:space:]]*$#\1#p' "$kmod" |
      while read -r s; do
        case $s in sample-cli-plugin | sample-controller) continue ;; esac
        printf '\tk8s.io/%s => k8s.io/%s %s\n' "$s" "$s" "$staging_version"
      done
    echo ")"
  } >"$m/go.mod"
  grep -q 'k8s.io/client-go =>' "$m/go.mod" || die "found no staging modules in $kmod"
  (cd "$m" && "$GO" get "${pkgs[@]/%/@$KUBE_VERSION}") >&2
  # What hack/lib/version.sh would stamp; --version and /version report it.
  ldflags="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$kube_minor -X $p.gitTreeState=clean"
  done
  # One go build for all of them (-o DIR/ writes one binary per main
  # package), so shared packages are compiled and linked from one action graph.
  rm -rf "$dir/.new" && mkdir -p "$dir/.new"
  (cd "$m" && "$GO" build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ldflags" \
    -o "$dir/.new/" "${pkgs[@]}") >&2
  for c in "${cmds[@]}"; do
    mv -f "$dir/.new/$c" "$dir/$c"
    cmd_ok "$c" || die "$dir/$c does not report version $KUBE_VERSION"
  done
  rmdir "$dir/.new"
  log "built ${cmds[*]} in $((SECONDS - start))s"
}

build_etcd() {
  local start=$SECONDS m=$work/etcd emod
  log "building etcd $ETCD_VERSION"
  emod=$(gomod "go.etcd.io/etcd/server/v3@$ETCD_VERSION")
  mkdir -p "$m"
  printf 'module kscmp.local/testbin/etcd\n\ngo %s\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$(godirective "$emod")" "$ETCD_VERSION" >"$m/go.mod"
  cat >"$m/main.go" <<'EOF'
// Command etcd is the etcd server, as the etcd repository's main package builds it.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  (cd "$m" && "$GO" mod tidy && "$GO" build -trimpath -ldflags "-s -w" -o "$dir/.etcd.new" .) >&2
  mv -f "$dir/.etcd.new" "$dir/etcd"
  etcd_ok || die "$dir/etcd --version does not report $ETCD_VERSION"
  log "built etcd in $((SECONDS - start))s"
}

kube_ok || build_kube
etcd_ok || build_etcd
echo "$dir"
