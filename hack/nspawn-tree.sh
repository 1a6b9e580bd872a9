#!/usr/bin/env bash
# Builds the Debian tree that internal/nspawntest boots with systemd-nspawn:
# a minimal Debian bookworm with a real systemd (systemd, systemd-sysv, dbus),
# cached outside the repository in
#
#   ${1:-${KSCMP_NSPAWN_TREE:-$HOME/.cache/kscmp-nspawn/bookworm}}
#
# and prints that directory on stdout (progress goes to stderr). A complete
# tree carries a stamp file (/.kscmp-nspawn-tree, holding the recipe version
# below); a tree with the right stamp is reused, so running this again is
# cheap. A tree is built into a temporary directory beside the final one and
# renamed at the end, so an interrupted build never leaves a half tree that
# looks complete. Machines boot the tree with --volatile=overlay and never
# write into it.
#
# Installs debootstrap and systemd-container with apt when missing (as root).
#
# Usage: hack/nspawn-tree.sh [DIR]
# Env:   KSCMP_NSPAWN_TREE    the tree's directory (default above)
#        KSCMP_DEBIAN_MIRROR  the Debian mirror (default: the one this host's
#                             apt uses, http://deb.debian.org/debian)
# Exit:  0 with the path on stdout; 3 when a prerequisite is missing and
#        cannot be installed (not root, no apt-get); 1 on other errors.
set -euo pipefail

# Bump when the recipe below changes: trees with another stamp are rebuilt.
RECIPE=1
SUITE=bookworm
MIRROR=${KSCMP_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=systemd,systemd-sysv,dbus
STAMP=.kscmp-nspawn-tree

log() { echo "nspawn-tree: $*" >&2; }
die() { log "error: $*"; exit 1; }
prereq() { log "missing prerequisite: $*"; exit 3; }

dir=${1:-${KSCMP_NSPAWN_TREE:-$HOME/.cache/kscmp-nspawn/$SUITE}}
want_stamp="kscmp-nspawn-tree recipe=$RECIPE suite=$SUITE packages=$PACKAGES"

tree_ok() { [ -f "$dir/$STAMP" ] && [ "$(cat "$dir/$STAMP")" = "$want_stamp" ]; }

# Installs the Debian packages that provide the given commands, when missing.
# Arguments: command:package pairs.
need() {
  local pair cmd pkg missing=()
  for pair in "$@"; do
    cmd=${pair%%:*} pkg=${pair#*:}
    PATH=$PATH:/usr/sbin:/sbin command -v "$cmd" >/dev/null || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || prereq "Debian packages ${missing[*]} (run as root, or: apt-get install ${missing[*]})"
  command -v apt-get >/dev/null || prereq "${missing[*]} (no apt-get on this host to install them)"
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
}

# Booting the tree needs systemd-nspawn even when the tree is cached.
need systemd-nspawn:systemd-container

if tree_ok; then
  echo "$(cd "$(dirname "$dir")" && pwd)/$(basename "$dir")"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || prereq "root privileges (building the tree in $dir runs debootstrap)"

mkdir -p "$(dirname "$dir")"
dir=$(cd "$(dirname "$dir")" && pwd)/$(basename "$dir")

# One build at a time per tree (parallel test packages, make -j).
exec 9>"$dir.lock"
flock 9
if tree_ok; then # built by another process while this one waited
  echo "$dir"
  exit 0
fi

need debootstrap:debootstrap

# Removes a (partial) tree. debootstrap mounts /proc and /sys into the tree
# (and may bind /dev): a killed build leaves them mounted, and rm must never
# descend into them.
remove_tree() {
  local m
  awk -v p="$1/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" || true; done
  rm -rf --one-file-system "$1"
}

# Leftovers of builds that were killed (this process holds the lock, so no
# other build is running).
for leftover in "$dir".build.* "$dir".old.*; do
  if [ -e "$leftover" ]; then remove_tree "$leftover"; fi
done

build=$(mktemp -d "$dir.build.XXXXXX")
chmod 755 "$build" # mktemp made it 0700: the machine's / must be searchable by every user
trap 'remove_tree "$build"' EXIT
trap 'exit 130' INT TERM HUP
start=$(date +%s)
log "debootstrap $SUITE ($PACKAGES) from $MIRROR into $build"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$build" "$MIRROR" >&2 ||
  die "debootstrap failed (see above)"

# Keep the tree small: nothing in a test machine installs packages or reads
# documentation.
rm -rf "$build"/var/cache/apt/archives/*.deb "$build"/var/lib/apt/lists/* \
  "$build"/usr/share/doc/* "$build"/usr/share/man/* "$build"/usr/share/locale/* \
  "$build"/usr/share/info/*

# A fixed identity. debootstrap copied the host's /etc/hostname; systemd in a
# machine sets the hostname from it (the machine names differ). The
# machine-id that the systemd package wrote stays: a set machine-id means no
# "first boot" (systemd-firstboot would wait for answers on the console).
echo kscmp-nspawn >"$build/etc/hostname"
[ -s "$build/etc/machine-id" ] || die "the tree has no /etc/machine-id"

# Nothing runs in a test machine that the test did not start: no login prompt
# on the (read-only) console, no periodic jobs that would add processes and
# system calls to what a test observes, no first-boot questions.
for unit in console-getty.service systemd-firstboot.service \
  apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
  e2scrub_all.timer fstrim.timer systemd-tmpfiles-clean.timer; do
  ln -sf /dev/null "$build/etc/systemd/system/$unit"
done

echo "$want_stamp" >"$build/$STAMP"

# Replace a tree of another recipe version, then move the new one in place.
if [ -e "$dir" ]; then
  old=$(mktemp -d "$dir.old.XXXXXX")
  mv "$dir" "$old/tree"
  remove_tree "$old"
fi
mv "$build" "$dir"
trap - EXIT INT TERM HUP
log "built $dir in $(($(date +%s) - start)) s ($(du -sh "$dir" | cut -f1))"
echo "$dir"
