#!/bin/sh
# bench/convert.sh - vbd-img convert against qemu-img convert, side by side
# in one run, on the same few hundred MiB of mixed real data (a tar of /usr,
# plus holes).  Prints times and ratios (qemu-img time / vbd-img time: above
# 1 means vbd-img is faster).  Not part of make check.
#
#   bench/convert.sh [MIB]        (default 384 MiB of data in a 512 MiB disk)
#
# Environment: VBDFS_BUILD (default ./build), BENCH_DIR (scratch, default a
# new directory under /var/tmp, removed at the end), RUNS (best of, default 2).
#
# Goals (issue 3): zlib qcow2 -> raw >= 1.5x, convert -c >= 1.6x with output
# <= 1.02x qemu-img's, plain qcow2 -> raw >= 1.0x.
set -eu
MIB=${1:-384}
RUNS=${RUNS:-2}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${VBDFS_BUILD:-$SRC/build}
V=$BUILD/vbd-img
[ -x "$V" ] || { echo "bench: build vbd-img first (make)" >&2; exit 1; }
command -v qemu-img >/dev/null || { echo "bench: needs qemu-img (qemu-utils)" >&2; exit 1; }
D=${BENCH_DIR:-$(mktemp -d /var/tmp/vbdfs-bench.XXXXXX)}
mkdir -p "$D"
[ -n "${BENCH_DIR:-}" ] || trap 'rm -rf "$D"' EXIT

# best wall time in seconds (3 decimals) of RUNS runs of a command
best() {
    _best=
    _i=0
    while [ "$_i" -lt "$RUNS" ]; do
        _s=$(date +%s.%N)
        "$@" >/dev/null 2>&1 || { echo "bench: failed: $*" >&2; exit 1; }
        _e=$(date +%s.%N)
        _t=$(awk "BEGIN { print $_e - $_s }")
        if [ -z "$_best" ] || awk "BEGIN { exit !($_t < $_best) }"; then _best=$_t; fi
        _i=$((_i + 1))
    done
    awk "BEGIN { printf \"%.3f\", $_best }"
}
ratio() { awk "BEGIN { printf \"%.2f\", $1 / $2 }"; }
mibs() { awk "BEGIN { printf \"%.0f\", $MIB / $1 }"; }

echo "bench: building a $((MIB + MIB / 3)) MiB raw disk with $MIB MiB of /usr (tar) in $D"
rm -f "$D/src.raw"
truncate -s $((MIB + MIB / 3))M "$D/src.raw"
tar cf - /usr 2>/dev/null | head -c $((MIB * 1048576)) |
    dd of="$D/src.raw" conv=notrunc bs=1M iflag=fullblock 2>/dev/null
cat "$D/src.raw" >/dev/null
echo "bench: $(nproc) CPUs, $(qemu-img --version | head -n1)"
echo

# 1. compression
tq=$(best qemu-img convert -c -O qcow2 "$D/src.raw" "$D/q.qcow2")
tv=$(best "$V" convert -c -O qcow2 "$D/src.raw" "$D/v.qcow2")
sq=$(stat -c %s "$D/q.qcow2"); sv=$(stat -c %s "$D/v.qcow2")
qemu-img compare -q "$D/src.raw" "$D/v.qcow2" || { echo "bench: vbd-img -c output differs!" >&2; exit 1; }
printf '%-34s qemu-img %7ss  vbd-img %7ss  speed ratio %5s (goal >= 1.6)\n' \
    "raw -> qcow2 -c ($MIB MiB data)" "$tq" "$tv" "$(ratio "$tq" "$tv")"
printf '%-34s qemu-img %7s MiB vbd-img %6s MiB size ratio %5s (goal <= 1.02)\n' \
    "  compressed size" "$((sq / 1048576))" "$((sv / 1048576))" "$(ratio "$sv" "$sq")"

# 2. decompression: the zlib qcow2 made by qemu-img, to raw
cat "$D/q.qcow2" >/dev/null
tq=$(best qemu-img convert -O raw "$D/q.qcow2" "$D/out-q.raw")
tv=$(best "$V" convert -O raw "$D/q.qcow2" "$D/out-v.raw")
cmp "$D/out-q.raw" "$D/out-v.raw" || { echo "bench: raw outputs differ!" >&2; exit 1; }
printf '%-34s qemu-img %7ss  vbd-img %7ss  speed ratio %5s (goal >= 1.5)  [%s vs %s MiB/s]\n' \
    "zlib qcow2 -> raw" "$tq" "$tv" "$(ratio "$tq" "$tv")" "$(mibs "$tq")" "$(mibs "$tv")"

# 3. plain qcow2 to raw
qemu-img convert -O qcow2 "$D/src.raw" "$D/p.qcow2"
cat "$D/p.qcow2" >/dev/null
tq=$(best qemu-img convert -O raw "$D/p.qcow2" "$D/out-q.raw")
tv=$(best "$V" convert -O raw "$D/p.qcow2" "$D/out-v.raw")
cmp "$D/out-q.raw" "$D/out-v.raw" || { echo "bench: raw outputs differ!" >&2; exit 1; }
printf '%-34s qemu-img %7ss  vbd-img %7ss  speed ratio %5s (goal >= 1.0)  [%s vs %s MiB/s]\n' \
    "plain qcow2 -> raw" "$tq" "$tv" "$(ratio "$tq" "$tv")" "$(mibs "$tq")" "$(mibs "$tv")"
