#!/bin/sh
# Power supply of one lab host (run by `nsenter --net=SITE unshare --mount --propagation private`,
# so this shell is the launcher `lab up` records). It holds the host's "disk" (a tmpfs in its own
# mount namespace: the overlay's upper layer and root's home) and boots the host on it: each boot
# is a new `unshare --mount --uts --pid --fork` running host-init.sh, so PID 1 is a new process.
# A boot ends when the host's PID 1 exits. If the host asked for a reboot (mssp-lab-reboot wrote
# "reboot" into the control dir the host sees as /run/mssp-lab), it boots again on the same disk,
# with the same address and host key; otherwise the host stays off and this shell exits, and the
# disk vanishes with its mount namespace.
# SIGTERM (what `lab down` sends) pulls the plug: the running boot's unshare is killed, and its
# --kill-child takes the host's PID 1 (and so the whole PID namespace) with it.
# $1 host dir, $2 the lab's shared lower layer, $3 hostname.
set -u
H=$1 BASE=$2 NAME=$3
INIT="$(dirname "$0")/host-init.sh"
C="$H/ctl"
mount -t tmpfs -o mode=755 lab-disk "$H/rt" || exit 1
# the host writes here (as /run/mssp-lab): a tiny tmpfs, so it cannot fill the machine's disk
mkdir -p -m 700 "$C"
mount -t tmpfs -o mode=700,size=16k lab-ctl "$C" || exit 1
stop='' child=''
trap 'stop=1; [ -n "$child" ] && kill -KILL "$child" 2>/dev/null' TERM INT HUP
boot=0
while [ -z "$stop" ]; do
  boot=$((boot + 1))
  rm -f "$C/request" "$H/init.pid"
  echo "boot $boot" >>"$H/sshd.log"
  unshare --mount --uts --pid --fork --kill-child --propagation private \
    /bin/sh "$INIT" "$H" "$BASE" "$NAME" &
  child=$!
  [ -n "$stop" ] && kill -KILL "$child" 2>/dev/null  # TERM came just before the boot began
  # `wait` returns early (> 128) when a trapped signal arrives: wait again until it is reaped
  while wait "$child"; rc=$?; [ "$rc" -gt 128 ] && kill -0 "$child" 2>/dev/null; do :; done
  child=''
  [ "$(cat "$C/request" 2>/dev/null)" = reboot ] || break
done
echo "powered off after boot $boot" >>"$H/sshd.log"
