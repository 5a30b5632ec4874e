#!/bin/sh
# Fault injection: the file under an image fails (EIO, ENOSPC, failing
# fsync) while a guest writes.  The guest gets error responses for the
# failed requests, vbdfs keeps serving the device, later requests work,
# data acknowledged before the fault survives, the qcow2 image stays
# consistent (qemu-img check) and the log stays bounded.
. "$(dirname "$0")/lib.sh"
need_cmd qemu-img qemu-utils
SHIM=$VBDFS_BUILD/t/shim/faulty.so
[ -f "$SHIM" ] || skip_all "fault shim not built"
plan 17

SIM=$T/sim
XENSTORED_PATH=$SIM/xenstored
export XENSTORED_PATH
echo off >"$T/fault"
# Under ASan the shim is preloaded ahead of the sanitizer runtime: allow it.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
FAULT_PATH="$T/img-" FAULT_CTL="$T/fault" LD_PRELOAD="$SHIM" \
    "$VBDFS" --sim "$SIM" -f >"$T/vbdfs.log" 2>&1 &
VPID=$!
at_exit "kill $VPID 2>/dev/null; wait $VPID 2>/dev/null"
ok "vbdfs starts under the fault shim" wait_for 10 grep -q ready "$T/vbdfs.log"

# run_guest DOMID IMAGE FORMAT [vbd-front options]: attach IMAGE as xvda
# of a new guest and start its workload in the background ($GPID).
run_guest() {
    g_dom=$1 g_img=$2 g_fmt=$3
    shift 3
    "$VBD_FRONT" --sim "$SIM" --domid "$g_dom" --wait --queues 1 "$@" xvda \
        >"$T/g$g_dom.out" 2>&1 &
    GPID=$!
    at_exit "kill -9 $GPID 2>/dev/null"
    wait_for 10 xenstore-read "/local/domain/$g_dom/name"
    "$VBDCTL" --sim "$SIM" attach "$g_dom" xvda "$g_img" --format "$g_fmt" --wait 5 \
        >/dev/null 2>&1 || diag "attach of $g_img failed"
}
errors_of() { sed -n 's/.*errors: error=\([0-9]*\).*/\1/p' "$T/g$1.out"; }

# 1. Acknowledged data: a deterministic fill of the first 8 MiB, flushed,
#    on the qcow2 and on a raw reference that never fails.
FILL="--fill --offset 0 --size 8M --bs 64k --qd 1 --seed 3 --flush-every 16"
qemu-img create -q -f qcow2 "$T/img-q.qcow2" 64M
truncate -s 64M "$T/ref.raw"
run_guest 5 "$T/img-q.qcow2" qcow2 $FILL
ok "fill of the first 8 MiB completes" wait $GPID
run_guest 6 "$T/ref.raw" raw $FILL
wait $GPID

# 2. Writes fail with EIO for a second in the middle of a random workload
#    on unallocated space (so qcow2 allocations fail half way, too).
run_guest 7 "$T/img-q.qcow2" qcow2 --rw write --pattern rand --offset 16M --size 48M \
    --duration 3s --qd 8 --flush-every 64
sleep 0.8
echo "write EIO" >"$T/fault"
sleep 1
echo off >"$T/fault"
fails "the guest saw failed requests (exit != 0)" wait $GPID
n=$(errors_of 7)
ok "error responses were counted by the guest ($n)" test "${n:-0}" -gt 0
ok "faults really happened" test -s "$T/fault.count"
ok "vbdfs is still running" kill -0 $VPID
lines=$(grep -c "failed: Input/output error" "$T/vbdfs.log")
ok "the log stays bounded ($lines lines for $n errors)" test "$lines" -le 20

# 3. After the fault the same image serves verified I/O again.
run_guest 8 "$T/img-q.qcow2" qcow2 --verify --rw mix --offset 16M --size 16M --ios 2000
ok "verified I/O works after the fault" wait $GPID
"$VBDCTL" --sim "$SIM" detach 8 xvda >/dev/null 2>&1
wait_for 5 grep -q "8/51712: released" "$T/vbdfs.log"
qemu-img check "$T/img-q.qcow2" >"$T/check.out" 2>&1
rc=$?
ok "qemu-img check: no corruption (leaks allowed, exit $rc)" test $rc = 0 -o $rc = 3
qemu-img convert -O raw "$T/img-q.qcow2" "$T/q.raw"
ok "the acknowledged fill survived the fault" cmp -n 8388608 "$T/q.raw" "$T/ref.raw"

# 4. ENOSPC on a raw image: error responses, device stays usable.
truncate -s 32M "$T/img-r.raw"
echo "write ENOSPC" >"$T/fault"
run_guest 9 "$T/img-r.raw" raw --rw write --ios 200 --qd 4
fails "writes on a full disk fail" wait $GPID
n=$(errors_of 9)
ok "ENOSPC answered with error responses ($n)" test "${n:-0}" -gt 0
echo off >"$T/fault"
run_guest 10 "$T/img-r.raw" raw --verify --rw mix --ios 500
ok "the raw disk works once space is back" wait $GPID

# 5. A failing fsync fails the flush, not the daemon.
echo "sync EIO" >"$T/fault"
run_guest 11 "$T/img-r.raw" raw --rw write --ios 256 --qd 1 --flush-every 32
fails "flushes fail while fsync fails" wait $GPID
n=$(errors_of 11)
ok "failed flushes answered with errors ($n)" test "${n:-0}" -gt 0
echo off >"$T/fault"
run_guest 12 "$T/img-r.raw" raw --rw write --ios 256 --qd 1 --flush-every 32
ok "flushes succeed again" wait $GPID
ok "vbdfs survived every fault" kill -0 $VPID
done_testing
