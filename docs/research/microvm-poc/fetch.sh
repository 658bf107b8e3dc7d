#!/bin/sh
# Resolve the root file system's package closure (as if nothing were installed) and download
# every .deb, plus the kernel and busybox-static, into ./debs. Re-running reuses the files.
set -eu
cd "$(dirname "$0")"
ROOT_PKGS="python3 bash coreutils dash grep sed findutils nodejs"
mkdir -p aptstate debs
: > aptstate/status
closure() {  # -s: simulate; the empty dpkg status makes apt list the whole dependency closure
    apt-get -o Dir::State::status="$PWD/aptstate/status" -s install --no-install-recommends "$@" |
        awk '/^Inst/ {gsub(/\(/, "", $3); print $2 "=" $3}'
}
closure $ROOT_PKGS > rootfs.lock
KERNEL=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
closure "$KERNEL" busybox-static | grep -E "^($KERNEL|busybox-static)=" > host.lock
cd debs
missing=""
for spec in $(cat ../host.lock ../rootfs.lock); do  # file names drop the epoch ("1:")
    name=${spec%%=*} ver=$(echo "${spec#*=}" | sed 's/^[0-9]*://')
    ls "${name}_${ver}_"*.deb >/dev/null 2>&1 || missing="$missing $spec"
done
[ -z "$missing" ] || apt-get download -q $missing
echo "$(ls | wc -l) debs, $(du -sh . | cut -f1)"
