#!/usr/bin/env bash
# Installs the Debian packages that the end-to-end tests (./e2e) need, when
# missing: nginx, redis-server and redis-tools, python3 (Debian's own
# /usr/bin/python3), wrk and curl, plus the container runtimes the tests run
# them under. The servers are only run by the tests, inside containers:
# nothing is started during the installation, and none of them is left
# enabled, running or listening afterwards.
# Usage: hack/e2e-deps.sh
set -euo pipefail

want=(nginx redis-server redis-tools python3 wrk curl runc crun busybox-static)
# The services the packages above would start; checked and stopped after
# the installation.
services=(nginx redis-server)

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "kscmp e2e: missing Debian packages: ${missing[*]}; run as root: hack/e2e-deps.sh" >&2
    exit 1
  fi
  echo "kscmp e2e: installing ${missing[*]}" >&2

  # Forbid every service start during the installation (invoke-rc.d and
  # deb-systemd-invoke ask policy-rc.d; 101 = action forbidden). A
  # policy-rc.d that is already there is kept as it is.
  policy=/usr/sbin/policy-rc.d
  own_policy=false
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# kscmp hack/e2e-deps.sh: no service starts while installing.\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    own_policy=true
  fi
  cleanup() { if $own_policy; then rm -f "$policy"; fi; }
  trap cleanup EXIT

  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Whatever the installation did (or an earlier one): the services are not to
# run on this machine outside the tests.
for s in "${services[@]}"; do
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    systemctl stop "$s.service" >/dev/null 2>&1 || true
  elif [ -x "/etc/init.d/$s" ]; then
    "/etc/init.d/$s" stop >/dev/null 2>&1 || true
  fi
  if command -v systemctl >/dev/null; then
    # Works without a running systemd too: it only removes the symlinks.
    systemctl disable "$s.service" >/dev/null 2>&1 || true
  fi
  if command -v update-rc.d >/dev/null && [ -x "/etc/init.d/$s" ]; then
    update-rc.d "$s" disable >/dev/null 2>&1 || true
  fi
done

# Check: no server process of these packages runs outside a container test.
left=()
for exe in /usr/sbin/nginx /usr/bin/redis-server; do
  for pid in $(pidof "$exe" 2>/dev/null || true); do
    # Processes of a running e2e test live in a container's mount
    # namespace; only the host's own are the installation's.
    if [ "$(readlink "/proc/$pid/ns/mnt" 2>/dev/null)" = "$(readlink /proc/1/ns/mnt)" ]; then
      left+=("$exe[$pid]")
    fi
  done
done
if [ ${#left[@]} -gt 0 ]; then
  echo "kscmp e2e: still running after the installation: ${left[*]}; stop them (they would hold ports and skew the tests)" >&2
  exit 1
fi
