#!/bin/busybox sh
# PID 1 of the guest's initramfs (busybox): load the modules, mount the read-only ext4 root under a
# tmpfs overlay, then exec the corral agent as PID 1 of the new root, its stdin and stdout being the
# virtio-serial port named $PORT_NAME. /etc/init.conf (written by the image builder) sets
# MODULES, PORT_NAME, STREAMS_PORT_NAME, AGENT_CONFIG, HOME_DIR and USER_ID; the kernel command line gives the sizes of
# the writable mounts (corral.home_mb, corral.tmp_mb, corral.shm_mb: they are the VM's, so one image
# serves every size). Any failure prints one "init: FAILED" line and powers off.
/bin/busybox --install -s /bin
export PATH=/bin
fail() { echo "init: FAILED: $*"; poweroff -f; sleep 5; }
mount -t devtmpfs dev /dev || fail "mount /dev"
mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sys /sys || fail "mount /sys"
. /etc/init.conf || fail "no /etc/init.conf"
home_mb=64 tmp_mb=64 shm_mb=16
for word in $(cat /proc/cmdline); do
    case $word in
        corral.home_mb=*) home_mb=${word#*=} ;;
        corral.tmp_mb=*) tmp_mb=${word#*=} ;;
        corral.shm_mb=*) shm_mb=${word#*=} ;;
    esac
done
echo "init: started at $(cut -d' ' -f1 /proc/uptime)s"
for m in $MODULES; do insmod /modules/$m.ko || fail "insmod $m"; done
# The port's device name depends on the virtio device index (no udev here): find it by its name.
port() { for p in /sys/class/virtio-ports/*; do [ "$(cat $p/name 2>/dev/null)" = "$1" ] && echo ${p##*/}; done; }
n=0
while [ ! -b /dev/vda ] || [ -z "$(port "$PORT_NAME")" ] || [ -z "$(port "$STREAMS_PORT_NAME")" ]; do
    n=$((n+1)); [ $n -gt 2000 ] && break; usleep 1000
done
[ -b /dev/vda ] || fail "no root disk /dev/vda"
PORT=$(port "$PORT_NAME")
[ -n "$PORT" ] || fail "no virtio-serial port named $PORT_NAME"
STREAMS=$(port "$STREAMS_PORT_NAME")
[ -n "$STREAMS" ] || fail "no virtio-serial port named $STREAMS_PORT_NAME"
echo "init: root /dev/vda, agent port /dev/$PORT"
mount -t ext4 -o ro,noatime /dev/vda /ro || fail "mount the root file system"
# the overlay's upper layer only takes what the agent (root) writes outside the mounts below:
# Landlock keeps user code to home, /tmp and /dev/shm
mount -t tmpfs -o size=16m,mode=755 rw /rw || fail "mount the overlay's tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay root -o lowerdir=/ro,upperdir=/rw/upper,workdir=/rw/work /newroot || fail "mount the overlay"
# sized tmpfs for everything user code can write: tmpfs is guest RAM, and the sizes leave the
# agent room (the host derives them from the sandbox's limits, as for the process sandbox)
mkdir -p /newroot$HOME_DIR /newroot/tmp
mount -t tmpfs -o size=${home_mb}m,mode=755,uid=${USER_ID%:*},gid=${USER_ID#*:} home /newroot$HOME_DIR \
    || fail "mount $HOME_DIR"
mount -t tmpfs -o size=${tmp_mb}m,mode=1777 tmp /newroot/tmp || fail "mount /tmp"
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts || fail "mount /dev/pts"
mount -t tmpfs -o size=${shm_mb}m,mode=1777 shm /dev/shm || fail "mount /dev/shm"
for d in dev proc sys; do mount --move /$d /newroot/$d || fail "move /$d"; done
# loopback only (the VM has no network device): the egress relay listens on 127.0.0.1
ifconfig lo 127.0.0.1 up || fail "bring up lo"
# cgroup v2: the agent puts user code in a group of its own, with the sandbox's memory and pids limits
mount -t cgroup2 cgroup2 /newroot/sys/fs/cgroup || fail "mount cgroup2"
# allocations succeed and the OOM killer (which spares the agent) ends the biggest user process,
# as the memory cgroup does in the process sandbox, instead of malloc failing somewhere at random
echo 1 > /newroot/proc/sys/vm/overcommit_memory || fail "set vm.overcommit_memory"
# every module the guest needs is loaded: a guest root (the agent, or code that became root) cannot
# load one of its own (a vsock transport, say), even from a file it wrote
echo 1 > /newroot/proc/sys/kernel/modules_disabled || fail "disable module loading"
[ -f /newroot$AGENT_CONFIG ] || fail "no $AGENT_CONFIG in the root file system"
echo "init: starting the agent at $(cut -d' ' -f1 /newroot/proc/uptime)s"
# One open of the port, read-write: a virtio console port can be opened only once.
# The host streams port is fd 3 (the agent's config says so).
exec switch_root /newroot /usr/bin/python3 -I /opt/corral/agent.py "$(cat /newroot$AGENT_CONFIG)" \
    <>/newroot/dev/$PORT >&0 3<>/newroot/dev/$STREAMS
