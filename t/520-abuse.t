#!/bin/sh
# Resource bounds: eight misbehaving guests (notification storms, bad
# grants, bad segments, bad operations, out-of-range sectors, a broken ring,
# guests dying with requests in flight) hammer one vbdfs while a
# well-behaved guest runs verified I/O.  The good guest finishes without a
# single error, and vbdfs stays within its memory and descriptor bounds.
# Its throughput under attack vs alone is printed (not asserted: timing
# belongs to bench/abuse.sh).
. "$(dirname "$0")/lib.sh"
need_cmd qemu-img qemu-utils
plan 9

ok "vbdfs starts" vbdfs_sim

# attach_guest DOMID IMAGE OUT [vbd-front options]: start a guest, attach.
attach_guest() {
    a_dom=$1 a_img=$2 a_out=$3
    shift 3
    # Misbehaving guests run niced: on Xen their vCPUs are not dom0's, here
    # they share two cores with vbdfs and the good guest.
    ${EVIL:+nice -n 19} "$VBD_FRONT" --sim "$SIM" --domid "$a_dom" --wait --timeout 20s "$@" xvda \
        >"$a_out" 2>&1 &
    GPID=$!
    wait_for 10 xenstore-read "/local/domain/$a_dom/name"
    "$VBDCTL" --sim "$SIM" attach "$a_dom" xvda "$a_img" --format raw --wait 10 >/dev/null 2>&1
}

GOOD="--verify --rw mix --pattern rand --ios 6000 --qd 16 --queues 2"
qemu-img create -q -f raw "$T/good.raw" 64M
attach_guest 5 "$T/good.raw" "$T/alone.out" $GOOD
ok "good guest alone: verified I/O" wait $GPID
wait_for 5 grep -q "5/51712: released" "$T/vbdfs.log"

# evil_loop DOMID MODE: keep a misbehaving guest attached until $T/stop.
evil_loop() {
    truncate -s 16M "$T/evil$1.raw"
    while [ ! -e "$T/stop" ]; do
        EVIL=1 attach_guest "$1" "$T/evil$1.raw" "$T/evil$1.out" --evil "$2"
        wait $GPID
        "$VBDCTL" --sim "$SIM" detach "$1" xvda --timeout 5 >/dev/null 2>&1
        wait_for 5 sh -c "! xenstore-read /local/domain/0/backend/vbdfs/$1/51712/state"
    done
}
dom=11
loops=""
for mode in storm storm bad-grant bad-segs bad-op sector-range ring-overrun die; do
    evil_loop $dom $mode &
    loops="$loops $!"
    at_exit "kill $! 2>/dev/null"
    dom=$((dom + 1))
done
sleep 2

attach_guest 6 "$T/good.raw" "$T/attacked.out" $GOOD
ok "good guest under attack: verified I/O" wait $GPID
like "$(cat "$T/attacked.out")" "error=0 eopnotsupp=0" "good guest saw no error response"
touch "$T/stop"
wait $loops

iops() { sed -n 's/.* iops=\([0-9]*\).*/\1/p' "$1" | head -n 1; }
diag "good guest: $(iops "$T/alone.out") IOPS alone, $(iops "$T/attacked.out") IOPS under attack"

ok "vbdfs survived" kill -0 $VPID
hwm=$(sed -n 's/^VmHWM:[^0-9]*\([0-9]*\) kB/\1/p' /proc/$VPID/status)
diag "vbdfs peak resident memory: $hwm kB"
# The documented bound (vbdfs(8), RESOURCE LIMITS) for 9 devices with the
# guests' default negotiation is far below this.
ok "peak memory under 512 MiB ($hwm kB)" test "$hwm" -lt 524288
nfd=$(ls /proc/$VPID/fd | wc -l)
ok "open descriptors bounded ($nfd)" test "$nfd" -lt 256
lines=$(wc -l <"$T/vbdfs.log")
ok "log bounded despite the attack ($lines lines)" test "$lines" -lt 3000
ok "evil guests really ran" test "$(cat "$T"/evil*.out | grep -c PASS)" -gt 5
done_testing
