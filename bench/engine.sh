#!/bin/sh
# bench/engine.sh - the blkif request engine against a plain pread loop.
#
# Issue 4's goal: vbd-front random 4 KiB reads at queue depth 32 from a
# page-cached raw image reach >= 50 % of the IOPS of a plain pread loop over
# the same file, and 1 MiB sequential reads >= 80 % of its bandwidth.
#
# What is compared, exactly:
#  - engine: a 256 MiB raw image, read once into the page cache, served by
#    the real XenBus backend and request engine (t/helpers/engback: what
#    vbdfs serves, without FUSE) on the simulated hypervisor (simd) to
#    vbd-front, the simulated guest, with its defaults (as Linux blkfront:
#    one ring page, persistent grants, indirect segments where asked, and
#    one queue per CPU up to 4: here 2; QD32 is per queue).
#    That is three processes: vbd-front (one thread per queue),
#    the backend (per queue one intake thread, which also answers small
#    reads found in the page cache, and one I/O worker per CPU), and the
#    simulator (idle during the run: event channels are eventfds, memory is
#    shared).  Rates and latency percentiles are vbd-front's own
#    (--json): per I/O, from its submission to its completion in the guest.
#  - pread loop (bench/preadloop.c): one thread, queue depth 1, pread(2)
#    of the same block size and pattern into one reused buffer, as fast as
#    it can.  It is not given the same threads or CPUs: the engine may use
#    every CPU (here 2) and all its threads; the loop uses one.  The loop's
#    buffer also stays in the CPU cache, while the engine writes into guest
#    pages all over the guest's memory; that matters for 1 MiB reads.
#  - each workload runs the pread loop, then the engine, then the pread
#    loop again; the baseline is the mean of the two loop runs, so a load
#    change during the run (the machine is shared) biases the ratio less.
#    The load average is printed before and after: on a loaded machine the
#    engine, which needs several threads to wake each other up, loses more
#    than a loop that never sleeps.
#  - one queue (--queues 1) is measured too, for information: one ring is
#    then a ping-pong of wake-ups between the guest's thread and the
#    backend's intake thread, each half idle; on an idle virtual machine
#    waking a halted vCPU is slow, and this row got 23-27 % on a quiet
#    2-CPU VM where the default (2 queues) got 72-93 %.
#  - 1 MiB sequential reads run at queue depth 4 (4 x 256 segments + 4
#    indirect pages = 1028 grants), which fits in the backend's persistent
#    grant cache (1056 grants, as Linux blkback, rule 16): every segment is
#    read straight into the guest page.  At queue depth 32 most segments
#    overflow the cache and go by grant copy through a bounce buffer, a
#    second copy of the data; that row is printed too, for information.
#
#   bench/engine.sh [SECONDS]        (run from the source tree after make tests)
#   ENGINE_BENCH_ARGS="--persistent off" bench/engine.sh   extra vbd-front options
#   ENGINE_BENCH_QUEUES=2 bench/engine.sh                  vbd-front queues (default: its own, one per CPU up to 4)
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
# Written back now, so no writeback of it runs during the measurements;
# then read into the page cache.
sync "$T/disk.img"
cat "$T/disk.img" >/dev/null

"$B/t/helpers/simd" "$T/sim" >"$T/simd.log" 2>&1 &
PIDS="$PIDS $!"
i=0; while [ ! -S "$T/sim/hypervisor" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
XENSTORED_PATH=$T/sim/xenstored
export XENSTORED_PATH
"$B/t/helpers/engback" --sim "$T/sim" >"$T/engback.out" 2>"$T/engback.log" &
PIDS="$PIDS $!"
i=0; while ! grep -q ready "$T/engback.out" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done

load() { cut -d' ' -f1-3 /proc/loadavg; }

# front DOMID ARGS... -> "iops mib_s p50 p90 p99 max" (latencies in us) of
# the reads in vbd-front's JSON report
front() {
    DOM=$1; shift
    # shellcheck disable=SC2086
    "$B/vbd-front" --sim "$T/sim" --domid $DOM --wait --json --rw read ${ENGINE_BENCH_QUEUES:+--queues $ENGINE_BENCH_QUEUES} \
        --duration "${SECS}s" ${ENGINE_BENCH_ARGS:-} "$@" xvda >"$T/front.json" 2>"$T/front.log" &
    fp=$!
    i=0; while ! xenstore-read "/local/domain/$DOM/name" >/dev/null 2>&1 && [ $i -lt 100 ]; do
        sleep 0.1; i=$((i+1)); done
    "$B/vbdctl" --sim "$T/sim" attach $DOM xvda "$T/disk.img" --format raw >/dev/null
    wait $fp || { echo "vbd-front failed:" >&2; cat "$T/front.log" >&2; exit 1; }
    jq -r '.devices[0].ops.read | "\(.iops) \(.mib_s) \(.lat_ns.p50/1000) \(.lat_ns.p90/1000) \(.lat_ns.p99/1000) \(.lat_ns.max/1000)"' \
        "$T/front.json"
}

# loop BS PATTERN FIELD -> the pread loop's rate (FIELD 2 = IOPS, 4 = MiB/s)
loop() {
    "$T/preadloop" "$T/disk.img" "$1" "$2" "$SECS" | cut -d' ' -f"$3"
}

# row NAME ENGINE BEFORE AFTER UNIT TARGET P50 P90 P99 MAX BS
row() {
    awk -v n="$1" -v e="$2" -v b1="$3" -v b2="$4" -v u="$5" -v t="$6" -v p50="$7" \
        -v p90="$8" -v p99="$9" -v mx="${10}" -v bs="${11}" 'BEGIN {
        b = (b1 + b2) / 2
        li = (u == "IOPS") ? b : b * 1048576 / bs   # I/Os per second of the loop
        r = b > 0 ? 100 * e / b : 0
        printf "%-30s engine %9.0f %-5s pread loop %9.0f %-5s (%.0f, %.0f) = %5.1f %%", n, e, u, b, u, b1, b2, r
        if (t > 0)
            printf " (target >= %d %%: %s)\n", t, (r >= t ? "met" : "NOT met")
        else
            printf " (for information)\n"
        printf "%-30s engine latency us: p50 %.1f  p90 %.1f  p99 %.1f  max %.1f;  pread loop: mean %.1f\n",
               "", p50, p90, p99, mx, (li > 0 ? 1e6 / li : 0) }'
}

# bench NAME DOMID BS PATTERN FIELD UNIT TARGET FRONT-ARGS...
bench() {
    name=$1 dom=$2 bs=$3 pat=$4 field=$5 unit=$6 target=$7
    shift 7
    b1=$(loop "$bs" "$pat" "$field")
    # shellcheck disable=SC2046
    set -- $(front "$dom" "$@")
    if [ "$field" = 2 ]; then e=$1; else e=$2; fi
    p50=$3 p90=$4 p99=$5 mx=$6
    b2=$(loop "$bs" "$pat" "$field")
    row "$name" "$e" "$b1" "$b2" "$unit" "$target" "$p50" "$p90" "$p99" "$mx" "$bs"
}

echo "engine.sh: ${SECS} s per run, $(nproc) CPUs, load average $(load)"
bench "4 KiB random read, QD32" 11 4096 rand 2 IOPS 50 --pattern rand --bs 4k --qd 32
bench "  ... on one queue" 14 4096 rand 2 IOPS 0 --pattern rand --bs 4k --qd 32 --queues 1
bench "1 MiB sequential read, QD4" 12 1048576 seq 4 MiB/s 80 --pattern seq --bs 1M --qd 4 --indirect 256
bench "1 MiB sequential read, QD32" 13 1048576 seq 4 MiB/s 0 --pattern seq --bs 1M --qd 32 --indirect 256
echo "engine.sh: load average now $(load)"
