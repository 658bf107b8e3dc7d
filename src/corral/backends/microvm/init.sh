#!/bin/busybox sh
# PID 1 of the guest's initramfs (busybox): load the modules, mount the read-only ext4 root under a
# tmpfs overlay, then exec the corral agent as PID 1 of the new root, its stdin and stdout being the
# virtio-serial port named $PORT_NAME. /etc/init.conf (written by the image builder) sets
# MODULES, PORT_NAME, AGENT_CONFIG, HOME_DIR and USER_ID. Any failure prints one "init: FAILED" line and powers off.
/bin/busybox --install -s /bin
export PATH=/bin
fail() { echo "init: FAILED: $*"; poweroff -f; sleep 5; }
mount -t devtmpfs dev /dev || fail "mount /dev"
mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sys /sys || fail "mount /sys"
. /etc/init.conf || fail "no /etc/init.conf"
echo "init: started at $(cut -d' ' -f1 /proc/uptime)s"
for m in $MODULES; do insmod /modules/$m.ko || fail "insmod $m"; done
# The port's device name depends on the virtio device index (no udev here): find it by its name.
port() { for p in /sys/class/virtio-ports/*; do [ "$(cat $p/name 2>/dev/null)" = "$PORT_NAME" ] && echo ${p##*/}; done; }
n=0
while [ ! -b /dev/vda ] || [ -z "$(port)" ]; do
    n=$((n+1)); [ $n -gt 2000 ] && break; usleep 1000
done
[ -b /dev/vda ] || fail "no root disk /dev/vda"
PORT=$(port)
[ -n "$PORT" ] || fail "no virtio-serial port named $PORT_NAME"
echo "init: root /dev/vda, agent port /dev/$PORT"
mount -t ext4 -o ro,noatime /dev/vda /ro || fail "mount the root file system"
mount -t tmpfs -o size=40%,mode=755 rw /rw || fail "mount the overlay's tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay root -o lowerdir=/ro,upperdir=/rw/upper,workdir=/rw/work /newroot || fail "mount the overlay"
mkdir -p /newroot$HOME_DIR /newroot/tmp
chown $USER_ID /newroot$HOME_DIR && chmod 755 /newroot$HOME_DIR || fail "prepare $HOME_DIR"
mount -t tmpfs -o size=20%,mode=1777 tmp /newroot/tmp || fail "mount /tmp"
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts || fail "mount /dev/pts"
mount -t tmpfs -o size=10%,mode=1777 shm /dev/shm || fail "mount /dev/shm"
for d in dev proc sys; do mount --move /$d /newroot/$d || fail "move /$d"; done
[ -f /newroot$AGENT_CONFIG ] || fail "no $AGENT_CONFIG in the root file system"
echo "init: starting the agent at $(cut -d' ' -f1 /newroot/proc/uptime)s"
# One open of the port, read-write: a virtio console port can be opened only once.
exec switch_root /newroot /usr/bin/python3 -I /opt/corral/agent.py "$(cat /newroot$AGENT_CONFIG)" \
    <>/newroot/dev/$PORT >&0
