#!/bin/sh
# make demo's script (t/demo.sh) with a short duration: it builds the demo
# image, serves it to a simulated guest, shows the tree (including a loop
# mount of the guest's ext4), and stops and cleans up everything.
. "$(dirname "$0")/lib.sh"
need_root "mounts FUSE and a loop device"
need_fuse
need_cmd qemu-img qemu-utils
need_cmd mkfs.ext4 e2fsprogs
need_cmd iostat sysstat
need_cmd xenstore-read xenstore-utils
losetup -f >/dev/null 2>&1 || skip_all "no free loop device"
plan 8

TMPDIR=$T "$VBDFS_SRC/t/demo.sh" --duration 2 >"$T/demo.out" 2>&1 &
dpid=$!
i=0
while kill -0 $dpid 2>/dev/null && [ $i -lt 1200 ]; do sleep 0.05; i=$((i + 1)); done
kill -0 $dpid 2>/dev/null && kill -TERM $dpid
wait $dpid; rc=$?
[ "$rc" = 0 ] || sed 's/^/#   /' "$T/demo.out" | tail -n 30 >&2
is "$rc" 0 "demo exits 0"
out=$(cat "$T/demo.out")
like "$out" "vbdfs is running" "the daemon started"
like "$out" "1-51712/disk" "the device appeared in the tree"
like "$out" "^\./etc/motd$" "the guest's ext4 was loop-mounted and listed"
like "$out" "demo: served [1-9][0-9]* reads and [1-9][0-9]* writes" "the guest's mixed workload was served"
like "$out" "vbdfs stopped cleanly \(exit 0\)" "the daemon stopped cleanly"
is "$(grep -c "$T/vbdfs-demo" /proc/mounts)" 0 "nothing left mounted"
is "$(ls "$T" | grep -c vbdfs-demo)" 0 "its files were removed"
done_testing
