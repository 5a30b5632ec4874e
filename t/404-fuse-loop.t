#!/bin/sh
# An ext4 filesystem inside a compressed qcow2 (and a raw image) is
# loop-mountable read-only through /vbd/<dev>/disk and lists the expected
# files with the expected contents.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-fuse.sh"
need_cmd mkfs.ext4 e2fsprogs
need_cmd losetup util-linux
losetup -f >/dev/null 2>&1 || skip_all "no free loop device"
plan 7

mkdir -p "$T/tree/etc" "$T/tree/data"
echo "hello from the guest" >"$T/tree/etc/motd"
seq 1 20000 >"$T/tree/data/numbers"
head -c 300000 /dev/urandom >"$T/tree/data/random.bin"
qemu-img create -q -f raw "$T/fs.raw" 32M
mkfs.ext4 -q -F -d "$T/tree" "$T/fs.raw" >/dev/null 2>&1 || bail_out "mkfs.ext4 -d failed"
qemu-img convert -c -O qcow2 "$T/fs.raw" "$T/fs.qcow2"

start_tree
tcmd add 1 51712 raw "$T/fs.raw"
tcmd add 2 51712 qcow2 "$T/fs.qcow2"
for d in 1 2; do
    mkdir -p "$T/m$d"
    at_exit "umount '$T/m$d' 2>/dev/null"
done
ok "loop-mount the raw view" mount -o ro,loop -t ext4 "$M/1-51712/disk" "$T/m1"
ok "loop-mount the compressed qcow2 view" mount -o ro,loop -t ext4 "$M/2-51712/disk" "$T/m2"
is "$(cd "$T/m2" && find . -type f | sort | tr '\n' ' ')" "./data/numbers ./data/random.bin ./etc/motd " \
    "the files are there"
is "$(cat "$T/m2/etc/motd")" "hello from the guest" "motd reads back"
ok "file contents equal the originals" sh -c "cmp '$T/m2/data/random.bin' '$T/tree/data/random.bin' && cmp '$T/m2/data/numbers' '$T/tree/data/numbers' && cmp '$T/m1/data/random.bin' '$T/tree/data/random.bin'"
umount "$T/m1"; umount "$T/m2"
ok "unmounted cleanly; the tree still serves" test -d "$M/2-51712"
ok "the tree stops cleanly (exit 0)" stop_tree
done_testing
