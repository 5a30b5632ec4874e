#!/bin/bash
# t/xen/mkdomu.sh - build vbdfs's domU initramfs for the xenlab.
#
# usage: t/xen/mkdomu.sh STAGE LAB_DOMU_ROOT OUT.cpio
#   STAGE           the lab's unpacked Debian packages ($XENLAB_DIR/stage)
#   LAB_DOMU_ROOT   the lab's domU root ($XENLAB_DIR/root-domU): busybox,
#                   xen-blkfront
# Adds to a copy of it: ext4 and its modules (from STAGE, same kernel),
# e2fsprogs and util-linux's fstrim/blkdiscard from this host (Debian 12, the
# same glibc as the guest's packages) with their libraries, and
# t/xen/domU-init.sh as /init.  The lab's own domU stays untouched.
set -euo pipefail

STAGE=$1 LABROOT=$2 OUT=$3
HERE=$(cd "$(dirname "$0")" && pwd)
R=$(mktemp -d /tmp/vbdfs-domU.XXXXXX)
trap 'rm -rf "$R"' EXIT

cp -a "$LABROOT"/. "$R"/
KVER=$(ls "$STAGE/lib/modules" | sort -V | tail -1)
MODDIR=$STAGE/lib/modules/$KVER
mkdir -p "$R/lib/modules/$KVER/extra" "$R/etc/vbdfs-lab"
: > "$R/etc/vbdfs-lab/modules.list"
for m in crc32c_generic crc16 mbcache jbd2 ext4; do
    f=$(find "$MODDIR/kernel" -name "$m.ko*" | head -1)
    [ -n "$f" ] || { echo "mkdomu: module $m not found" >&2; exit 1; }
    cp "$f" "$R/lib/modules/$KVER/extra/"
    echo "/lib/modules/$KVER/extra/$(basename "$f")" >> "$R/etc/vbdfs-lab/modules.list"
done

add_bin() { # host binary -> same path in the root, with its libraries
    local b=$1 lib
    mkdir -p "$R/$(dirname "$b")"
    cp -L "$b" "$R/$b"
    for lib in $(ldd "$b" | awk '/=>/ {print $3} !/=>/ && /^\t\// {print $1}'); do
        [ -e "$R/$lib" ] && continue
        mkdir -p "$R/$(dirname "$lib")"
        cp -L "$lib" "$R/$lib"
    done
}
for b in /sbin/mke2fs /sbin/e2fsck /sbin/fstrim /sbin/blkdiscard; do
    add_bin "$(readlink -f "$b")"
done
ln -sf mke2fs "$R/usr/sbin/mkfs.ext4"
ln -sf e2fsck "$R/usr/sbin/fsck.ext4"
# usr-merge: the guest's /sbin and /usr/sbin both resolve
install -m 0755 "$HERE/domU-init.sh" "$R/init"
(cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) > "$OUT"
