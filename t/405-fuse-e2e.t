#!/bin/sh
# End to end: `vbdfs --sim DIR MOUNT` serving a vbd-front guest attached with
# vbdctl.  The device appears under MOUNT with its symlink while the guest
# is connected and goes away when it detaches; stat, stats, requests and
# iostat -f show the guest's I/O; disk equals the image and loop-mounts an
# ext4 filesystem while the guest uses it; SIGTERM and fusermount3 -u stop
# the daemon cleanly.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-fuse.sh"
need_cmd xenstore-read xenstore-utils
need_cmd mkfs.ext4 e2fsprogs
need_cmd iostat sysstat
losetup -f >/dev/null 2>&1 || skip_all "no free loop device"
plan 20
SIM=$T/sim
XENSTORED_PATH=$SIM/xenstored
export XENSTORED_PATH

vbdfs_start() {
    mkdir -p "$M"
    # A restart must not see the previous run's "ready": the shell may
    # truncate the log only after the first grep.
    rm -f "$T/vbdfs.log"
    "$VBDFS" --sim "$SIM" -f "$@" "$M" >"$T/vbdfs.log" 2>&1 &
    VPID=$!
    at_exit "kill $VPID 2>/dev/null; wait $VPID 2>/dev/null; grep -q ' $M fuse' /proc/mounts && fusermount3 -uz '$M'"
    wait_for 10 grep -q "ready" "$T/vbdfs.log"
    wait_for 10 grep -q " $M fuse" /proc/mounts
}
# guest DOMID NAME VDEV IMAGE FORMAT [vbd-front options]: in the background
guest() {
    g_dom=$1 g_name=$2 g_vdev=$3 g_img=$4 g_fmt=$5
    shift 5
    "$VBD_FRONT" --sim "$SIM" --domid "$g_dom" --name "$g_name" --wait "$@" "$g_vdev" >"$T/g.out" 2>&1 &
    GPID=$!
    at_exit "kill -9 $GPID 2>/dev/null"
    wait_for 10 xenstore-read "/local/domain/$g_dom/name"
    "$VBDCTL" --sim "$SIM" attach "$g_dom" "$g_vdev" "$g_img" --format "$g_fmt" --wait 5 >"$T/attach.out" 2>&1 ||
        diag "attach failed: $(cat "$T/attach.out")"
}

# An ext4 filesystem in a compressed qcow2, the guest reading it.
mkdir -p "$T/tree/etc"
echo "served by vbdfs" >"$T/tree/etc/motd"
seq 1 50000 >"$T/tree/numbers"
qemu-img create -q -f raw "$T/fs.raw" 32M
mkfs.ext4 -q -F -d "$T/tree" "$T/fs.raw" >/dev/null 2>&1
qemu-img convert -c -O qcow2 "$T/fs.raw" "$T/fs.qcow2"

ok "vbdfs --sim DIR MOUNT starts and mounts" vbdfs_start
ok "the tree is mounted" grep -q " $M fuse.vbdfs " /proc/mounts
guest 5 web1 xvda "$T/fs.qcow2" qcow2 --rw read --pattern rand --qd 4 --queues 1 --duration 20s
D=$M/5-51712
ok "the device directory appears when the guest connects" wait_for 10 test -d "$D"
is "$(readlink "$M/web1-xvda")" "5-51712" "symlink from the domain name and vdev"
ok "the request stream shows the guest's reads" sh -c "head -n 20 '$D/requests' >'$T/req.out'"
like "$(grep -v '^#' "$T/req.out" | sed -n 1p)" '^202,0 +0 +[0-9]+ +[0-9]+\.[0-9]{9} +5  C +R [0-9]+ \+ 8 \[0\] ' \
    "a blkparse-style line from domain 5"
set -- $(cat "$D/stat")
is "$#" 17 "stat: 17 fields"
ok "stat: reads counted" test "$1" -gt 0
like "$(cat "$D/stats")" "read_requests: [1-9]" "stats: read requests"
like "$(cat "$D/info")" "image0.compression: zlib" "info: the compressed image"
is "$(grep -cE '^(vdev|mode|domid|devid):' "$D/info")" 4 "info: identity keys once each, backend facts below"
iostat -x -f "$M" 1 2 >"$T/iostat.out" 2>&1
like "$(awk '$1 == "vbd-5-51712" {print $2}' "$T/iostat.out" | tail -n 1)" '^[0-9.]*[1-9]' "iostat -f: r/s moves"
ok "disk equals the image" cmp "$D/disk" "$T/fs.raw"
mkdir -p "$T/m"
at_exit "umount '$T/m' 2>/dev/null"
ok "loop-mount the disk while the guest reads" mount -o ro,loop -t ext4 "$D/disk" "$T/m"
is "$(cat "$T/m/etc/motd" 2>&1)" "served by vbdfs" "its files read back"
umount "$T/m"
ok "detach" "$VBDCTL" --sim "$SIM" detach 5 xvda --timeout 10
ok "the directory goes away" wait_for 10 sh -c "! test -e '$D' && ! test -e '$M/web1-xvda'"
kill -9 $GPID 2>/dev/null
kill -TERM $VPID
wait_exit $VPID 20; rc=$?
is "$rc $(grep -q " $M fuse" /proc/mounts && echo mounted || echo unmounted)" "0 unmounted" \
    "SIGTERM: vbdfs exits 0 and the tree is unmounted"
vbdfs_start
fusermount3 -u "$M"
wait_exit $VPID 20; is $? 0 "fusermount3 -u: vbdfs stops by itself, exit 0"
like "$(cat "$T/vbdfs.log")" "unmounted; shutting down" "and says why"
done_testing
