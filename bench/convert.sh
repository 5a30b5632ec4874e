#!/bin/sh
# bench/convert.sh - vbd-img convert against qemu-img convert, side by side
# in one run, on the same few hundred MiB of mixed real data (a tar of /usr,
# plus holes).  Prints times and ratios (qemu-img time / vbd-img time: above
# 1 means vbd-img is faster).  Not part of make check.
#
#   bench/convert.sh [MIB]        (default 384 MiB of data in a 512 MiB disk)
#
# Environment: VBDFS_BUILD (default ./build), BENCH_DIR (scratch, default a
# new directory under /var/tmp, removed at the end), RUNS (best of, default 3).
#
# Goals (issue 3): zlib qcow2 -> raw >= 1.5x, convert -c >= 1.6x with output
# <= 1.02x qemu-img's, plain qcow2 -> raw >= 1.0x.
set -eu
MIB=${1:-384}
RUNS=${RUNS:-3}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${VBDFS_BUILD:-$SRC/build}
V=$BUILD/vbd-img
[ -x "$V" ] || { echo "bench: build vbd-img first (make)" >&2; exit 1; }
command -v qemu-img >/dev/null || { echo "bench: needs qemu-img (qemu-utils)" >&2; exit 1; }
D=${BENCH_DIR:-$(mktemp -d /var/tmp/vbdfs-bench.XXXXXX)}
mkdir -p "$D"
[ -n "${BENCH_DIR:-}" ] || trap 'rm -rf "$D"' EXIT

# run CMD... once; print "WALL CPU" in seconds (CPU = user + system of the
# command and its threads), or fail the bench
run1() {
    perl -MTime::HiRes=time -e '
        my $s = time; my $rc = system(@ARGV); my $e = time; my @t = times;
        exit 1 if $rc != 0;
        printf "%.3f %.3f\n", $e - $s, $t[2] + $t[3];' "$@" >"$D/t.out" 2>/dev/null ||
        { echo "bench: failed: $*" >&2; exit 1; }
    cat "$D/t.out"
}
# pair NAME QEMU-CMD -- VBD-CMD : alternate the two RUNS times (so both see
# the same machine load), keep each one's best wall time; sets qw qc vw vc
pair() {
    _q=""; _v=""
    for _a in "$@"; do
        if [ "$_a" = "--" ]; then _v=x; continue; fi
        if [ -z "$_v" ]; then _q="$_q '$_a'"; else _v="$_v '$_a'"; fi
    done
    _v=${_v#x}
    qw=; qc=; vw=; vc=
    _i=0
    while [ "$_i" -lt "$RUNS" ]; do
        set -- $(eval run1 "$_q"); if [ -z "$qw" ] || awk "BEGIN{exit !($1 < $qw)}"; then qw=$1; qc=$2; fi
        set -- $(eval run1 "$_v"); if [ -z "$vw" ] || awk "BEGIN{exit !($1 < $vw)}"; then vw=$1; vc=$2; fi
        _i=$((_i + 1))
    done
}
report() {  # NAME GOAL
    printf '%-24s qemu-img %7ss (cpu %6ss)  vbd-img %7ss (cpu %6ss)  ratio %5s (goal %s)\n' \
        "$1" "$qw" "$qc" "$vw" "$vc" "$(ratio "$qw" "$vw")" "$2"
}
ratio() { awk "BEGIN { printf \"%.2f\", $1 / $2 }"; }

echo "bench: building a $((MIB + MIB / 3)) MiB raw disk with $MIB MiB of /usr (tar) in $D"
rm -f "$D/src.raw"
truncate -s $((MIB + MIB / 3))M "$D/src.raw"
tar cf - /usr 2>/dev/null | head -c $((MIB * 1048576)) |
    dd of="$D/src.raw" conv=notrunc bs=1M iflag=fullblock 2>/dev/null
cat "$D/src.raw" >/dev/null
echo "bench: $(nproc) CPUs, $(qemu-img --version | head -n1)"
echo

# 1. compression
pair qemu-img convert -c -O qcow2 "$D/src.raw" "$D/q.qcow2" -- \
    "$V" convert -c -O qcow2 "$D/src.raw" "$D/v.qcow2"
qemu-img compare -q "$D/src.raw" "$D/v.qcow2" || { echo "bench: vbd-img -c output differs!" >&2; exit 1; }
report "raw -> qcow2 -c" ">= 1.6"
sq=$(stat -c %s "$D/q.qcow2"); sv=$(stat -c %s "$D/v.qcow2")
printf '%-24s qemu-img %s MiB, vbd-img %s MiB: size ratio %s (goal <= 1.02)\n' \
    "  compressed size" "$((sq / 1048576))" "$((sv / 1048576))" "$(ratio "$sv" "$sq")"

# 2. decompression: the zlib qcow2 made by qemu-img, to raw
cat "$D/q.qcow2" >/dev/null
pair qemu-img convert -O raw "$D/q.qcow2" "$D/out-q.raw" -- \
    "$V" convert -O raw "$D/q.qcow2" "$D/out-v.raw"
cmp "$D/out-q.raw" "$D/out-v.raw" || { echo "bench: raw outputs differ!" >&2; exit 1; }
report "zlib qcow2 -> raw" ">= 1.5"

# 3. plain qcow2 to raw
qemu-img convert -O qcow2 "$D/src.raw" "$D/p.qcow2"
cat "$D/p.qcow2" >/dev/null
pair qemu-img convert -O raw "$D/p.qcow2" "$D/out-q.raw" -- \
    "$V" convert -O raw "$D/p.qcow2" "$D/out-v.raw"
cmp "$D/out-q.raw" "$D/out-v.raw" || { echo "bench: raw outputs differ!" >&2; exit 1; }
report "plain qcow2 -> raw" ">= 1.0"
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews wall times; cpu is user+system)"
