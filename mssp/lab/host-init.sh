#!/bin/sh
# One boot of a lab host (run by host-supervisor.sh as `unshare --mount --uts --pid --fork`,
# inside the site's netns). $1 host dir (sshd_config, host key, authorized_keys, masks; the log
# goes there; its rt/ is the host's disk, a tmpfs the supervisor keeps across reboots),
# $2 the lab's shared lower layer, $3 hostname. Ends by exec'ing sshd as the PID namespace's init.
set -eu
H=$1 BASE=$2 NAME=$3
# /proc is still the machine's here: "self" is our pid (and start time) as seen from the root
# namespace, which is what `lab status` checks and `lab down` may signal.
read -r stat < /proc/self/stat
# shellcheck disable=SC2086
set -- $stat
echo "$1 ${22}" > "$H/init.pid"
exec 2>>"$H/sshd.log" >&2
R="$H/rt"
# The disk: what a real machine keeps across a reboot (the overlay's upper layer, root's home).
FIRST=''
if [ ! -d "$R/upper" ]; then
  FIRST=1
  mkdir "$R/upper" "$R/work" "$R/root" "$R/home-root"
fi
M="$R/root"
mount -t overlay lab-overlay -o "lowerdir=$BASE:/,upperdir=$R/upper,workdir=$R/work" "$M"
mount -t proc proc "$M/proc"
mount --bind "$M/proc/sys" "$M/proc/sys"
mount -o remount,bind,ro "$M/proc/sys"
mount -t sysfs -o ro sysfs "$M/sys"
mount -t tmpfs -o mode=755,size=4m lab-dev "$M/dev"
cd "$M/dev"
mknod -m 666 null c 1 3; mknod -m 666 zero c 1 5; mknod -m 666 full c 1 7
mknod -m 666 random c 1 8; mknod -m 666 urandom c 1 9; mknod -m 666 tty c 5 0
mkdir pts shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts pts
ln -s pts/ptmx ptmx; ln -s /proc/self/fd fd; ln -s /proc/self/fd/0 stdin
ln -s /proc/self/fd/1 stdout; ln -s /proc/self/fd/2 stderr
mount -t tmpfs -o mode=1777 lab-shm shm
cd /
mount -t tmpfs -o mode=755 lab-run "$M/run"
mkdir -m 755 "$M/run/sshd"
mount -t tmpfs -o mode=1777 lab-tmp "$M/tmp"
# Hide what a lab host must not read: the machine's home of root, the work tree, mssp's own
# config/data (vault, database, lab keys), any credentials listed by the lab.
while IFS= read -r p; do
  if [ -n "$p" ] && [ -d "$M$p" ]; then mount -t tmpfs -o mode=700,size=1m lab-mask "$M$p"; fi
done < "$H/masks"
# root's home lives on the disk (the machine's /root never shows); set up on the first boot only.
chmod 700 "$R/home-root"
mount --bind "$R/home-root" "$M/root"
if [ -n "$FIRST" ]; then
  mkdir -m 700 "$M/root/.ssh"
  cp "$H/authorized_keys" "$M/root/.ssh/authorized_keys"
  # A plain shell start-up: no pyenv or cargo init from the machine's root profile.
  printf 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n' > "$M/root/.profile"
  : > "$M/root/.bashrc"
fi
# The control dir host-supervisor.sh reads: mssp-lab-reboot asks for a reboot there.
mkdir -m 700 "$M/run/mssp-lab"
mount --bind "$H/ctl" "$M/run/mssp-lab"
cp "$H/sshd_config" "$M/etc/ssh/sshd_config.mssp-lab"
cp "$H/ssh_host_ed25519_key" "$H/ssh_host_ed25519_key.pub" "$M/etc/ssh/"
chmod 600 "$M/etc/ssh/ssh_host_ed25519_key"
echo "$NAME" > "$M/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 %s\n::1 localhost\n' "$NAME" > "$M/etc/hosts"
hostname "$NAME"
cd "$M"
pivot_root . .
umount -l .
cd /
# No security boundary (it is a lab), but a host cannot mount, load modules or reconfigure the
# site's network.
exec setpriv --bounding-set -sys_admin,-sys_module,-sys_rawio,-sys_boot,-sys_time,-net_admin,-sys_ptrace,-mac_admin,-mac_override,-syslog,-mknod \
  /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config.mssp-lab
