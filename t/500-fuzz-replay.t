#!/bin/sh
# Replays every fuzz target over its committed corpus plus deterministic
# mutations (t/fuzz/replay.c), so what the fuzzers found stays fixed.
# Under `make asan` memory errors fail the test.
. "$(dirname "$0")/lib.sh"

targets=$(ls "$VBDFS_BUILD"/t/fuzz/ 2>/dev/null | grep '^fuzz_' | grep -v '\.[od]$')
[ -n "$targets" ] || skip_all "no fuzz targets built"
plan $(echo "$targets" | wc -w)
for f in $targets; do
    seeds="$VBDFS_SRC/t/fuzz/corpus/$f"
    # A target may make extra seeds at run time (images by qemu-img...).
    gen="$VBDFS_SRC/t/fuzz/seeds-$f.sh"
    if [ -x "$gen" ]; then
        mkdir -p "$T/$f" && "$gen" "$T/$f" >/dev/null 2>&1
    fi
    ok "$f survives its corpus and mutations" \
        env FUZZ_MUTATIONS=${FUZZ_MUTATIONS:-200} "$VBDFS_BUILD/t/fuzz/$f" "$seeds" "$T/$f"
done
done_testing
