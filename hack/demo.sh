#!/usr/bin/env bash
# make demo: validate and merge the example policies (examples/), explain
# the profile, then run a busybox container under runc with a small demo
# policy: an allowed command works, a blocked one is refused with EPERM.
set -euo pipefail
kscmp=$(realpath "${1:-bin/kscmp}")
cd "$(dirname "$0")/.."
work=$(mktemp -d)
id="kscmp-demo-$$"
cleanup() {
  runc --root "$work/state" delete -f "$id" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step "$kscmp" validate examples/
step "$kscmp" merge -f examples/ --namespace wordpress-mysql --labels app=wordpress --explain
step "$kscmp" merge -f examples/deny-wins.yaml --namespace demo --labels app=web --runtime none --explain

echo
echo "# A busybox container under runc, with the profile of examples/demo/busybox.yaml:"
printf '\n\033[1m$ %s\033[0m\n' "kscmp merge -f examples/demo/busybox.yaml --namespace demo --labels app=busybox-demo --runtime runc > profile.json"
"$kscmp" merge -f examples/demo/busybox.yaml --namespace demo --labels app=busybox-demo --runtime runc > "$work/profile.json"
cat "$work/profile.json"

mkdir -p "$work/bundle/rootfs/bin" "$work/bundle/rootfs/tmp" "$work/bundle/rootfs/proc" "$work/bundle/rootfs/dev" "$work/state"
cp /bin/busybox "$work/bundle/rootfs/bin/busybox"
(cd "$work/bundle" && runc spec)

# run CMD... in the container, with the profile when $1 is "profile".
container() {
  local with=$1; shift
  local args; args=$(printf '%s\n' "$@" | jq -R . | jq -s .)
  jq --argjson args "$args" --slurpfile prof "$work/profile.json" --arg with "$with" '
      .process.terminal = false | .process.args = $args | .root.readonly = false
      | .hostname = "kscmp-demo"
      | if $with == "profile" then .linux.seccomp = $prof[0] else del(.linux.seccomp) end' \
    "$work/bundle/config.json" > "$work/bundle/config.json.new"
  mv "$work/bundle/config.json.new" "$work/bundle/config.json"
  printf '\033[1m[container%s]$ %s\033[0m\n' "$([ "$with" = profile ] && echo ', profile' || echo ', no profile')" "$*"
  local rc=0
  runc --root "$work/state" run --bundle "$work/bundle" "$id" || rc=$?
  runc --root "$work/state" delete -f "$id" >/dev/null 2>&1 || true
  echo "(exit $rc)"
  return $rc
}

echo
container profile /bin/busybox echo "hello from a busybox container under the kscmp profile"
container profile /bin/busybox ls /
if container profile /bin/busybox mkdir /tmp/blocked; then
  echo "demo FAILED: mkdir was not blocked" >&2; exit 1
fi
echo "# Control: the same mkdir without the profile works:"
container none /bin/busybox mkdir /tmp/allowed
echo
echo "# Discovery: record what a container does, in the kernel (eBPF), while it runs."
printf '\n\033[1m$ %s\033[0m\n' "kscmp discover --duration 8s --container $id -o report.json &"
"$kscmp" discover --duration 8s --container "$id" -o "$work/report.json" &
discover_pid=$!
sleep 3 # the recorder attaches in well under a second; the rest is margin
container none /bin/busybox sh -c 'mkfifo /tmp/fifo && ls / >/dev/null && echo hello from the recorded container'
wait "$discover_pid"
echo "# The report: the container, by id, and every system call it made (the runtime's set-up calls left out):"
jq '{node, kernel, arch, hook, lost, workloads: [.workloads[] | {identity, calls: (.syscalls | map_values(length)), syscalls}]}' "$work/report.json"
grep -q '"mknodat"' "$work/report.json" || { echo "demo FAILED: mkfifo's mknodat not recorded" >&2; exit 1; }


echo
echo "# Recommend: the report becomes a policy to review, with a summary for the pull request."
step "$kscmp" recommend --from "$work/report.json" -o "$work/policies" --summary "$work/summary.md"
cat "$work/policies/_host/$id.yaml"
echo
echo "# Merge the recommended policy (plus runc's start-up set) and run the same container under it:"
printf '\n\033[1m$ %s\033[0m\n' "kscmp merge -f policies/ --container-name $id --runtime runc > recommended.json"
"$kscmp" merge -f "$work/policies" --container-name "$id" --runtime runc > "$work/profile.json"
container profile /bin/busybox sh -c 'mkfifo /tmp/fifo2 && ls / >/dev/null && echo hello from the recorded container'
echo "# A call the container never made (mkdir) is refused:"
if container profile /bin/busybox mkdir /tmp/never; then
  echo "demo FAILED: mkdir was not refused under the recommended profile" >&2; exit 1
fi
echo
echo "# The review summary:"
cat "$work/summary.md"

echo
echo "demo OK: the allowed commands ran, mkdir was refused (EPERM) only under the profile;"
echo "discovery recorded the container's calls, the recommended policy runs it and refuses the rest."
