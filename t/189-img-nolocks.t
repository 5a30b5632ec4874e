#!/bin/sh
# On a file system without OFD locks (played by the LD_PRELOAD shim
# t/shim/nolocks.c: every F_OFD_* fcntl fails), images open unlocked, as
# QEMU does it, with one warning per process: vbd-img create and info work,
# and vbdfs serves two guests their verified I/O with a single warning in
# its log.  Each errno that means "no locks here" is taken as such.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/xb-lib.sh"
need_cmd qemu-img qemu-utils
need_cmd xenstore-read xenstore-utils
SHIM=$VBDFS_BUILD/t/shim/nolocks.so
[ -f "$SHIM" ] || skip_all "needs $SHIM (make tests)"
plan 10
# Under make asan the sanitizer's runtime must come first; it still works
# after our shim, so skip that check.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
export ASAN_OPTIONS
WARN='the file system does not support OFD locks'

for e in EINVAL ENOLCK ENOTSUP; do
    rm -f "$T/a.qcow2"
    NOLOCKS_ERRNO=$e LD_PRELOAD=$SHIM "$VBD_IMG" create -f qcow2 "$T/a.qcow2" 4M \
        >/dev/null 2>"$T/create.err"
    is "$?:$(grep -c "$WARN" "$T/create.err")" "0:1" "$e: vbd-img create works, one warning"
done
LD_PRELOAD=$SHIM "$VBD_IMG" info "$T/a.qcow2" >"$T/info.out" 2>"$T/info.err"
is "$?:$(grep -c "$WARN" "$T/info.err")" "0:1" "vbd-img info works, one warning"
like "$(cat "$T/info.out")" "file format: qcow2" "and reads the image"
"$VBD_IMG" info "$T/a.qcow2" >/dev/null 2>"$T/info2.err"
is "$?:$(grep -c "$WARN" "$T/info2.err")" "0:0" "without the shim: no warning"

export LD_PRELOAD="$SHIM"
vbdfs_sim || bail_out "vbdfs did not start"
unset LD_PRELOAD
qemu-img create -q -f raw "$T/b.raw" 8M
sim_guest G5 5 xvda "$T/a.qcow2" qcow2 --verify --rw mix --ios 300
sim_guest G6 6 xvda "$T/b.raw" raw --verify --rw mix --ios 300
wait "$G5"; r5=$?
wait "$G6"; r6=$?
is "$r5:$r6" "0:0" "vbdfs serves both unlocked images: both guests' verified I/O passes" ||
    diag_file "$T/G5.out" "$T/G6.out" "$T/vbdfs.log"
is "$(cat "$T/G5.out" "$T/G6.out" | grep -c 'mismatches=0$')" 2 "without a mismatch"
is "$(grep -c "$WARN" "$T/vbdfs.log")" 1 "one warning in vbdfs' log for both images"
kill "$VPID"
wait "$VPID"
is "$?" 0 "vbdfs stops cleanly"
