#!/bin/sh
# mssp-lab-reboot: reboot this lab host (installed by `mssp lab up` as /usr/sbin/mssp-lab-reboot;
# the inventory's `reboot_command` option of every lab host names it).
# A lab host has no kernel of its own to restart: it asks its supervisor (host-supervisor.sh,
# outside the host) for a new boot through the control dir, then stops PID 1 (sshd), which ends
# the host's PID namespace. The supervisor boots it again on the same disk, address and host key.
set -u
CTL=/run/mssp-lab
if [ "$(id -u)" != 0 ]; then
  echo "mssp-lab-reboot: must be run as root" >&2
  exit 1
fi
if [ ! -d "$CTL" ]; then
  echo "mssp-lab-reboot: not a lab host ($CTL is missing)" >&2
  exit 1
fi
echo reboot > "$CTL/request" || exit 1
sync
kill -TERM 1
