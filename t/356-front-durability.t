#!/bin/sh
# Nothing acknowledged is lost: vbd-front fills a disk through the vbdfs
# daemon (vbdfs --sim) and ends with a flush, vbdfs is killed with SIGKILL,
# restarted, and a new guest checks every sector (--filled) -- for raw and
# qcow2 images; the qcow2 image passes qemu-img check in between.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/front-lib.sh"
need_cmd jq jq
need_cmd xenstore-read xenstore-utils
need_cmd qemu-img qemu-utils
plan 13
SIM=$T/sim
XENSTORED_PATH=$SIM/xenstored
export XENSTORED_PATH

vbdfs_start() {
    "$VBDFS" --sim "$SIM" -f >"$T/vbdfs.log" 2>&1 &
    VBDFS_PID=$!
    at_exit "kill -9 $VBDFS_PID 2>/dev/null"
    wait_for 10 grep -q ready "$T/vbdfs.log"
}

truncate -s 24M "$T/r.raw"
qemu-img create -q -f qcow2 -o cluster_size=65536 "$T/q.qcow2" 24M

ok "vbdfs --sim starts" vbdfs_start
ok "raw: fill with a closing flush" front_run 5 "xvda:$T/r.raw" --fill --seed 11 --json
is "$(jf '.devices[0].ops.flush.ios > 0')" true "the guest flushed"
ok "qcow2: fill with a closing flush" front_run 6 "xvdb:$T/q.qcow2:qcow2" --fill --seed 12 \
    --bs 64k --json
kill -9 "$VBDFS_PID"
wait "$VBDFS_PID" 2>/dev/null
ok "vbdfs killed" test -n "$VBDFS_PID"
qemu-img check -q "$T/q.qcow2" >"$T/check.out" 2>&1
rc=$?
ok "qcow2 consistent after SIGKILL (qemu-img check: no corruption)" test $rc = 0 -o $rc = 3

rm -rf "$SIM"
ok "vbdfs restarts" vbdfs_start || diag "$(tail -n 5 "$T/vbdfs.log")"
ok "raw: every sector still there" front_run 7 "xvda:$T/r.raw" --filled --seed 11 --json --rw read
is "$(jf '.devices[0].verify.mismatches')" 0 "no mismatches (raw)"
ok "qcow2: every sector still there" front_run 8 "xvdb:$T/q.qcow2:qcow2" --filled --seed 12 \
    --json --rw read
is "$(jf '.devices[0].verify.sectors')" $((2 * 24 * 2048)) "qcow2: every sector read twice and checked"
front_run 9 "xvdb:$T/q.qcow2:qcow2" --filled --seed 13 --rw read --ios 8 --json
is "$?:$(jf .ok)" "1:false" "a wrong seed is detected on the same image (exit 1)"
kill -TERM "$VBDFS_PID"
ok "vbdfs stops cleanly" wait "$VBDFS_PID" || diag "$(tail -n 5 "$T/vbdfs.log")"
done_testing
