#!/bin/sh
# bench/abuse.sh - a well-behaved guest's throughput while eight misbehaving
# guests hammer the same vbdfs, against its throughput alone (issue 6).
#
# One vbdfs on the simulated hypervisor serves a page-cached raw image to a
# good guest (random 4 KiB mixed reads/writes, verified) for SECONDS, first
# alone, then while guests running each --evil mode of vbd-front (two
# notification storms, bad grants, bad segment counts, bad operations,
# out-of-range sectors, a ring index overrun, dying mid-request) attach,
# misbehave and reattach in a loop.  The misbehaving guests run at nice 19:
# on Xen their vCPUs are not dom0's, here they share the CPUs with vbdfs.
# Prints IOPS alone, under attack, the ratio (goal: attacked >= 0.5 x alone,
# i.e. within 2x) and vbdfs' peak memory against the documented bound.
#
#   bench/abuse.sh [SECONDS] [ROUNDS]     (after make; defaults 5 and 3)
set -eu
SECS=${1:-5}
ROUNDS=${2:-3}
SRC=$(cd "$(dirname "$0")/.." && pwd)
B=${VBDFS_BUILD:-$SRC/build}
for p in vbdfs vbdctl vbd-front; do
    [ -x "$B/$p" ] || { echo "abuse.sh: $B/$p missing: run 'make' first" >&2; exit 1; }
done
for c in xenstore-read jq; do
    command -v $c >/dev/null || { echo "abuse.sh: needs $c (util/deps.sh installs it)" >&2; exit 1; }
done
T=$(mktemp -d /tmp/vbdfs-abuse.XXXXXX)
VPID=
cleanup() {
    touch "$T/stop"
    kill $VPID 2>/dev/null || true
    sleep 1
    pkill -f "vbd-front --sim $T/" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

SIM=$T/sim
XENSTORED_PATH=$SIM/xenstored
export XENSTORED_PATH
"$B/vbdfs" --sim "$SIM" -f >"$T/vbdfs.log" 2>&1 &
VPID=$!
i=0; until grep -q ready "$T/vbdfs.log" 2>/dev/null; do
    sleep 0.1; i=$((i + 1)); [ $i -lt 100 ] || { cat "$T/vbdfs.log" >&2; exit 1; }
done

# guest DOMID IMAGE OUT [vbd-front options]: start a guest, attach its disk
# as xvda, leave its pid in GPID.
guest() {
    g_dom=$1 g_img=$2 g_out=$3
    shift 3
    ${EVIL:+nice -n 19} "$B/vbd-front" --sim "$SIM" --domid "$g_dom" --wait --timeout 20s \
        "$@" xvda >"$g_out" 2>&1 &
    GPID=$!
    i=0; until xenstore-read "/local/domain/$g_dom/name" >/dev/null 2>&1; do
        sleep 0.1; i=$((i + 1)); [ $i -lt 100 ] || return 1
    done
    "$B/vbdctl" --sim "$SIM" attach "$g_dom" xvda "$g_img" --format raw --wait 10 \
        >/dev/null 2>>"$T/vbdctl.err"
}
detach() {
    "$B/vbdctl" --sim "$SIM" detach "$1" xvda --timeout 10 >/dev/null 2>&1 || true
}

dd if=/dev/urandom of="$T/good.raw" bs=1M count=256 status=none
cat "$T/good.raw" >/dev/null
GOOD="--verify --rw mix --pattern rand --bs 4k --qd 16 --queues 2 --duration ${SECS}s --json"
good_run() { # DOMID -> IOPS
    guest "$1" "$T/good.raw" "$T/good$1.json" $GOOD
    wait $GPID || { cat "$T/good$1.json" >&2; return 1; }
    detach "$1"
    # all operations' IOPS of the one device; a verification error fails
    jq -er '.devices[0] | select(.ok) | [.ops[].iops] | add | floor' "$T/good$1.json"
}

evil_loop() { # DOMID MODE: keep a misbehaving guest attached until $T/stop
    truncate -s 16M "$T/evil$1.raw"
    while [ ! -e "$T/stop" ]; do
        EVIL=1 guest "$1" "$T/evil$1.raw" "$T/evil$1.out" --evil "$2" || true
        wait $GPID || true
        detach "$1"
    done
}

best_alone=0 best_att=0 dom=100
for r in $(seq "$ROUNDS"); do
    a=$(good_run $dom); dom=$((dom + 1))
    [ "$a" -gt "$best_alone" ] && best_alone=$a
    rm -f "$T/stop"
    d=11 loops=""
    for mode in storm storm bad-grant bad-segs bad-op sector-range ring-overrun die; do
        evil_loop $d $mode 2>>"$T/evil.err" &  # the shell's "Killed" for --evil die
        loops="$loops $!"
        d=$((d + 1))
    done
    sleep 2
    u=$(good_run $dom); dom=$((dom + 1))
    [ "$u" -gt "$best_att" ] && best_att=$u
    touch "$T/stop"
    wait $loops
    echo "round $r: good guest alone $a IOPS, under attack $u IOPS"
done
hwm=$(sed -n 's/^VmHWM:[^0-9]*\([0-9]*\) kB/\1/p' /proc/$VPID/status)
ratio=$(awk -v a="$best_att" -v b="$best_alone" 'BEGIN { printf "%.2f", b ? a / b : 0 }')
verdict=$(awk -v r="$ratio" 'BEGIN { print (r >= 0.5) ? "meets" : "MISSES" }')
echo "best of $ROUNDS: alone $best_alone IOPS, under attack $best_att IOPS:" \
     "ratio $ratio ($verdict the goal >= 0.50)"
echo "vbdfs peak resident memory: $hwm kB (bound: vbdfs(8) RESOURCE LIMITS); load: $(cut -d' ' -f1-3 /proc/loadavg)"
