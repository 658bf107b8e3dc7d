#!/bin/sh
# Build out/vmlinuz, out/initramfs.cpio.gz and out/rootfs.ext4 from the .debs that fetch.sh downloaded.
# Usage: ./build.sh [RUNTIME_DIR]   (default: newest /var/lib/corral/runtime/*)
set -eu
cd "$(dirname "$0")"
HERE=$PWD
RUNTIME=${1:-$(ls -td /var/lib/corral/runtime/*/ | head -1)}
MODULES="virtio_mmio virtio_blk virtio_console overlay"
W=$HERE/work; OUT=$HERE/out
rm -rf "$W" && mkdir -p "$W" "$OUT"
T0=$(date +%s%N)
phase() { echo "[$(( ($(date +%s%N) - T0) / 1000000 )) ms] $*"; }
deb() { ls "$HERE"/debs/$1_*.deb; }

phase start
# --- kernel and modules ---------------------------------------------------------
dpkg-deb -x "$(deb 'linux-image-[0-9]*')" "$W/kernel"
KVER=$(ls "$W/kernel/lib/modules")
MODDIR=$W/kernel/lib/modules/$KVER
cp "$W/kernel/boot/vmlinuz-$KVER" "$OUT/vmlinuz"
# no modules.dep in the .deb (depmod runs at install): read each module's "depends=" from its .modinfo
ko() { find "$MODDIR" -name "$1.ko" -o -name "$(echo "$1" | tr _ -).ko" | head -1; }
ORDER=""
add() {  # depth-first: dependencies before the module
    case " $ORDER " in *" $1 "*) return;; esac
    f=$(ko "$1"); [ -n "$f" ] || { grep -q "/$1.ko" "$MODDIR/modules.builtin" && return; echo "no module $1" >&2; exit 1; }
    for d in $(grep -a -o 'depends=[A-Za-z0-9_,-]*' "$f" | head -1 | cut -d= -f2 | tr , ' '); do add "$d"; done
    ORDER="$ORDER $1"
}
for m in $MODULES; do add "$m"; done
echo "modules:$ORDER"

phase "kernel + module deps done"
# --- initramfs: busybox-static, the modules, /init ------------------------------
I=$W/initramfs
mkdir -p "$I/bin" "$I/dev" "$I/proc" "$I/sys" "$I/ro" "$I/rw" "$I/newroot" "$I/modules"
dpkg-deb -x "$(deb busybox-static)" "$W/busybox"
cp "$W/busybox/bin/busybox" "$I/bin/busybox"
for m in $ORDER; do cp "$(ko "$m")" "$I/modules/$m.ko"; done
echo "$ORDER" > "$I/modules/order"
cp "$HERE/init" "$I/init"; chmod 755 "$I/init"
mknod -m 600 "$I/dev/console" c 5 1
(cd "$I" && find . | sort | "$W/busybox/bin/busybox" cpio -o -H newc 2>/dev/null) | gzip -1 > "$OUT/initramfs.cpio.gz"

phase "initramfs done"
# --- root file system: every .deb of rootfs.lock, merged-/usr layout --------------
R=$W/rootfs
mkdir -p "$R/usr/bin" "$R/usr/sbin" "$R/usr/lib" "$R/usr/lib64"
for d in bin sbin lib lib64; do ln -s "usr/$d" "$R/$d"; done
for spec in $(cat rootfs.lock); do
    name=${spec%%=*}
    dpkg-deb --fsys-tarfile "$(deb "$name")" | tar -x --keep-directory-symlink -C "$R"
done
phase "rootfs: $(wc -l < rootfs.lock) debs extracted"
ln -sf dash "$R/usr/bin/sh"
rm -rf "$R/usr/share/doc" "$R/usr/share/man" "$R/usr/share/info" "$R/usr/share/locale"
mkdir -p "$R/opt/corral" "$R/home/user" "$R/tmp" "$R/proc" "$R/sys" "$R/dev" "$R/run" "$R/root"
chmod 1777 "$R/tmp"
cp -a "$RUNTIME/agent.py" "$RUNTIME/corral" "$R/opt/corral/"
for f in "$RUNTIME"/etc/*; do cp "$f" "$R/etc/"; done
# bytecode for the stdlib and the agent, written now: the root is read-only in the guest
# (Debian's /usr/bin/python3 on the host is the same 3.11.2, same magic number; tar and mke2fs -d keep the mtimes the .pyc files check)
nice -n 10 /usr/bin/python3 -I -m compileall -q -j0 -x '/(test|idlelib|lib2to3|tkinter)/' -d /usr/lib/python3.11 "$R/usr/lib/python3.11" >/dev/null || true
nice -n 10 /usr/bin/python3 -I -m compileall -q -d /opt/corral/corral "$R/opt/corral/corral" >/dev/null
phase "bytecode compiled"
SIZE_MB=$(( $(du -sm "$R" | cut -f1) * 12 / 10 + 16 ))
rm -f "$OUT/rootfs.ext4"
mke2fs -q -t ext4 -L corral-root -O ^has_journal -m 0 -E root_owner=0:0 -d "$R" "$OUT/rootfs.ext4" "${SIZE_MB}M"
phase "mke2fs done"
echo "$KVER" > "$OUT/kernel.version"
ls -la "$OUT"
