#!/usr/bin/env bash
# Installs the Debian packages that kscmp's tests and demo need, when missing.
# Usage: hack/deps.sh [test|demo]
set -euo pipefail

want=(runc crun busybox-static strace jq systemd gcc)
# musl-tools: TestClone3Refused (a musl program under a profile refusing clone3)
[ "${1:-test}" = test ] && want+=(gcc-multilib musl-tools clang llvm libbpf-dev debootstrap systemd-container containerd qemu-user-static
  containernetworking-plugins iptables iproute2 openssl curl) # the last line: hack/cluster.sh

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "kscmp: missing Debian packages: ${missing[*]}; run as root: apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "kscmp: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
