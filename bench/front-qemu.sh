#!/bin/sh
# bench/front-qemu.sh - the blkif data path (vbd-front -> shared ring -> vbdfs
# request engine -> image) against QEMU's block layer reading and writing
# the same image directly (qemu-img bench), side by side, ratios printed.
#
#   bench/front-qemu.sh [--size MIB] [--seconds S] [--runs N] [--dir DIR]
#
# Images: raw, and qcow2 fully allocated (both filled first).  Workloads,
# each as I/Os per second and MiB/s:
#   4k-read    4 KiB reads at queue depth 32, strided (qemu-img bench has no
#              random mode: both sides step by 1021 pages, modulo the size)
#   4k-write   the same, writes
#   1m-read    1 MiB sequential reads at queue depth 8
#   1m-write   1 MiB sequential writes at queue depth 8
# vbd-front uses one queue and Linux 6.1 blkfront's defaults otherwise
# (ring order 0, 32 indirect segments, persistent grants), so a 1 MiB I/O
# is 8 requests; both sides go through the host page cache (qemu-img bench
# -t writeback).  Runs alternate between the two and the best of N is kept.
# Not part of `make check`; needs qemu-img and jq; no root.
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${VBDFS_BUILD:-$SRC/build}
SIZE=256 SECS=3 RUNS=3 DIR=
while [ $# -gt 0 ]; do
    case $1 in
    --size) SIZE=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/front-qemu.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
done
for p in vbdfs vbdctl vbd-front; do
    [ -x "$BUILD/$p" ] || { echo "bench/front-qemu.sh: $BUILD/$p missing; run 'make' first" >&2; exit 1; }
done
for c in qemu-img jq xenstore-read; do
    command -v $c >/dev/null || { echo "bench/front-qemu.sh: needs $c" >&2; exit 1; }
done

W=$(mktemp -d "${DIR:-${TMPDIR:-/tmp}}/vbdfs-bench.XXXXXX")
VBDFS_PID=
cleanup() {
    [ -n "$VBDFS_PID" ] && kill "$VBDFS_PID" 2>/dev/null && wait "$VBDFS_PID" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "making ${SIZE} MiB images in $W ..." >&2
head -c "$((SIZE * 1048576))" /dev/urandom >"$W/disk.raw"
qemu-img convert -O qcow2 "$W/disk.raw" "$W/disk.qcow2"

SIM=$W/sim
XENSTORED_PATH=$SIM/xenstored
export XENSTORED_PATH
"$BUILD/vbdfs" --sim "$SIM" -f >"$W/vbdfs.log" 2>&1 &
VBDFS_PID=$!
i=0
while ! grep -q ready "$W/vbdfs.log"; do
    sleep 0.1; i=$((i + 1)); [ $i -lt 100 ] || { cat "$W/vbdfs.log" >&2; exit 1; }
done

STRIDE=$((1021 * 4096))
DOM=10
# front FMT IMAGE BS QD RW PATTERN: one vbd-front run; prints "iops mib_s"
front() {
    DOM=$((DOM + 1))
    "$BUILD/vbd-front" --sim "$SIM" --domid $DOM --wait --json --queues 1 --qd "$4" --bs "$3" \
        --rw "$5" --pattern "$6" --duration "${SECS}s" xvda >"$W/f.json" 2>"$W/f.err" &
    fp=$!
    i=0
    while ! xenstore-read "/local/domain/$DOM/name" >/dev/null 2>&1; do
        sleep 0.05; i=$((i + 1)); [ $i -lt 200 ] || break
    done
    "$BUILD/vbdctl" --sim "$SIM" attach $DOM xvda "$2" --format "$1" >/dev/null
    wait $fp || { cat "$W/f.err" >&2; echo "0 0"; return; }
    # qemu-img bench needs the image free: vbdctl detach returns once vbdfs
    # let go of it (and of its QEMU-compatible lock).
    "$BUILD/vbdctl" --sim "$SIM" detach $DOM xvda >/dev/null ||
        { echo "bench/front-qemu.sh: detach failed" >&2; exit 1; }
    op=read; [ "$5" = write ] && op=write
    jq -r ".devices[0].ops.$op | \"\\(.iops) \\(.mib_s)\"" "$W/f.json"
}
# qbench FMT IMAGE BS QD RW STEP: qemu-img bench for about SECS seconds
qbench() {
    w=; [ "$5" = write ] && w=-w
    # calibrate the count from a short run, then time the real one
    n=2000
    t0=$(date +%s.%N)
    qemu-img bench -q -f "$1" -t writeback -c $n -d "$4" -s "$3" -S "$6" $w "$2" >/dev/null
    t1=$(date +%s.%N)
    n=$(echo "$n $SECS $t0 $t1" | awk '{ printf "%d", $1 * $2 / ($4 - $3 + 0.001) }')
    [ "$n" -ge 100 ] || n=100
    t0=$(date +%s.%N)
    qemu-img bench -q -f "$1" -t writeback -c "$n" -d "$4" -s "$3" -S "$6" $w "$2" >/dev/null
    t1=$(date +%s.%N)
    echo "$n $3 $t0 $t1" | awk '{ s = $4 - $3; printf "%.1f %.2f\n", $1 / s, $1 * $2 / s / 1048576 }'
}
best() { sort -n -k1 | tail -n 1; }

printf "%-8s %-6s %14s %14s %8s\n" workload format "vbdfs IOPS" "qemu-img IOPS" ratio
for fmt in raw qcow2; do
    img=$W/disk.$fmt
    for wl in "4k-read 4096 32 read $STRIDE" "4k-write 4096 32 write $STRIDE" \
              "1m-read 1048576 8 read 1048576" "1m-write 1048576 8 write 1048576"; do
        set -- $wl
        name=$1 bs=$2 qd=$3 rw=$4 step=$5
        pat=seq; [ "$bs" = 4096 ] && pat=rand
        : >"$W/a"; : >"$W/b"
        r=0
        while [ $r -lt "$RUNS" ]; do
            front "$fmt" "$img" "$bs" "$qd" "$rw" "$pat" >>"$W/a"
            qbench "$fmt" "$img" "$bs" "$qd" "$rw" "$step" >>"$W/b"
            r=$((r + 1))
        done
        a=$(best <"$W/a"); b=$(best <"$W/b")
        echo "$name $fmt $a $b" | awk '{ printf "%-8s %-6s %14.0f %14.0f %8.2f\n", $1, $2, $3, $5, ($5 > 0 ? $3 / $5 : 0) }'
    done
done
