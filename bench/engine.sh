#!/bin/sh
# bench/engine.sh - the blkif request engine against a plain pread loop.
#
# Serves a page-cached raw image to vbd-front through the real XenBus
# backend and the engine on the simulated hypervisor (t/helpers/engback),
# and runs the same access pattern as one thread of pread(2) on the file.
# Prints each workload's rate for both and the ratio.  Targets (issue 4):
# 4 KiB random reads at QD32 >= 50 % of the pread loop's IOPS, 1 MiB
# sequential reads >= 80 % of its bandwidth.
#
#   bench/engine.sh [SECONDS]        (run from the source tree after make tests)
#   ENGINE_BENCH_ARGS="--persistent off" bench/engine.sh   extra vbd-front options
set -eu
SECS=${1:-5}
SRC=$(cd "$(dirname "$0")/.." && pwd)
B=${VBDFS_BUILD:-$SRC/build}
for p in "$B/vbd-front" "$B/vbdctl" "$B/t/helpers/simd" "$B/t/helpers/engback"; do
    [ -x "$p" ] || { echo "engine.sh: $p missing: run 'make tests' first" >&2; exit 1; }
done
command -v jq >/dev/null || { echo "engine.sh: needs jq" >&2; exit 1; }
T=$(mktemp -d /tmp/vbdfs-bench.XXXXXX)
PIDS=""
trap 'for p in $PIDS; do kill $p 2>/dev/null; done; wait 2>/dev/null; rm -rf "$T"' EXIT INT TERM

cc -O2 -o "$T/preadloop" "$SRC/bench/preadloop.c"
dd if=/dev/urandom of="$T/disk.img" bs=1M count=256 status=none
cat "$T/disk.img" >/dev/null   # into the page cache

"$B/t/helpers/simd" "$T/sim" >"$T/simd.log" 2>&1 &
PIDS="$PIDS $!"
i=0; while [ ! -S "$T/sim/hypervisor" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
XENSTORED_PATH=$T/sim/xenstored
export XENSTORED_PATH
"$B/t/helpers/engback" --sim "$T/sim" >"$T/engback.out" 2>"$T/engback.log" &
PIDS="$PIDS $!"
i=0; while ! grep -q ready "$T/engback.out" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done

# front DOMID ARGS... -> "iops mib_s" of the reads in vbd-front's JSON report
front() {
    DOM=$1; shift
    # shellcheck disable=SC2086
    "$B/vbd-front" --sim "$T/sim" --domid $DOM --wait --json --rw read --queues ${ENGINE_BENCH_QUEUES:-1} \
        --duration "${SECS}s" ${ENGINE_BENCH_ARGS:-} "$@" xvda >"$T/front.json" 2>"$T/front.log" &
    fp=$!
    i=0; while ! xenstore-read "/local/domain/$DOM/name" >/dev/null 2>&1 && [ $i -lt 100 ]; do
        sleep 0.1; i=$((i+1)); done
    "$B/vbdctl" --sim "$T/sim" attach $DOM xvda "$T/disk.img" --format raw >/dev/null
    wait $fp || { echo "vbd-front failed:" >&2; cat "$T/front.log" >&2; exit 1; }
    jq -r '.devices[0].ops.read | "\(.iops) \(.mib_s)"' "$T/front.json"
}

row() { # name engine-value baseline-value unit target
    awk -v n="$1" -v e="$2" -v b="$3" -v u="$4" -v t="$5" 'BEGIN {
        r = b > 0 ? 100 * e / b : 0
        printf "%-34s engine %10.0f %-6s pread loop %10.0f %-6s = %5.1f %% (target >= %d %%)\n",
               n, e, u, b, u, r, t }'
}

set -- $(front 11 --pattern rand --bs 4k --qd 32)
e_iops=$1
set -- $("$T/preadloop" "$T/disk.img" 4096 rand "$SECS")
row "4 KiB random read, QD32" "$e_iops" "$2" IOPS 50

set -- $(front 12 --pattern seq --bs 1M --qd 32 --indirect 256)
e_bw=$2
set -- $("$T/preadloop" "$T/disk.img" 1048576 seq "$SECS")
row "1 MiB sequential read, QD32" "$e_bw" "$4" MiB/s 80
