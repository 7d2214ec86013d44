#!/bin/sh
# Build the lab's shared lower layer once per `lab up` (in its own mount, PID and network
# namespaces, so nothing reaches the machine or any network): the lab repository as the only apt
# source, the old package versions installed, the admin user, no machine host keys or password
# hashes.
# $1 layer dir (overlay upper, later every host's lower layer), $2 overlay work dir,
# $3 mount point, $4 dir with admin.pw (admin:password) and authorized_keys.
set -eu
L=$1 W=$2 M=$3 S=$4
mount -t overlay lab-base -o "lowerdir=/,upperdir=$L,workdir=$W" "$M"
mount -t proc proc "$M/proc"
mount --bind /dev "$M/dev"
mount -t tmpfs -o mode=1777 lab-tmp "$M/tmp"
mount -t tmpfs -o mode=755 lab-run "$M/run"
mount -t tmpfs -o mode=700 lab-root "$M/root"
cp "$S/admin.pw" "$S/authorized_keys" "$M/run/"
install -m 755 "$S/mssp-lab-reboot" "$M/usr/sbin/mssp-lab-reboot"
chroot "$M" /bin/sh -eu -c '
export DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C
rm -f /etc/ssh/ssh_host_*
# no password hash of the machine may be readable in hosts: existing accounts get "*"
sed -i -E "s/^([^:]*):[^:]*:/\1:*:/" /etc/shadow /etc/gshadow
rm -rf /etc/apt/sources.list.d/* /etc/apt/auth.conf.d/* /var/lib/apt/lists/*
echo "deb [trusted=yes] file:/srv/mssp-lab-repo ./" > /etc/apt/sources.list
printf "Acquire::Languages \"none\";\nAcquire::Retries \"0\";\n" > /etc/apt/apt.conf.d/99mssp-lab
useradd --create-home --shell /bin/bash --groups sudo admin
chpasswd < /run/admin.pw
install -d -m 700 -o admin -g admin /home/admin/.ssh
install -m 600 -o admin -g admin /run/authorized_keys /home/admin/.ssh/authorized_keys
dpkg -i /srv/mssp-lab-repo/pool/*_1.0_all.deb > /dev/null
apt-get update -qq
'
